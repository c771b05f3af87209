#!/usr/bin/env bash
# Newcomer command 2: install dependencies, build, run every test, then the
# sanitizer and fuzzing check (scripts/sanitize.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
ctest --test-dir build --output-on-failure -j "$(nproc)"
bash scripts/sanitize.sh
