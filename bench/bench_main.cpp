// The main of every benchmark program: Google Benchmark's, with the CPU model
// and ISA (common/cpu.hpp) in the context each run prints, so no speed figure
// is separated from the machine it was measured on.
#include <benchmark/benchmark.h>

#include "common/cpu.hpp"

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::AddCustomContext("cpu_model", moesim::cpu_model());
  benchmark::AddCustomContext("cpu_isa", moesim::cpu_isa());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
