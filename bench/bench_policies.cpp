// route + observe throughput for every policy, one thread, next to a
// straightforward implementation (full sort per token, softmax over all experts).
// Run: ./build/bench/bench_policies --benchmark_filter=... ; items/s = tokens/s.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

#include "policies/registry.hpp"
#include "policies/select.hpp"
#include "policies/expert_choice.hpp"
#include "policies/sinkhorn.hpp"

namespace {

using namespace moesim;

constexpr int kTokens = 16384;

struct Batch {
  std::vector<float> logits;
  std::vector<std::int64_t> ids;
  std::vector<float> perf;
};

const Batch& batch(int E) {
  static std::vector<std::pair<int, Batch>> cache;
  for (auto& [e, b] : cache)
    if (e == E) return b;
  Batch b;
  Rng rng(derive_seed(42, "bench.logits." + std::to_string(E)));
  b.logits.resize(static_cast<std::size_t>(kTokens) * E);
  for (auto& x : b.logits) x = static_cast<float>(rng.normal());
  b.ids.resize(kTokens);
  for (auto& id : b.ids) id = static_cast<std::int64_t>(rng.below(50000));
  b.perf.resize(static_cast<std::size_t>(kTokens) * E);
  for (auto& p : b.perf) p = static_cast<float>(rng.uniform());
  cache.emplace_back(E, std::move(b));
  return cache.back().second;
}

void BM_Policy(benchmark::State& state, std::string name, KnobMap knobs) {
  const int E = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  const auto& b = batch(E);
  auto pol = make_policy(name, E, k, knobs);
  Rng rng(7);
  Assignment a;
  RouteInput in{b.logits.data(), kTokens, E, b.ids.data()};
  for (auto _ : state) {
    pol->route(in, rng, a);
    pol->observe(a, b.perf.data());
    benchmark::DoNotOptimize(a.weight.data());
  }
  state.SetItemsProcessed(state.iterations() * kTokens);
  if (const auto* sk = dynamic_cast<const SinkhornPolicy*>(pol.get())) {
    state.counters["rounds"] = static_cast<double>(sk->last_stats().rounds);
    state.counters["col_dev"] = sk->last_stats().deviation;
  }
  if (const auto* ec = dynamic_cast<const ExpertChoicePolicy*>(pol.get())) {
    state.counters["candidates"] = static_cast<double>(ec->last_stats().candidates);
    state.counters["fallbacks"] = ec->last_stats().fallbacks;
  }
}

// The bandwidth bound: one pass reading every logit of the batch (T x E floats),
// 16 lanes at a time into four independent running maxima, so the loop waits on
// loads and not on a chain of dependent compares (a scalar max per row measured
// that latency, 7-14x below this). No policy can route faster than it reads its
// input; items/s = tokens/s at that bound. Vectors of the target's width: GCC
// lowers 64-byte vectors through the stack without AVX-512 (on an AVX2 EPYC
// this loop read 3.2 GB/s at 16 lanes).
void BM_ReadLogits(benchmark::State& state) {
#if defined(__AVX512F__)
  constexpr int W = 16;
#else
  constexpr int W = 8;
#endif
  using vec = float __attribute__((vector_size(4 * W)));
  const int E = static_cast<int>(state.range(0));
  const auto& b = batch(E);
  const std::size_t n = b.logits.size();
  for (auto _ : state) {
    vec m[4];
    for (auto& v : m) std::memcpy(&v, b.logits.data(), sizeof v);
    std::size_t i = 0;
    for (; i + 4 * W <= n; i += 4 * W)
      for (int q = 0; q < 4; ++q) {
        vec v;
        std::memcpy(&v, b.logits.data() + i + W * q, sizeof v);
        m[q] = v > m[q] ? v : m[q];
      }
    float acc = 0.0f;
    for (; i < n; ++i) acc = std::max(acc, b.logits[i]);
    for (int l = 0; l < W; ++l) acc = std::max({acc, m[0][l], m[1][l], m[2][l], m[3][l]});
    benchmark::DoNotOptimize(acc);
  }
  state.SetItemsProcessed(state.iterations() * kTokens);
  state.SetBytesProcessed(state.iterations() * kTokens * E * static_cast<std::int64_t>(sizeof(float)));
}
BENCHMARK(BM_ReadLogits)->Name("read_logits (bound)")->ArgName("E")->Arg(8)->Arg(64)->Arg(256);

// What a first implementation looks like: softmax over all experts, a full sort
// per token, gather, renormalise, then capacity by position.
void naive_topk(const float* logits, int T, int E, int k, double cf, std::vector<std::int32_t>& ex,
                std::vector<float>& w, std::vector<std::int64_t>& counts, const float* bias) {
  ex.assign(static_cast<std::size_t>(T) * k, -1);
  w.assign(static_cast<std::size_t>(T) * k, 0.0f);
  counts.assign(static_cast<std::size_t>(E), 0);
  std::vector<float> p(static_cast<std::size_t>(E)), score(static_cast<std::size_t>(E));
  std::vector<std::int32_t> order(static_cast<std::size_t>(E));
  const auto C = static_cast<std::int64_t>(std::ceil(cf * T * k / E));
  for (int t = 0; t < T; ++t) {
    const float* z = logits + static_cast<std::size_t>(t) * E;
    const float m = *std::max_element(z, z + E);
    float s = 0;
    for (int e = 0; e < E; ++e) s += p[e] = std::exp(z[e] - m);
    for (int e = 0; e < E; ++e) p[e] /= s, score[e] = z[e] + (bias ? bias[e] : 0.0f);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return score[a] > score[b] || (score[a] == score[b] && a < b); });
    float ws = 0;
    for (int j = 0; j < k; ++j) ws += p[order[j]];
    for (int j = 0; j < k; ++j) {
      ex[static_cast<std::size_t>(t) * k + j] = order[j];
      w[static_cast<std::size_t>(t) * k + j] = p[order[j]] / ws;
    }
  }
  for (int j = 0; j < k; ++j)
    for (int t = 0; t < T; ++t) {
      auto& e = ex[static_cast<std::size_t>(t) * k + j];
      if (counts[e] < C) ++counts[e]; else e = -1;
    }
}

void BM_NaiveSort(benchmark::State& state, bool with_bias) {
  const int E = static_cast<int>(state.range(0)), k = static_cast<int>(state.range(1));
  const auto& b = batch(E);
  std::vector<std::int32_t> ex;
  std::vector<float> w, bias(static_cast<std::size_t>(E), 0.01f);
  std::vector<std::int64_t> counts;
  for (auto _ : state) {
    naive_topk(b.logits.data(), kTokens, E, k, 1.25, ex, w, counts, with_bias ? bias.data() : nullptr);
    benchmark::DoNotOptimize(w.data());
  }
  state.SetItemsProcessed(state.iterations() * kTokens);
}

void sizes(benchmark::internal::Benchmark* b, bool top1) {
  for (int E : {8, 64, 256})
    for (int k : {1, 2, 8})
      if (!top1 || k == 1) b->Args({E, k});
  b->ArgNames({"E", "k"})->Unit(benchmark::kMillisecond);
}

const bool registered = [] {
  for (const auto& p : policy_registry()) {
    sizes(benchmark::RegisterBenchmark(("route+observe/" + p.name).c_str(), BM_Policy, p.name, KnobMap{}),
          accepted_k(p, 8, 2) == 1);
  }
  // BASE's own solver, side by side with the exact default.
  sizes(benchmark::RegisterBenchmark("route+observe/balanced (solver=auction)", BM_Policy, std::string("balanced"),
                                     KnobMap{{"solver", "auction"}}),
        false);
  // Group-limited top-k as DeepSeek-V3 routes (8 groups, 4 kept at k = 8; at k = 2 both groups of the pair).
  for (int k : {2, 8})
    benchmark::RegisterBenchmark("route+observe/topk (n_groups=8)", BM_Policy, std::string("topk"),
                                 KnobMap{{"n_groups", "8"}, {"topk_groups", k == 2 ? "2" : "4"}})
        ->Args({64, k})
        ->Args({256, k})
        ->ArgNames({"E", "k"})
        ->Unit(benchmark::kMillisecond);
  // RD-ESI with GT-MoE router.py's semantics: the row scripts/bench_torch_routers.py's
  // rdesi_gtmoe times in PyTorch.
  benchmark::RegisterBenchmark("route+observe/rdesi (preset=reference)", BM_Policy, std::string("rdesi"),
                               KnobMap{{"preset", "reference"}})
      ->Args({64, 2})
      ->ArgNames({"E", "k"})
      ->Unit(benchmark::kMillisecond);
  sizes(benchmark::RegisterBenchmark("naive_full_sort/topk", BM_NaiveSort, false), false);
  sizes(benchmark::RegisterBenchmark("naive_full_sort/rdesi", BM_NaiveSort, true), false);
  return true;
}();

}  // namespace
