#!/usr/bin/env bash
# Newcomer command 1: install dependencies, build, run the default scenario
# sweep (the Matthew-effect comparison of every policy) and write its report.
# Extra arguments go to `moesim sweep` (e.g. seeds=[1,2] steps=200).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
out=out/matthew
./build/moesim sweep scenarios/matthew.yaml --out "$out" "$@"
./build/moesim report "$out"
echo "report: $out/report.md"
