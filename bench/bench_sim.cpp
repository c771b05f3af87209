// End-to-end simulator throughput (stream + gate + policy + world + metrics), one
// thread, at the simulator's default shape (E = 64, k = 2, T = 4096, d = 32).
// Run: ./build/bench/bench_sim ; items/s = token-expert routings per second.
#include <benchmark/benchmark.h>

#include <string>

#include "sim/scenario.hpp"
#include "sim/simulator.hpp"
#include "sim/sweep.hpp"

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

// Planning a sweep of n x n points (expansion, run list, every replay command):
// linear in the points (Google Benchmark fits the complexity).
void BM_Plan(benchmark::State& state) {
  const auto n = static_cast<int>(state.range(0));
  std::string vals;
  for (int i = 0; i < n; ++i) vals += (i ? ", " : "") + std::to_string(0.001 * (i + 1));
  const Scenario sc = parse_scenario("name: big\nsteps: 2\nbatch: 8\nexperts: 4\nk: 1\nseeds: [1]\nsweep:\n"
                                     "  world.skill_growth: [" + vals + "]\n  gate.lr: [" + vals + "]\n",
                                     "bench.yaml");
  for (auto _ : state) {
    const auto points = expand_sweep(sc);
    const auto runs = plan_runs(points, sc.run_seeds());
    std::size_t bytes = 0;
    for (const auto& p : points) bytes += replay_command(sc, p, 1, "moesim", "").size();
    benchmark::DoNotOptimize(bytes);
    benchmark::DoNotOptimize(runs.data());
  }
  state.SetComplexityN(static_cast<std::int64_t>(n) * n);
  state.SetItemsProcessed(state.iterations() * n * n);
}
BENCHMARK(BM_Plan)->Name("plan_sweep/side")->RangeMultiplier(2)->Range(50, 400)->Unit(benchmark::kMillisecond)
    ->Complexity(benchmark::oN);

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
