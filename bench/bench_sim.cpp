// End-to-end simulator throughput (stream + gate + policy + world + metrics), one
// thread, at the simulator's default shape (E = 64, k = 2, T = 4096, d = 32).
// Run: ./build/bench/bench_sim ; items/s = token-expert routings per second.
#include <benchmark/benchmark.h>

#include <filesystem>
#include <string>
#include <system_error>

#include <unistd.h>

#include "policies/rng.hpp"
#include "sim/scenario.hpp"
#include "sim/simulator.hpp"
#include "sim/sweep.hpp"
#include "trace/trace.hpp"

namespace {

using namespace moesim;

// Runs c once per iteration; items = token-expert routings.
void run_config(benchmark::State& state, const SimConfig& c) {
  const Simulator sim(c);
  std::int64_t routings = 0;
  for (auto _ : state) {
    const auto r = sim.run();
    routings += r.routings;
    benchmark::DoNotOptimize(r.mean.data());
  }
  state.SetItemsProcessed(routings);
}

void BM_Simulate(benchmark::State& state, std::string policy) {
  SimConfig c;
  c.steps = state.range(0);
  c.policy.name = policy;
  run_config(state, c);
}

// A recorded stream of the default shape (100 steps of U(-2, 2) logits, token
// ids and per-expert performance), written once per process under the temp dir,
// in a folder of its own (two benchmark processes run side by side for A/B
// comparisons, and one must not delete the other's trace).
std::string bench_trace() {
  static const std::string dir = [] {
    const auto d =
        (std::filesystem::temp_directory_path() / ("moesim-bench-trace-" + std::to_string(::getpid()))).string();
    std::filesystem::remove_all(d);
    TraceWriter w(d);
    const SimConfig c;
    Rng rng(7);
    std::vector<float> z(static_cast<std::size_t>(c.batch) * c.experts), perf(static_cast<std::size_t>(c.batch));
    std::vector<std::int64_t> ids(static_cast<std::size_t>(c.batch));
    Assignment a;
    a.reset(c.batch, c.experts, 1);
    for (long s = 1; s <= 100; ++s) {
      for (auto& v : z) v = static_cast<float>(rng.uniform(-2.0, 2.0));
      for (int t = 0; t < c.batch; ++t) {
        ids[t] = static_cast<std::int64_t>(rng.next_u64() % 50000);
        a.requested[t] = a.expert[t] = static_cast<std::int32_t>(t % c.experts);
        perf[t] = static_cast<float>(rng.uniform());
      }
      w.record_tokens(s, ids.data(), c.batch);
      w.record_logits(0, s, z.data(), c.batch, c.experts);
      w.record_routing(0, s, a, perf.data());
    }
    w.commit();
    return d;
  }();
  // The trace is about 100 MB: removed when the process exits.
  static const struct Cleanup {
    ~Cleanup() {
      std::error_code ec;
      std::filesystem::remove_all(dir, ec);
    }
  } cleanup;
  return dir;
}

// Replay of the recorded stream through a policy: same E, k, T as simulate/.
void BM_Replay(benchmark::State& state, std::string policy) {
  SimConfig c;
  c.stream.kind = "replay";
  c.stream.trace = bench_trace();
  c.policy.name = policy;
  run_config(state, c);
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
  for (const char* p : {"topk", "rdesi", "loss_free", "noisy_topk", "expert_choice"})
    benchmark::RegisterBenchmark(("replay/" + std::string(p)).c_str(), BM_Replay, p)->Unit(benchmark::kMillisecond);
  return true;
}();

}  // namespace
