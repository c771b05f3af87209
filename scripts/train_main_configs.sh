#!/usr/bin/env bash
# Trains the main configs (top-k + aux loss, RD-ESI with moesim's preset, RD-ESI with
# the reference preset, expert choice) one after another on the same data, seed and
# token budget; extra key=value overrides apply to all of them. Logs: runs/<policy>/{train_log.csv,eval_log.csv,summary.json,stdout.log}
# usage: scripts/train_main_configs.sh [key.path=value ...]   (e.g. train.bf16=true train.steps=600)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${MOESIM_BIN:-build/moesim}
[ -d data/c4_tiny ] || bash scripts/fetch_c4.sh
for cfg in topk rdesi rdesi_reference expert_choice; do
  mkdir -p "runs/$cfg"
  echo "== $cfg: $(date)"
  nice -n 10 "$bin" train --config "torch_backend/configs/$cfg.yaml" "$@" 2>&1 | tee "runs/$cfg/stdout.log"
done
