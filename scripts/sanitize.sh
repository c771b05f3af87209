#!/usr/bin/env bash
# Hardening check (part of scripts/test.sh): an ASan + UBSan build with clang of
# the common, policy, simulator and report test suites and of the libFuzzer targets in
# fuzz/, then the suites and a short run of every target on its corpus. Any
# sanitizer finding, crash or hang fails the script.
#   MOESIM_FUZZ_SECONDS  seconds per fuzz target (default 5; 0 skips fuzzing)
# The simulator's [scenarios] cases (statistical, minutes under ASan) run in the
# regular build only.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${MOESIM_FUZZ_SECONDS:-5}"
targets=(scenario train_config policy_state npy trace_manifest c4_line csv checkpoint_meta json)

# Without LibTorch and without MPI: this build also compiles and tests the one-process sweep path (sim/mpi_world.cpp).
cmake -S . -B build-san -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g" -DMOESIM_SANITIZE=ON -DMOESIM_FUZZ=ON \
  -DMOESIM_WITH_TORCH=OFF -DMOESIM_WITH_MPI=OFF -DMOESIM_BUILD_BENCH=OFF > build-san.cmake.log 2>&1 || { cat build-san.cmake.log; exit 1; }
cmake --build build-san -j "$(nproc)" --target test_common test_policies test_metrics test_trace test_sim test_reports "${targets[@]/#/fuzz_}"

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
echo "sanitize: test suites under ASan + UBSan"
build-san/tests/test_common -w NoAssertions
build-san/tests/test_policies -w NoAssertions
build-san/tests/test_metrics -w NoAssertions
build-san/tests/test_trace -w NoAssertions
build-san/tests/sim/test_sim -w NoAssertions "~[scenarios]"
build-san/tests/reports/test_reports -w NoAssertions

if [ "$seconds" != "0" ]; then
  for t in "${targets[@]}"; do
    # New inputs go to a scratch folder: the corpus in the repo stays the small seed set.
    scratch="$(mktemp -d)"
    if ! build-san/fuzz/fuzz_"$t" "$scratch" fuzz/corpus/"$t" -max_total_time="$seconds" -timeout=10 \
         -rss_limit_mb=2048 -print_final_stats=1 > build-san/fuzz_"$t".log 2>&1; then
      tail -n 40 build-san/fuzz_"$t".log
      rm -rf "$scratch"
      echo "sanitize: fuzz_$t found a problem (input saved as crash-*/timeout-* here)"
      exit 1
    fi
    rm -rf "$scratch"
    echo "sanitize: fuzz_$t $(grep -o 'number_of_executed_units: [0-9]*' build-san/fuzz_"$t".log | grep -o '[0-9]*') runs, no finding"
  done
fi
echo "sanitize: no findings"
