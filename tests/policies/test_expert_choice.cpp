// Expert choice (Zhou et al. 2022): every expert picks its top-C tokens by gate
// probability; a token may get any number of experts, including none.
#include <catch2/catch.hpp>

#include <utility>
#include <rapidcheck/catch.h>

#include <cmath>

#include "helpers.hpp"
#include "policies/expert_choice.hpp"
#include "policies/fast_math.hpp"
#include "policies/registry.hpp"

using namespace testutil;
using moesim::Assignment;
using moesim::kNoExpert;

TEST_CASE("expert choice hand-computed 3 tokens x 2 experts (softmax): experts pick their top-C tokens") {
  // k=1, cf=1: C = ceil(1*3*1/2) = 2.
  // softmax: t0 {ln3, 0} -> {0.75, 0.25}; t1 {0, 0} -> {0.5, 0.5}; t2 {0, ln4} -> {0.2, 0.8}.
  // expert 0 ranks p0 = {0.75, 0.5, 0.2} -> t0, t1; expert 1 ranks p1 = {0.25, 0.5, 0.8} -> t2, t1.
  // Rows (chosen experts first, in index order, then empty): t0 [0,-], t1 [0,1], t2 [1,-].
  // Weights = gate probability (no renormalisation by default): t0 0.75, t1 0.5 0.5, t2 0.8.
  const std::vector<float> z = {std::log(3.0f), 0.0f, 0.0f, 0.0f, 0.0f, std::log(4.0f)};
  auto p = moesim::make_policy("expert_choice", 2, 1, {{"capacity_factor", "1"}});
  const auto a = route_once(*p, z, 3, 2);
  REQUIRE(a.width == 2);
  CHECK(a.capacity == 2);
  CHECK(a.expert == std::vector<std::int32_t>{0, kNoExpert, 0, 1, 1, kNoExpert});
  CHECK(a.counts == std::vector<std::int64_t>{2, 2});
  CHECK(a.dropped_tokens == 0);
  CHECK(a.weight_at(0, 0) == Approx(0.75).epsilon(1e-5));
  CHECK(a.weight_at(1, 0) == Approx(0.5).epsilon(1e-5));
  CHECK(a.weight_at(1, 1) == Approx(0.5).epsilon(1e-5));
  CHECK(a.weight_at(2, 0) == Approx(0.8).epsilon(1e-5));
  CHECK(a.weight_at(0, 1) == 0.0f);

  // cf = 0.5, min_capacity 0: C = ceil(0.75) = 1 -> expert 0 takes t0, expert 1 takes t2,
  // t1 gets no expert at all.
  auto q = moesim::make_policy("expert_choice", 2, 1, {{"capacity_factor", "0.5"}, {"min_capacity", "0"}});
  const auto b = route_once(*q, z, 3, 2);
  CHECK(b.capacity == 1);
  // Width 1: no token got more than one expert.
  REQUIRE(b.width == 1);
  CHECK(b.expert == std::vector<std::int32_t>{0, kNoExpert, 1});
  CHECK(b.dropped_tokens == 1);
}

TEST_CASE("expert choice hand-computed (sigmoid): equal affinities go to the lower token index") {
  // sigmoid: t0 {ln3, 0} -> {0.75, 0.5}; t1 {0, 0} -> {0.5, 0.5}; t2 {0, ln4} -> {0.5, 0.8}.
  // C = 2. expert 0: {0.75, 0.5, 0.5} -> t0, then t1 (ties t2, lower index wins).
  //        expert 1: {0.5, 0.5, 0.8} -> t2, then t0 (ties t1, lower index wins).
  // Rows: t0 [0,1], t1 [0,-], t2 [1,-]; weights sigmoid, unnormalised: t0 0.75 0.5, t1 0.5, t2 0.8.
  const std::vector<float> z = {std::log(3.0f), 0.0f, 0.0f, 0.0f, 0.0f, std::log(4.0f)};
  auto p = moesim::make_policy("expert_choice", 2, 1, {{"capacity_factor", "1"}, {"score_fn", "sigmoid"}});
  const auto a = route_once(*p, z, 3, 2);
  CHECK(a.expert == std::vector<std::int32_t>{0, 1, 0, kNoExpert, 1, kNoExpert});
  CHECK(a.weight_at(0, 0) == Approx(0.75).epsilon(1e-5));
  CHECK(a.weight_at(0, 1) == Approx(0.5).epsilon(1e-5));
  CHECK(a.weight_at(1, 0) == Approx(0.5).epsilon(1e-5));
  CHECK(a.weight_at(2, 0) == Approx(0.8).epsilon(1e-5));
  // renormalize: t0's weights become 0.75/1.25 = 0.6 and 0.5/1.25 = 0.4.
  auto q = moesim::make_policy("expert_choice", 2, 1,
                               {{"capacity_factor", "1"}, {"score_fn", "sigmoid"}, {"renormalize", "true"}});
  const auto b = route_once(*q, z, 3, 2);
  CHECK(b.weight_at(0, 0) == Approx(0.6).epsilon(1e-5));
  CHECK(b.weight_at(0, 1) == Approx(0.4).epsilon(1e-5));
  CHECK(b.weight_at(1, 0) == Approx(1.0).epsilon(1e-6));
}

TEST_CASE("expert choice renormalize: a token chosen only where its probability underflows still weighs 1") {
  // C = 1. t0 {0, -2e30}, t1 {0, -1e30}: expert 0 ties at probability 1 and takes
  // t0; expert 1 takes t1 (log-probability -1e30 > -2e30), whose probability
  // exp(-1e30) is 0 in any precision. Renormalised over its one expert, t1 weighs
  // 1 (it weighed 0: 0 / 0 was skipped). Both rules, softmax and sigmoid.
  const std::vector<float> z = {0.0f, -2e30f, 0.0f, -1e30f};
  for (const char* fn : {"softmax", "sigmoid"}) {
    CAPTURE(fn);
    auto p = moesim::make_policy("expert_choice", 2, 1,
                                 {{"capacity_factor", "0.5"}, {"min_capacity", "0"}, {"score_fn", fn}, {"renormalize", "true"}});
    const auto a = route_once(*p, z, 2, 2);
    REQUIRE(a.expert == std::vector<std::int32_t>{0, 1});
    CHECK(a.weight_at(0, 0) == 1.0f);
    CHECK(a.weight_at(1, 0) == 1.0f);
  }
}

TEST_CASE("expert choice: each expert's tokens are its top-C by probability; weights are the gate probabilities") {
  rc::prop("chosen tokens outrank unchosen ones per expert; weight = softmax probability", [] {
    const auto& info = moesim::policy_info("expert_choice");
    Scenario s = gen_scenario(info, false, 120, 16);
    s.knobs = {{"capacity_factor", choose(2) ? "0.5" : "1.25"}};
    RC_LOG() << s.describe() << '\n';
    auto p = make(s);
    const auto a = route_once(*p, s.logits, s.T, s.E);
    std::vector<int> all(static_cast<std::size_t>(s.E));
    for (int e = 0; e < s.E; ++e) all[static_cast<std::size_t>(e)] = e;
    std::vector<double> min_in(static_cast<std::size_t>(s.E), 2.0), max_out(static_cast<std::size_t>(s.E), -1.0);
    for (int t = 0; t < s.T; ++t) {
      const auto prob = ref_weights(s.logits.data() + static_cast<std::size_t>(t) * s.E, s.E, all, false, false);
      std::vector<char> in(static_cast<std::size_t>(s.E), 0);
      bool empty_seen = false;
      for (int j = 0; j < a.width; ++j) {
        const int e = a.at(t, j);
        if (e == kNoExpert) {
          empty_seen = true;
          continue;
        }
        RC_ASSERT(!empty_seen);  // chosen experts first, then empty slots
        in[static_cast<std::size_t>(e)] = 1;
        RC_ASSERT(std::fabs(a.weight_at(t, j) - prob[static_cast<std::size_t>(e)]) <= 1e-5 * (1 + prob[static_cast<std::size_t>(e)]));
      }
      for (int e = 0; e < s.E; ++e) {
        auto& slot = in[static_cast<std::size_t>(e)] ? min_in[static_cast<std::size_t>(e)] : max_out[static_cast<std::size_t>(e)];
        slot = in[static_cast<std::size_t>(e)] ? std::min(slot, prob[static_cast<std::size_t>(e)]) : std::max(slot, prob[static_cast<std::size_t>(e)]);
      }
    }
    for (int e = 0; e < s.E; ++e) RC_ASSERT(min_in[static_cast<std::size_t>(e)] >= max_out[static_cast<std::size_t>(e)] - 1e-9);
  });
}

TEST_CASE("expert choice: capacity never exceeds the batch (every expert takes all T tokens when C >= T)") {
  // cf=2, T=3, k=2, E=2: ceil(2*3*2/2) = 6 > T = 3 -> C = 3, every token gets both experts.
  auto p = moesim::make_policy("expert_choice", 2, 2, {{"capacity_factor", "2"}});
  const std::vector<float> z = {1, 0, 0, 1, 2, 2};
  const auto a = route_once(*p, z, 3, 2);
  CHECK(a.capacity == 3);
  CHECK(a.counts == std::vector<std::int64_t>{3, 3});
  CHECK(a.expert == std::vector<std::int32_t>{0, 1, 0, 1, 0, 1});
}

namespace {

// A batch for the large-batch properties: T tokens in one of the four logit
// styles, softmax or sigmoid keys, and a third of the non-extreme batches scaled
// to ~1e27 (the prefilter's margin at large magnitudes; FLT_MAX logits of the
// extreme style turn the prefilter off).
struct Batch {
  int T, style;
  bool sigmoid;
  std::vector<float> z;
};
Batch large_batch(int E, int t_min, int t_span) {
  Batch b;
  b.T = t_min + choose(t_span);
  b.style = choose(4);
  b.sigmoid = choose(2) == 1;
  const float scale = choose(3) == 0 && b.style != kExtreme ? 1e27f : 1.0f;
  const std::uint64_t seed = any_seed();
  RC_LOG() << "E=" << E << " T=" << b.T << " style=" << b.style << " sigmoid=" << b.sigmoid << " scale=" << scale
           << " seed=" << seed << '\n';
  b.z = make_logits(b.T, E, seed, b.style);
  for (float& x : b.z) x *= scale;
  return b;
}

}  // namespace

TEST_CASE("expert choice: the bracketed, prefiltered selection equals a full sort per expert on large batches, ties and "
          "extreme magnitudes included") {
  // A second implementation: every expert's column fully sorted by (key desc,
  // token asc), keys by the header's formula. Large T samples every stride-th
  // token for the bracket; tie-heavy batches make brackets miss (the fallback).
  rc::prop("selected sets == full-sort top-C", [] {
    // Every E takes the float prefilter (E = 70 and 80: a 64-expert word and a
    // tail); logits scaled to ~1e27 hold its margins at large magnitudes, the
    // extreme style (FLT_MAX) turns it off.
    static const int Es[] = {3, 8, 16, 64, 70, 80};
    const int E = Es[choose(6)];
    const int k = 1 + choose(std::min(E, 4));
    const char* cf = choose(2) == 0 ? "1.0" : "0.25";
    RC_LOG() << "k=" << k << " cf=" << cf << '\n';
    const auto [T, style, sigmoid, z] = large_batch(E, 1024, 6000);
    auto p = moesim::make_policy("expert_choice", E, k, {{"score_fn", sigmoid ? "sigmoid" : "softmax"}, {"capacity_factor", cf}});
    const auto a = route_once(*p, z, T, E);
    const std::int64_t C = a.capacity;
    std::vector<double> m(static_cast<std::size_t>(T), 0.0), ls(static_cast<std::size_t>(T), 0.0);
    if (!sigmoid)
      for (int t = 0; t < T; ++t) {
        const float* row = z.data() + static_cast<std::size_t>(t) * E;
        const float mx = moesim::row_max(row, E);
        m[static_cast<std::size_t>(t)] = mx;
        ls[static_cast<std::size_t>(t)] = std::log(moesim::row_sum_exp_padded(row, E, mx));
      }
    std::vector<std::vector<char>> want(static_cast<std::size_t>(E), std::vector<char>(static_cast<std::size_t>(T), 0));
    std::vector<std::pair<double, int>> col(static_cast<std::size_t>(T));
    for (int e = 0; e < E; ++e) {
      for (int t = 0; t < T; ++t)
        col[static_cast<std::size_t>(t)] = {(static_cast<double>(z[static_cast<std::size_t>(t) * E + e]) - m[static_cast<std::size_t>(t)]) - ls[static_cast<std::size_t>(t)], t};
      std::sort(col.begin(), col.end(), [](const auto& x, const auto& y) { return x.first > y.first || (x.first == y.first && x.second < y.second); });
      for (std::int64_t i = 0; i < C; ++i) want[static_cast<std::size_t>(e)][static_cast<std::size_t>(col[static_cast<std::size_t>(i)].second)] = 1;
    }
    for (int t = 0; t < T; ++t) {
      std::vector<char> got(static_cast<std::size_t>(E), 0);
      for (int j = 0; j < a.width; ++j)
        if (a.at(t, j) >= 0) got[static_cast<std::size_t>(a.at(t, j))] = 1;
      for (int e = 0; e < E; ++e) RC_ASSERT(got[static_cast<std::size_t>(e)] == want[static_cast<std::size_t>(e)][static_cast<std::size_t>(t)]);
    }
  });
}

TEST_CASE("expert choice: the float prefilter keeps every candidate the double keys give, ties at the bracket and "
          "large magnitudes included") {
  rc::prop("prefiltered == unfiltered, candidates and selection", [] {
    // Every width: 16-lane blocks, a masked last block (E = 3, 24, 80), several
    // 64-expert words; capacities from T / 256 to T / 2.
    static const int Es[] = {3, 8, 24, 64, 80, 144};
    const int E = Es[choose(6)];
    const int k = 1 + choose(std::min(E, 4));
    static const char* cfs[] = {"0.25", "1.0", "2.0"};
    const char* cf = cfs[choose(3)];
    RC_LOG() << "k=" << k << " cf=" << cf << '\n';
    const auto [T, style, sigmoid, z] = large_batch(E, 2048, 4000);
    const moesim::KnobMap kn = {{"score_fn", sigmoid ? "sigmoid" : "softmax"}, {"capacity_factor", cf}};
    auto fast = moesim::make_policy("expert_choice", E, k, kn), slow = moesim::make_policy("expert_choice", E, k, kn);
    dynamic_cast<moesim::ExpertChoicePolicy&>(*slow).use_prefilter(false);
    const auto a = route_once(*fast, z, T, E), b = route_once(*slow, z, T, E);
    const auto& sa = dynamic_cast<const moesim::ExpertChoicePolicy&>(*fast).last_stats();
    const auto& sb = dynamic_cast<const moesim::ExpertChoicePolicy&>(*slow).last_stats();
    // FLT_MAX logits turn it off; at C = T every expert takes every token
    // unclassified; a build without AVX-512 has no float test.
    if (moesim::ExpertChoicePolicy::kHasFloatTest)
      RC_ASSERT(sa.float_rows > 0 || style == kExtreme || a.capacity >= T);
    else
      RC_ASSERT(sa.float_rows == 0);
    RC_ASSERT(sb.float_rows == 0);
    RC_ASSERT(sa.candidates == sb.candidates);
    RC_ASSERT(sa.fallbacks == sb.fallbacks);
    RC_ASSERT(a.expert == b.expert);
    RC_ASSERT(a.weight == b.weight);
  });
}

TEST_CASE("expert choice: on tie-free batches the sampled brackets almost never miss and order a few percent of the keys") {
  // T = 16384 samples every 16th token; the bracket's margin (3 sigma + 2) misses
  // about one expert in a thousand. A bracket built from the wrong sample keys
  // misses for most experts, which the exact fallback would hide from the
  // selection tests above. Each expert's logits are offset by 0.25 e, so a
  // bracket taken from another expert's sample misses too.
  // T = 16000, E = 60: stride 15, 1067 samples, so the 8 x 8 sample blocks leave
  // both a sample tail and an expert tail to the scalar loops.
  constexpr int k = 2;
  for (const auto& [T, E] : {std::pair{16384, 64}, std::pair{16000, 60}}) {
    CAPTURE(T, E);
    int fallbacks = 0;
    std::int64_t candidates = 0;
    for (std::uint64_t seed = 1; seed <= 4; ++seed) {
      auto z = make_logits(T, E, seed, kContinuous);
      for (std::size_t i = 0; i < z.size(); ++i) z[i] += 0.25f * static_cast<float>(i % static_cast<std::size_t>(E));
      auto p = moesim::make_policy("expert_choice", E, k);
      route_once(*p, z, T, E);
      const auto& st = dynamic_cast<const moesim::ExpertChoicePolicy&>(*p).last_stats();
      fallbacks += st.fallbacks;
      candidates += st.candidates;
    }
    CHECK(fallbacks <= 2);
    CHECK(candidates > 0);
    CHECK(static_cast<double>(candidates) < 0.08 * 4.0 * T * E);
  }
}
