// End-to-end simulator throughput (stream + gate + policy + world + metrics), one
// thread, at the simulator's default shape (E = 64, k = 2, T = 4096, d = 32).
// Run: ./build/bench/bench_sim ; items/s = token-expert routings per second.
#include <benchmark/benchmark.h>

#include <string>

#include "sim/simulator.hpp"

namespace {

using namespace moesim;

void BM_Simulate(benchmark::State& state, std::string policy) {
  SimConfig c;
  c.steps = state.range(0);
  c.policy.name = policy;
  const Simulator sim(c);
  std::int64_t routings = 0;
  for (auto _ : state) {
    const auto r = sim.run();
    routings += r.routings;
    benchmark::DoNotOptimize(r.mean.data());
  }
  state.SetItemsProcessed(routings);
}

const bool registered = [] {
  for (const char* p : {"topk", "rdesi", "loss_free", "noisy_topk", "expert_choice"})
    benchmark::RegisterBenchmark(("simulate/" + std::string(p)).c_str(), BM_Simulate, p)
        ->Arg(100)
        ->ArgName("steps")
        ->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace

BENCHMARK_MAIN();
