#!/usr/bin/env bash
# Trains the runs `moesim confirm` compares (README "Simulator vs real"): the same
# model, data and token budget as the main configs, one policy each, routing
# recorded every 10 steps; the main three again with seed 2 (seed noise).
# Runs go to runs/confirm/<name>/; a finished run is skipped (train.resume).
# usage: scripts/train_confirm_runs.sh [name ...]   (default: all; extra overrides in MOESIM_TRAIN_ARGS)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MOESIM_BIN:-build/moesim}
[ -d data/c4_tiny ] || bash scripts/fetch_c4.sh
c=torch_backend/configs
declare -A runs=(
  [topk_nobal]="$c/topk.yaml policy.knobs.dropless=true moe.aux_loss_coef=0"
  [topk_aux]="$c/topk.yaml"
  [loss_free]="$c/topk.yaml policy.name=loss_free policy.knobs.preset=deepseek_v3 moe.aux_loss_coef=0"
  [rdesi_reference]="$c/rdesi_reference.yaml"
  [rdesi_tuned]="$c/rdesi.yaml policy.knobs.beta=0.5 policy.knobs.gamma=1 policy.knobs.ucb_c=1 policy.knobs.epsilon=0.02 policy.knobs.decay_rate=0.95 policy.knobs.decay_on=all_after_ema"
  [expert_choice]="$c/expert_choice.yaml"
  [sinkhorn]="$c/topk.yaml policy.name=sinkhorn policy.knobs.preset=megatron moe.aux_loss_coef=0"
  [topk_aux_seed2]="$c/topk.yaml seed=2"
  [rdesi_tuned_seed2]="$c/rdesi.yaml policy.knobs.beta=0.5 policy.knobs.gamma=1 policy.knobs.ucb_c=1 policy.knobs.epsilon=0.02 policy.knobs.decay_rate=0.95 policy.knobs.decay_on=all_after_ema seed=2"
  [expert_choice_seed2]="$c/expert_choice.yaml seed=2"
)
order=(topk_nobal topk_aux loss_free rdesi_reference rdesi_tuned expert_choice sinkhorn topk_aux_seed2 rdesi_tuned_seed2 expert_choice_seed2)
[ $# -gt 0 ] && order=("$@")
for name in "${order[@]}"; do
  [ -n "${runs[$name]:-}" ] || { echo "unknown run '$name' (known: ${!runs[*]})" >&2; exit 2; }
  read -r cfg overrides <<< "${runs[$name]}"
  out=runs/confirm/$name
  mkdir -p "$out"
  echo "== $name: $(date)"
  # shellcheck disable=SC2086
  nice -n 10 "$bin" train --config "$cfg" $overrides train.bf16=true train.trace_steps=[1] train.trace_every=10 \
    train.resume=true train.out_dir="$out" ${MOESIM_TRAIN_ARGS:-} 2>&1 | tee "$out/stdout.log"
done
