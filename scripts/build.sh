#!/usr/bin/env bash
# Configures and builds moesim into ./build (Release, all cores).
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@" > build.cmake.log 2>&1 || { cat build.cmake.log; exit 1; }
cmake --build build -j "$(nproc)"
