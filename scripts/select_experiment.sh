#!/usr/bin/env bash
# Seed 004's experiment (README, "Router-based data selection"): pre-trains the
# selector and the target once, then for every seed builds the corrupted corpus,
# warms the selector's router up, and runs each selection arm through score,
# train and eval; `moesim select report` makes the table. The oracle arm keeps the
# clean documents by their labels: not a selector, the bound a perfect one reaches.
#   scripts/select_experiment.sh [DATA_DIR] [SEEDS]    (defaults: data/c4_tiny, "1 2")
# Resumable: a finished stage is skipped (its manifest matches).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/c4_tiny}
SEEDS=${2:-1 2}
M=./build/moesim
[ -x "$M" ] || { echo "build first: scripts/build.sh" >&2; exit 1; }
for model in selector target; do
  [ -f runs/select_$model/summary.json ] ||
    "$M" train --config torch_backend/configs/select_$model.yaml data.dir="$DATA"
done
ARMS=(
  "router_sum score.method=router score.aggregate=sum"
  "router_mean score.method=router score.aggregate=mean"
  "router_sum_epoch1 score.method=router score.aggregate=sum score.epoch=1"
  "router_sum_trash25 score.method=router score.aggregate=sum score.trash_expert_ratio=0.25"
  "random score.method=random"
  "length score.method=length"
  "unigram score.method=unigram"
  "selector_loss score.method=selector_loss"
  "oracle score.method=oracle"
)
dirs=()
base=true  # the base's perplexity is the same for every arm and seed: evaluated once
for seed in $SEEDS; do
  for arm in "${ARMS[@]}"; do
    set -- $arm
    name=$1; shift
    out=runs/select/seed$seed/$name
    "$M" select run --config selection/configs/experiment.yaml corpus.data_dir="$DATA" seed="$seed" out_dir="$out" \
      corpus.out=runs/select/seed$seed/corpus warmup.out=runs/select/seed$seed/warmup eval.base=$base "$@"
    dirs+=("$out")
    base=false
  done
done
"$M" select report "${dirs[@]}" --out runs/select
