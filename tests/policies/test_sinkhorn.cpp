// Sinkhorn routing: top-k on the Sinkhorn-balanced exp(logits), weights from the raw logits.
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <cmath>

#include "helpers.hpp"
#include "policies/registry.hpp"

using namespace testutil;
using moesim::Assignment;

TEST_CASE("sinkhorn hand-computed 2x2: balancing overrides a token's weaker preference") {
  // K = exp(z) = [[4, 1], [2, 1]] (t0 {ln4, 0}, t1 {ln2, 0}). Balanced to rows 1 and
  // columns T/E = 1, a 2x2 doubly stochastic P = [[a, 1-a], [1-a, a]] keeps the cross
  // ratio: a^2/(1-a)^2 = (4*1)/(1*2) = 2 -> a = sqrt2/(1+sqrt2) = 0.5858.
  // So t0 -> expert 0 (0.586 > 0.414) and t1 -> expert 1 (0.586 > 0.414), although t1's
  // own logits prefer expert 0 (plain top-1 sends both tokens to expert 0).
  const std::vector<float> z = {std::log(4.0f), 0.0f, std::log(2.0f), 0.0f};
  auto p = moesim::make_policy("sinkhorn", 2, 1, {{"dropless", "true"}, {"renormalize", "false"}});
  const auto a = route_once(*p, z, 2, 2);
  CHECK(a.expert == std::vector<std::int32_t>{0, 1});
  // Weights from the raw logits: softmax(ln4, 0)[0] = 4/5 = 0.8, softmax(ln2, 0)[1] = 1/3.
  CHECK(a.weight[0] == Approx(0.8).epsilon(1e-5));
  CHECK(a.weight[1] == Approx(1.0 / 3).epsilon(1e-5));
  // iterations = 0 is plain top-k: both tokens to expert 0.
  auto q = moesim::make_policy("sinkhorn", 2, 1, {{"dropless", "true"}, {"iterations", "0"}});
  CHECK(route_once(*q, z, 2, 2).expert == std::vector<std::int32_t>{0, 0});
}

TEST_CASE("sinkhorn hand-computed: an expert 800 below the row maxima (log-domain path) is still balanced in") {
  // t0 {0, -800}, t1 {0, -801}: row spread 800 (> 100, so the log-domain iteration runs;
  // exp(-800) underflows even in double). Cross ratio K00*K11/(K01*K10) = e^-801/e^-800 = e^-1,
  // so a^2/(1-a)^2 = e^-1 -> a = e^-0.5/(1+e^-0.5) = 0.3775 and
  // P = [[0.3775, 0.6225], [0.6225, 0.3775]]: t0 -> expert 1, t1 -> expert 0.
  const std::vector<float> wide = {0.0f, -800.0f, 0.0f, -801.0f};
  auto p = moesim::make_policy("sinkhorn", 2, 1, {{"dropless", "true"}});
  CHECK(route_once(*p, wide, 2, 2).expert == std::vector<std::int32_t>{1, 0});
  // The same cross ratio with a narrow spread (linear path): t0 {0, 0}, t1 {0, -1}.
  const std::vector<float> narrow = {0.0f, 0.0f, 0.0f, -1.0f};
  CHECK(route_once(*p, narrow, 2, 2).expert == std::vector<std::int32_t>{1, 0});
}

TEST_CASE("sinkhorn with iterations = 0 equals topk bitwise") {
  rc::prop("sinkhorn(iterations=0) == topk with the same score and capacity knobs", [] {
    const auto& info = moesim::policy_info("sinkhorn");
    Scenario s = gen_scenario(info);
    // Knobs topk does not have (a preset would also change the score knobs).
    for (const char* key : {"tol", "iterations", "eval_mode", "preset"}) s.knobs.erase(key);
    auto kn = s.knobs;
    kn["iterations"] = "0";
    RC_LOG() << s.describe() << '\n';
    auto sk = moesim::make_policy("sinkhorn", s.E, s.k, kn);
    auto tk = moesim::make_policy("topk", s.E, s.k, s.knobs);
    const auto a = route_once(*sk, s.logits, s.T, s.E), b = route_once(*tk, s.logits, s.T, s.E);
    const auto d = diff_assignments(a, b);
    if (!d.empty()) RC_FAIL(d);
  });
}

TEST_CASE("sinkhorn: on a collapsed batch the balanced selection spreads load that top-k piles on one expert") {
  // 64 tokens all slightly preferring expert 0 (by 0.5) with per-token variation:
  // top-1 sends all 64 to expert 0; Sinkhorn-balanced scores split the batch.
  const int E = 4, T = 64;
  auto z = make_logits(T, E, 8, kContinuous);
  for (auto& x : z) x *= 0.05f;
  for (int t = 0; t < T; ++t) z[static_cast<std::size_t>(t) * E] += 0.5f;
  auto tk = moesim::make_policy("topk", E, 1, {{"dropless", "true"}});
  auto sk = moesim::make_policy("sinkhorn", E, 1, {{"dropless", "true"}});
  CHECK(route_once(*tk, z, T, E).counts[0] == T);
  const auto a = route_once(*sk, z, T, E);
  for (int e = 0; e < E; ++e) {
    CAPTURE(e);
    CHECK(a.counts[static_cast<std::size_t>(e)] > 0);
    CHECK(a.counts[static_cast<std::size_t>(e)] < T / 2);
  }
}

TEST_CASE("sinkhorn eval_mode topk: at evaluation plain top-k of the logits, as Megatron-Core routes") {
  // A collapsed batch: every token prefers expert 0. Training balances; evaluation with
  // eval_mode topk does not; eval_mode sinkhorn (moesim) balances there too.
  const int T = 16, E = 4;
  std::vector<float> z;
  for (int t = 0; t < T; ++t) z.insert(z.end(), {1.0f, 0.1f * static_cast<float>(t % 3), 0.0f, -0.5f});
  auto run = [&](const moesim::KnobMap& kn, bool training) {
    auto p = moesim::make_policy("sinkhorn", E, 1, kn);
    moesim::RouteInput in;
    in.logits = z.data();
    in.tokens = T;
    in.experts = E;
    in.training = training;
    moesim::Rng rng(1);
    Assignment a;
    p->route(in, rng, a);
    return a;
  };
  const moesim::KnobMap topk_eval = {{"eval_mode", "topk"}, {"dropless", "true"}};
  CHECK(run(topk_eval, false).counts == std::vector<std::int64_t>{T, 0, 0, 0});
  CHECK(run(topk_eval, true).counts[0] < T);
  CHECK(run({{"dropless", "true"}}, false).counts[0] < T);
  // The megatron preset: sigmoid weights for k = 1 (softmax for k > 1), never renormalised.
  auto m = moesim::make_policy("sinkhorn", E, 1, {{"preset", "megatron"}});
  CHECK(m->weight_spec().rule == moesim::WeightRule::SigmoidGather);
  CHECK_FALSE(m->weight_spec().renormalize);
  auto m2 = moesim::make_policy("sinkhorn", E, 2, {{"preset", "megatron"}});
  CHECK(m2->weight_spec().rule == moesim::WeightRule::SoftmaxGather);
  CHECK(m2->knobs().values().at("eval_mode") == "topk");
}

TEST_CASE("sinkhorn preset megatron: Megatron-Core's sinkhorn + top-k and its weights, written out from moe_utils.py") {
  // sinkhorn(cost): cost = exp(z); d0 = 1/T / (cost d1 + eps), d1 = 1/E / (d0 cost + eps), until the
  // mean |change| of d1 is <= 1e-4; then top-k of d1 * cost * d0. Weights: sigmoid(z) for k = 1,
  // softmax(z) for k > 1, gathered, not renormalised. The two stop their iterations by different
  // rules, so a token whose k-th and (k+1)-th balanced scores nearly tie may differ: at most 1%.
  for (int k : {1, 2, 4}) {
    const int T = 256, E = 16;
    const auto z = make_distinct_logits(T, E, 40 + static_cast<std::uint64_t>(k));
    std::vector<double> cost(static_cast<std::size_t>(T) * E), d0(static_cast<std::size_t>(T), 1.0),
        d1(static_cast<std::size_t>(E), 1.0);
    for (std::size_t i = 0; i < cost.size(); ++i) cost[i] = std::exp(double(z[i]));
    for (double err = 1e9; err > 1e-4;) {
      for (int t = 0; t < T; ++t) {
        double s = 0;
        for (int e = 0; e < E; ++e) s += d1[static_cast<std::size_t>(e)] * cost[static_cast<std::size_t>(t) * E + e];
        d0[static_cast<std::size_t>(t)] = 1.0 / T / (s + 1e-8);
      }
      err = 0;
      for (int e = 0; e < E; ++e) {
        double s = 0;
        for (int t = 0; t < T; ++t) s += d0[static_cast<std::size_t>(t)] * cost[static_cast<std::size_t>(t) * E + e];
        const double nd = 1.0 / E / (s + 1e-8);
        err += std::fabs(nd - d1[static_cast<std::size_t>(e)]) / E;
        d1[static_cast<std::size_t>(e)] = nd;
      }
    }
    auto p = moesim::make_policy("sinkhorn", E, k, {{"preset", "megatron"}});
    const auto a = route_once(*p, z, T, E);
    int agree = 0;
    for (int t = 0; t < T; ++t) {
      std::vector<double> row(static_cast<std::size_t>(E));
      for (int e = 0; e < E; ++e) row[static_cast<std::size_t>(e)] = d1[static_cast<std::size_t>(e)] * cost[static_cast<std::size_t>(t) * E + e];
      const auto want = ref_topk(row.data(), E, k);
      bool same = true;
      for (int j = 0; j < k; ++j) same &= a.at(t, j) == want[static_cast<std::size_t>(j)];
      agree += same;
      const float* zt = z.data() + static_cast<std::size_t>(t) * E;
      double zs = 0;
      for (int e = 0; e < E; ++e) zs += std::exp(double(zt[e]));
      for (int j = 0; j < k; ++j) {
        const double x = zt[a.at(t, j)];
        const double w = k == 1 ? 1.0 / (1.0 + std::exp(-x)) : std::exp(x) / zs;
        CHECK(a.weight_at(t, j) == Approx(w).epsilon(1e-5));
      }
    }
    INFO("k = " << k << ": " << agree << " of " << T << " tokens agree");
    CHECK(agree >= T * 99 / 100);
  }
}
