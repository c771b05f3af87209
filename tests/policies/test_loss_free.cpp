// Loss-free balancing, hand-computed: select top-k on s + b, weight on s alone,
// after each batch b_i += u * sign(mean demand - demand_i).
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <bit>
#include <cmath>
#include <limits>
#include <map>
#include <numeric>

#include "helpers.hpp"
#include "policies/fast_math.hpp"
#include "policies/loss_free.hpp"
#include "policies/registry.hpp"
#include "policies/select.hpp"

using namespace testutil;
using moesim::Assignment;
using moesim::Rng;

namespace {
std::vector<double> bias_of(const moesim::Policy& p) {
  for (const auto& [n, v] : p.state_vectors())
    if (n == "bias") return v;
  FAIL("loss_free exposes no state vector 'bias'");
  return {};
}
void check_vec(const std::vector<double>& got, const std::vector<double>& want) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == Approx(want[i]).margin(1e-12));
  }
}
Assignment step(moesim::Policy& p, const std::vector<float>& z, int T) {
  const auto a = route_once(p, z, T, p.experts());
  p.observe(a, nullptr);
  return a;
}
}  // namespace

TEST_CASE("loss_free hand-computed: bias sign update, then the bias steers selection but not weights") {
  // E=4, k=2, u=0.1, sigmoid scores (the default), dropless.
  auto p = moesim::make_policy("loss_free", 4, 2, {{"bias_rate", "0.1"}, {"dropless", "true"}});
  check_vec(bias_of(*p), {0, 0, 0, 0});
  // t0 {2,1,0,0} -> experts 0,1; t1 {2,0,1,0} -> experts 0,2. demand {2,1,1,0}, mean 1.
  // sign(mean - demand) = {-1, 0, 0, +1} -> bias {-0.1, 0, 0, +0.1}.
  const Assignment a = step(*p, {2, 1, 0, 0, 2, 0, 1, 0}, 2);
  REQUIRE(a.expert == std::vector<std::int32_t>{0, 1, 0, 2});
  check_vec(bias_of(*p), {-0.1, 0, 0, 0.1});

  // Token z = {0.2, 0.1, 0, 0}: s = sigmoid = {0.549834, 0.524979, 0.5, 0.5};
  // s + b = {0.449834, 0.524979, 0.5, 0.6} -> experts 3, 1 (without the bias: 0, 1).
  // Weights on s only, renormalised: 0.5/1.024979 = 0.4878148, 0.524979/1.024979 = 0.5121852.
  const Assignment b = step(*p, {0.2f, 0.1f, 0.0f, 0.0f}, 1);
  REQUIRE(b.expert == std::vector<std::int32_t>{3, 1});
  CHECK(b.weight_at(0, 0) == Approx(0.4878148).epsilon(1e-5));
  CHECK(b.weight_at(0, 1) == Approx(0.5121852).epsilon(1e-5));
  // demand {0,1,0,1}, mean 0.5: signs {+1, -1, +1, -1} -> bias {0, -0.1, 0.1, 0}.
  check_vec(bias_of(*p), {0.0, -0.1, 0.1, 0.0});
}

TEST_CASE("loss_free balances demand before capacity, not the capped served counts") {
  // E=2, k=1, T=4, cf=0.5, min_capacity=0 -> C = ceil(0.5*4/2) = 1.
  // Three tokens want e0, one e1: served counts {1,1} look balanced, demand {3,1} is not.
  // mean demand 2 -> bias {-u, +u}.
  auto p = moesim::make_policy("loss_free", 2, 1,
                               {{"bias_rate", "0.25"}, {"capacity_factor", "0.5"}, {"min_capacity", "0"}});
  const Assignment a = step(*p, {1, 0, 1, 0, 1, 0, 0, 1}, 4);
  REQUIRE(a.capacity == 1);
  CHECK(a.counts == std::vector<std::int64_t>{1, 1});
  check_vec(bias_of(*p), {-0.25, 0.25});
}

TEST_CASE("loss_free with u = 0 never moves its bias; softmax scores select like topk") {
  const int E = 6, k = 2, T = 50;
  auto p = moesim::make_policy("loss_free", E, k, {{"bias_rate", "0"}, {"score_fn", "softmax"}, {"dropless", "true"}});
  for (int s = 0; s < 3; ++s) {
    // Distinct logits: softmax is strictly increasing, so s ranks like the logits.
    const auto z = make_distinct_logits(T, E, 90 + static_cast<std::uint64_t>(s));
    const Assignment a = step(*p, z, T);
    for (int t = 0; t < T; ++t) {
      const auto want = ref_topk(z.data() + static_cast<std::size_t>(t) * E, E, k);
      for (int j = 0; j < k; ++j) REQUIRE(a.at(t, j) == want[static_cast<std::size_t>(j)]);
    }
    check_vec(bias_of(*p), std::vector<double>(E, 0.0));
  }
}

TEST_CASE("loss_free: a collapsed router is pulled toward balance over many batches") {
  // Every token prefers expert 0 by a small margin (sigmoid gap 0.525 - 0.5 = 0.025).
  // With u = 0.01 the bias closes that gap within a few batches, so demand spreads out.
  const int E = 4, T = 64;
  auto p = moesim::make_policy("loss_free", E, 1, {{"bias_rate", "0.01"}, {"dropless", "true"}});
  std::vector<float> z(static_cast<std::size_t>(T) * E, 0.0f);
  const auto noise = make_logits(T, E, 5, kContinuous);
  for (std::size_t i = 0; i < z.size(); ++i) z[i] = noise[i] * 0.01f;  // tiny per-token variation
  for (int t = 0; t < T; ++t) z[static_cast<std::size_t>(t) * E] += 0.1f;
  const Assignment first = step(*p, z, T);
  CHECK(first.counts[0] == T);  // collapsed at the start
  // A sign controller oscillates, so judge the last 20 batches together: if expert 0
  // kept every token, its bias would fall by u per batch without bound; every expert
  // must get tokens and expert 0 must not hold them all.
  std::vector<std::int64_t> total(static_cast<std::size_t>(E), 0);
  for (int i = 0; i < 30; ++i) {
    const Assignment a = step(*p, z, T);
    if (i >= 10)
      for (int e = 0; e < E; ++e) total[static_cast<std::size_t>(e)] += a.counts[static_cast<std::size_t>(e)];
  }
  for (int e = 0; e < E; ++e) CHECK(total[static_cast<std::size_t>(e)] > 0);
  CHECK(total[0] < 20 * T);
}

TEST_CASE("loss_free bias_counts served (Megatron-Core counts after token dropping) vs requested") {
  // E = 3, k = 1, T = 6, cf = 1, min 0: C = 2. Requests {4, 2, 0} (mean 2): requested-based signs
  // {-1, 0, +1}; served {2, 2, 0} (mean 4/3): signs {-1, -1, +1}.
  const std::vector<float> z = {2, 0, 0, 2, 0, 0, 2, 0, 0, 2, 0, 0, 0, 2, 0, 0, 2, 0};
  moesim::KnobMap kn = {{"bias_rate", "0.5"}, {"capacity_factor", "1"}, {"min_capacity", "0"}};
  auto req = moesim::make_policy("loss_free", 3, 1, kn);
  const Assignment a = step(*req, z, 6);
  REQUIRE(a.counts == std::vector<std::int64_t>{2, 2, 0});
  check_vec(bias_of(*req), {-0.5, 0.0, 0.5});
  kn["bias_counts"] = "served";
  auto srv = moesim::make_policy("loss_free", 3, 1, kn);
  step(*srv, z, 6);
  check_vec(bias_of(*srv), {-0.5, -0.5, 0.5});
}

TEST_CASE("loss_free group-limited (DeepSeek-V3): groups ranked by the sum of their top s + b values") {
  // E = 4 in groups {0,1}, {2,3}, k = 2, one group kept, sigmoid scores, bias 0 at the start.
  // z = {2, -2, 0.5, 0.5}: s = {0.880797, 0.119203, 0.622459, 0.622459};
  //   group sums of the top 2: g0 = 1.0, g1 = 1.244919 -> g1 -> experts {2, 3} (tie: lower index first),
  //   although expert 0 has the highest score of all.
  auto p = moesim::make_policy("loss_free", 4, 2, {{"n_groups", "2"}, {"topk_groups", "1"}, {"dropless", "true"}});
  const Assignment a = step(*p, {2, -2, 0.5f, 0.5f}, 1);
  CHECK(a.expert == std::vector<std::int32_t>{2, 3});
  // Without groups: the top 2 of s are experts 0 and 2.
  auto q = moesim::make_policy("loss_free", 4, 2, {{"dropless", "true"}});
  CHECK(step(*q, {2, -2, 0.5f, 0.5f}, 1).expert == std::vector<std::int32_t>{0, 2});
}

TEST_CASE("loss_free presets: megatron and deepseek_v3 resolve to their documented knob values") {
  auto m = moesim::make_policy("loss_free", 8, 2, {{"preset", "megatron"}});
  CHECK(m->knobs().values().at("bias_counts") == "served");
  CHECK(m->knobs().values().at("score_fn") == "sigmoid");
  CHECK(m->knobs().values().at("drop_weights") == "mask");
  auto m1 = moesim::make_policy("loss_free", 8, 1, {{"preset", "megatron"}});
  CHECK(m1->knobs().values().at("renormalize") == "false");  // sigmoid k = 1: probs = scores
  auto d = moesim::make_policy("loss_free", 8, 2, {{"preset", "deepseek_v3"}});
  CHECK(d->knobs().values().at("dropless") == "true");
  CHECK(d->weight_spec().scale == 2.5);
  CHECK(d->weight_spec().rule == moesim::WeightRule::SigmoidGather);
}

namespace {

// Megatron-Core with moe_router_enable_expert_bias, written out from moe_utils.py:
// topk_routing_with_score_function (sigmoid scores, top-k of scores + bias, probs the
// gathered scores renormalised when k > 1), apply_router_token_dropping ("probs": each
// expert keeps its C = ceil((T*k/E)*cf) highest probs, the rest masked), then
// get_updated_expert_bias on the routing map after dropping.
struct MegatronExpertBias {
  int E, k;
  double cf, u;
  std::vector<double> bias;
  MegatronExpertBias(int E_, int k_, double cf_, double u_) : E(E_), k(k_), cf(cf_), u(u_), bias(E_, 0.0) {}

  std::vector<std::map<int, double>> step(const std::vector<float>& z, int T) {
    std::vector<std::vector<double>> probs(static_cast<std::size_t>(T), std::vector<double>(static_cast<std::size_t>(E), 0.0));
    for (int t = 0; t < T; ++t) {
      std::vector<double> s(static_cast<std::size_t>(E)), sb(static_cast<std::size_t>(E));
      for (int e = 0; e < E; ++e) {
        s[static_cast<std::size_t>(e)] = 1.0 / (1.0 + std::exp(-double(z[static_cast<std::size_t>(t) * E + e])));
        // Selection on scores + bias in float, as the policy forms it.
        sb[static_cast<std::size_t>(e)] = static_cast<float>(static_cast<float>(s[static_cast<std::size_t>(e)]) +
                                                             static_cast<float>(bias[static_cast<std::size_t>(e)]));
      }
      const auto top = ref_topk(sb.data(), E, k);
      double sum = 0;
      for (int e : top) sum += s[static_cast<std::size_t>(e)];
      for (int e : top) probs[static_cast<std::size_t>(t)][static_cast<std::size_t>(e)] = k > 1 ? s[static_cast<std::size_t>(e)] / (sum + 1e-20) : s[static_cast<std::size_t>(e)];
    }
    const long C = static_cast<long>(std::ceil(static_cast<double>(T * k) / E * cf));
    std::vector<double> served(static_cast<std::size_t>(E), 0.0);
    for (int e = 0; e < E; ++e) {
      std::vector<int> order(static_cast<std::size_t>(T));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) {
        return probs[static_cast<std::size_t>(a)][static_cast<std::size_t>(e)] > probs[static_cast<std::size_t>(b)][static_cast<std::size_t>(e)];
      });
      for (long i = 0; i < T; ++i) {
        auto& p = probs[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])][static_cast<std::size_t>(e)];
        if (i >= C && C <= T) p = 0.0;
        served[static_cast<std::size_t>(e)] += p > 0 ? 1.0 : 0.0;
      }
    }
    const double mean = std::accumulate(served.begin(), served.end(), 0.0) / E;
    for (int e = 0; e < E; ++e) {
      const double off = mean - served[static_cast<std::size_t>(e)];
      bias[static_cast<std::size_t>(e)] += u * static_cast<double>((off > 0) - (off < 0));
    }
    std::vector<std::map<int, double>> out(static_cast<std::size_t>(T));
    for (int t = 0; t < T; ++t)
      for (int e = 0; e < E; ++e)
        if (probs[static_cast<std::size_t>(t)][static_cast<std::size_t>(e)] > 0) out[static_cast<std::size_t>(t)][e] = probs[static_cast<std::size_t>(t)][static_cast<std::size_t>(e)];
    return out;
  }
};

}  // namespace

TEST_CASE("loss_free preset megatron equals Megatron-Core's expert-bias router step by step (routing, drops, bias)") {
  rc::prop("loss_free megatron preset vs a second implementation of Megatron-Core", [] {
    const int E = *rc::gen::inRange(2, 17);
    const int k = 1 + choose(std::min(E, 4));
    const int T = *rc::gen::inRange(1, 100);
    const double cf = choose(2) ? 1.0 : 1.25;
    const std::uint64_t seed = any_seed();
    RC_LOG() << "E=" << E << " k=" << k << " T=" << T << " cf=" << cf << " seed=" << seed << '\n';
    // u = 0.05: large enough that the bias changes selections within the six steps.
    auto p = moesim::make_policy("loss_free", E, k,
                                 {{"preset", "megatron"}, {"capacity_factor", cf == 1.0 ? "1" : "1.25"}, {"bias_rate", "0.05"}});
    MegatronExpertBias ref(E, k, cf, 0.05);
    for (int s = 0; s < 6; ++s) {
      const auto z = make_distinct_logits(T, E, seed + 31 * static_cast<std::uint64_t>(s));
      const Assignment a = step(*p, z, T);
      const auto want = ref.step(z, T);
      for (int t = 0; t < T; ++t) {
        const auto d = diff_served(served_weights(a, t), want[static_cast<std::size_t>(t)]);
        if (!d.empty()) RC_FAIL("step " + std::to_string(s) + " token " + std::to_string(t) + ": " + d);
      }
      const auto b = bias_of(*p);
      for (int e = 0; e < E; ++e) RC_ASSERT(std::fabs(b[static_cast<std::size_t>(e)] - ref.bias[static_cast<std::size_t>(e)]) <= 1e-12);
    }
  });
}

TEST_CASE("loss_free_scores equals the scalar s + b formula bitwise for softmax, sigmoid and sqrt-softplus, with and without a 16-lane tail") {
  using moesim::WeightRule;
  for (int E : {4, 16, 64, 70})
    for (auto rule : {WeightRule::SoftmaxGather, WeightRule::SigmoidGather, WeightRule::SqrtSoftplusGather}) {
      CAPTURE(E, moesim::to_string(rule));
      const int T = 40;
      auto z = make_logits(T, E, 7, kContinuous);
      for (int t = 0; t < T; ++t) z[static_cast<std::size_t>(t) * E] = t % 3 == 0 ? 25.0f : -30.0f;  // saturated sigmoids
      std::vector<float> bias(static_cast<std::size_t>(E));
      for (int e = 0; e < E; ++e) bias[static_cast<std::size_t>(e)] = 0.01f * static_cast<float>((e * 7) % 11) - 0.05f;
      std::vector<float> got(static_cast<std::size_t>(E));
      for (int t = 0; t < T; ++t) {
        const float* zr = z.data() + static_cast<std::size_t>(t) * E;
        moesim::loss_free_scores(zr, E, bias.data(), rule, got.data());
        const float m = moesim::row_max(zr, E);
        const auto inv = static_cast<float>(1.0 / moesim::row_sum_exp(zr, E, m));
        for (int e = 0; e < E; ++e) {
          const float b = bias[static_cast<std::size_t>(e)];
          float want;
          if (rule == WeightRule::SigmoidGather)
            want = 1.0f / (1.0f + moesim::exp_fast(-zr[e])) + b;
          else if (rule == WeightRule::SqrtSoftplusGather)
            want = static_cast<float>(std::sqrt(moesim::softplus(zr[e]))) + b;
          else
            want = moesim::exp_fast(zr[e] - m) * inv + b;
          CAPTURE(t, e, zr[e]);
          REQUIRE(std::bit_cast<std::uint32_t>(got[static_cast<std::size_t>(e)]) == std::bit_cast<std::uint32_t>(want));
        }
      }
    }
}

TEST_CASE("loss_free_scores reports a NaN or infinite logit in the 16-lane body and in the tail") {
  using moesim::WeightRule;
  for (int E : {16, 70})
    for (auto rule : {WeightRule::SoftmaxGather, WeightRule::SigmoidGather, WeightRule::SqrtSoftplusGather})
      for (int at : {0, 15, E - 1})
        for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity()}) {
          CAPTURE(E, moesim::to_string(rule), at, bad);
          auto z = make_logits(1, E, 3, kContinuous);
          const std::vector<float> bias(static_cast<std::size_t>(E), 0.0f);
          std::vector<float> out(static_cast<std::size_t>(E));
          CHECK(moesim::loss_free_scores(z.data(), E, bias.data(), rule, out.data()));
          z[static_cast<std::size_t>(at)] = bad;
          CHECK_FALSE(moesim::loss_free_scores(z.data(), E, bias.data(), rule, out.data()));
        }
}

TEST_CASE("loss_free_scores_rows equals loss_free_scores row by row bitwise, and flags a bad logit in any of its 16 rows") {
  // E = 8, 24, 40: sigmoid rows scored as one flat array against a tiled bias.
  using moesim::WeightRule;
  for (int E : {8, 16, 24, 40, 64, 70})
    for (auto rule : {WeightRule::SoftmaxSelected, WeightRule::SoftmaxGather, WeightRule::SigmoidGather,
                      WeightRule::SqrtSoftplusGather}) {
      CAPTURE(E, moesim::to_string(rule));
      auto z = make_logits(16, E, 9, kContinuous);
      for (int t = 0; t < 16; ++t) z[static_cast<std::size_t>(t) * E + static_cast<std::size_t>(t % E)] = 20.0f + t;
      std::vector<float> bias(static_cast<std::size_t>(E));
      for (int e = 0; e < E; ++e) bias[static_cast<std::size_t>(e)] = 0.02f * static_cast<float>((e * 5) % 13) - 0.1f;
      std::vector<float> got(static_cast<std::size_t>(16) * E), want(got.size());
      CHECK(moesim::loss_free_scores_rows(z.data(), 16, E, bias.data(), rule, got.data()));
      for (int t = 0; t < 16; ++t)
        moesim::loss_free_scores(z.data() + static_cast<std::size_t>(t) * E, E, bias.data(), rule,
                                 want.data() + static_cast<std::size_t>(t) * E);
      int mismatches = 0;
      for (std::size_t i = 0; i < got.size(); ++i)
        mismatches += std::bit_cast<std::uint32_t>(got[i]) != std::bit_cast<std::uint32_t>(want[i]);
      CHECK(mismatches == 0);
      for (int row : {0, 9, 15}) {
        auto bad = z;
        bad[static_cast<std::size_t>(row) * E + static_cast<std::size_t>(E - 1)] = std::numeric_limits<float>::quiet_NaN();
        CHECK_FALSE(moesim::loss_free_scores_rows(bad.data(), 16, E, bias.data(), rule, got.data()));
      }
    }
}
