// Capacity: the formula C = max(min_capacity, ceil(cf*T*k/E)), dropping by position
// (all first choices before second choices, earlier tokens first) and by probability
// (each expert keeps its C highest-probability requests), and dropless mode.
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <algorithm>
#include <cmath>

#include "helpers.hpp"
#include "policies/capacity.hpp"
#include "policies/registry.hpp"

using namespace testutil;
using moesim::Assignment;
using moesim::CapacityConfig;
using moesim::expert_capacity;

TEST_CASE("expert_capacity hand-computed values") {
  CapacityConfig c;
  c.factor = 1.25, c.min_capacity = 4;
  CHECK(expert_capacity(c, 10, 2, 4) == 7);  // 1.25*10*2/4 = 6.25 -> 7
  c.factor = 1.0;
  CHECK(expert_capacity(c, 8, 2, 8) == 4);  // 1*8*2/8 = 2 < min_capacity 4 -> 4
  c.min_capacity = 0;
  CHECK(expert_capacity(c, 8, 2, 8) == 2);  // exactly 2, no rounding up
  // Decimal factors whose products are not exact in binary must not round up a whole slot:
  c.factor = 1.1;
  CHECK(expert_capacity(c, 100, 1, 110) == 1);  // 1.1*100/110 = 1 exactly (1.0000000000000002 in double)
  c.factor = 0.7;
  CHECK(expert_capacity(c, 10, 1, 7) == 1);  // 0.7*10/7 = 1 (7.000000000000001/7 in double)
  c.factor = 0.1;
  CHECK(expert_capacity(c, 30, 1, 1) == 3);  // 0.1*30 = 3 (3.0000000000000004 in double)
  c.factor = 1.2;
  CHECK(expert_capacity(c, 5, 1, 6) == 1);  // 1.2*5/6 = 1
  c.factor = 0.5;
  CHECK(expert_capacity(c, 7, 1, 2) == 2);  // 0.5*7/2 = 1.75 -> 2
  c.dropless = true;
  CHECK(expert_capacity(c, 7, 1, 2) == 0);  // 0 = unlimited
}

TEST_CASE("expert_capacity is never 0 (= unlimited) outside dropless mode, even for an empty batch") {
  CapacityConfig c;
  c.factor = 1.0, c.min_capacity = 0;
  CHECK(expert_capacity(c, 0, 1, 4) >= 1);
  CHECK(expert_capacity(c, 1, 1, 64) >= 1);  // 1/64 -> ceil = 1
}

namespace {
Assignment route_topk(int E, int k, const std::vector<float>& z, moesim::KnobMap kn) {
  auto p = moesim::make_policy("topk", E, k, kn);
  return route_once(*p, z, static_cast<int>(z.size()) / E, E);
}
}  // namespace

TEST_CASE("drop by position, tiny batch: the first C tokens keep the full expert") {
  // E=2, k=1, T=4, cf=1, min_capacity=0: C = ceil(1*4*1/2) = 2. Every token prefers expert 0
  // (logits {1,0}), so tokens 0,1 are served and tokens 2,3 dropped.
  const std::vector<float> z = {1, 0, 1, 0, 1, 0, 1, 0};
  const auto a = route_topk(2, 1, z, {{"capacity_factor", "1"}, {"min_capacity", "0"}});
  CHECK(a.capacity == 2);
  CHECK(a.expert == std::vector<std::int32_t>{0, 0, moesim::kNoExpert, moesim::kNoExpert});
  CHECK(a.counts == std::vector<std::int64_t>{2, 0});
  CHECK(a.routed == 4);
  CHECK(a.dropped == 2);
  CHECK(a.dropped_tokens == 2);
  // k=1, renormalised: a served token's weight is 1, a dropped one's 0.
  CHECK(a.weight == std::vector<float>{1.0f, 1.0f, 0.0f, 0.0f});
}

TEST_CASE("drop by position: all first choices are placed before any second choice") {
  // E=2, k=2, T=2, cf=0.5, min_capacity=0: C = ceil(0.5*2*2/2) = 1.
  // token 0 ranks (0,1), token 1 ranks (1,0). Rank-major: first choices 0->e0, 1->e1 fill
  // both experts, so both second choices drop. (Token-major would give token 0 both
  // experts and drop token 1 entirely.)
  const std::vector<float> z = {2, 1, 1, 2};
  const auto a = route_topk(2, 2, z, {{"capacity_factor", "0.5"}, {"min_capacity", "0"}});
  CHECK(a.capacity == 1);
  CHECK(a.expert == std::vector<std::int32_t>{0, moesim::kNoExpert, 1, moesim::kNoExpert});
  CHECK(a.dropped == 2);
  CHECK(a.dropped_tokens == 0);
  CHECK(a.weight == std::vector<float>{1.0f, 0.0f, 1.0f, 0.0f});
}

TEST_CASE("drop by position, k=2: weights renormalise over the served slots only") {
  // E=3, k=2, T=3, cf=1, min_capacity=0: C = ceil(1*3*2/3) = 2.
  // rankings: t0 (0,1), t1 (0,2), t2 (0,1).
  // first choices: t0->e0 (1), t1->e0 (2), t2->e0 full -> dropped.
  // second choices: t0->e1 (1), t1->e2 (1), t2->e1 (2).
  // t0 weights: softmax over {3,2} renormalised = 1/(1+e^-1) = 0.7310586, 0.2689414.
  const std::vector<float> z = {3, 2, 1, 3, 1, 2, 3, 2, 1};
  const auto a = route_topk(3, 2, z, {{"capacity_factor", "1"}, {"min_capacity", "0"}});
  CHECK(a.capacity == 2);
  CHECK(a.expert == std::vector<std::int32_t>{0, 1, 0, 2, moesim::kNoExpert, 1});
  CHECK(a.counts == std::vector<std::int64_t>{2, 2, 1});
  CHECK(a.dropped == 1);
  CHECK(a.dropped_tokens == 0);
  CHECK(a.weight_at(0, 0) == Approx(0.7310586).epsilon(1e-5));
  CHECK(a.weight_at(0, 1) == Approx(0.2689414).epsilon(1e-5));
  CHECK(a.weight_at(2, 0) == 0.0f);
  CHECK(a.weight_at(2, 1) == Approx(1.0).epsilon(1e-6));
}

TEST_CASE("drop by probability: each expert keeps its C most probable requests") {
  // E=2, k=1, T=4, cf=1, min_capacity=0 -> C=2; all tokens want expert 0.
  // p(e0) = sigmoid(z0 - z1): t0 sigmoid(0.5)=0.622, t1 sigmoid(3)=0.953, t2 sigmoid(1)=0.731,
  // t3 sigmoid(2)=0.881 -> keep t1, t3; drop t0, t2 (by position t0, t1 would be kept).
  const std::vector<float> z = {0.5f, 0, 3, 0, 1, 0, 2, 0};
  const auto a = route_topk(2, 1, z, {{"capacity_factor", "1"}, {"min_capacity", "0"}, {"drop_policy", "probability"}});
  CHECK(a.expert == std::vector<std::int32_t>{moesim::kNoExpert, 0, moesim::kNoExpert, 0});
  CHECK(a.dropped == 2);
  CHECK(a.dropped_tokens == 2);
  const auto b = route_topk(2, 1, z, {{"capacity_factor", "1"}, {"min_capacity", "0"}, {"drop_policy", "position"}});
  CHECK(b.expert == std::vector<std::int32_t>{0, 0, moesim::kNoExpert, moesim::kNoExpert});
}

TEST_CASE("drop by probability: equal probabilities go to the earlier token") {
  // E=2, k=1, T=2, cf=0.5, min_capacity=0 -> C = ceil(0.5*2/2) = 1; identical rows.
  const std::vector<float> z = {1, 0, 1, 0};
  const auto a = route_topk(2, 1, z, {{"capacity_factor", "0.5"}, {"min_capacity", "0"}, {"drop_policy", "probability"}});
  CHECK(a.capacity == 1);
  CHECK(a.expert == std::vector<std::int32_t>{0, moesim::kNoExpert});
}

TEST_CASE("min_capacity raises the capacity; dropless never drops") {
  const std::vector<float> z = {1, 0, 1, 0, 1, 0, 1, 0};
  // cf=1 gives 2, min_capacity=3 wins: only token 3 drops.
  const auto a = route_topk(2, 1, z, {{"capacity_factor", "1"}, {"min_capacity", "3"}});
  CHECK(a.capacity == 3);
  CHECK(a.expert == std::vector<std::int32_t>{0, 0, 0, moesim::kNoExpert});
  const auto b = route_topk(2, 1, z, {{"dropless", "true"}});
  CHECK(b.capacity == 0);
  CHECK(b.dropped == 0);
  CHECK(b.counts == std::vector<std::int64_t>{4, 0});
}

TEST_CASE("topk with drop by position equals an independent rank-major reference filter") {
  const auto& info = moesim::policy_info("topk");
  rc::prop("topk position dropping == reference", [&info] {
    Scenario s = gen_scenario(info, false);
    static const char* cfs[] = {"0.5", "1", "1.25", "2"};
    static const long quarters[] = {2, 4, 5, 8};
    const int ci = choose(4);
    const long minc = choose(3) * 2;
    s.knobs = {{"capacity_factor", cfs[ci]}, {"min_capacity", std::to_string(minc)}, {"drop_policy", "position"}};
    RC_LOG() << s.describe() << '\n';
    auto p = make(s);
    const auto a = route_once(*p, s.logits, s.T, s.E);
    const long num = quarters[ci] * s.T * s.k, den = 4L * s.E;
    const long C = std::max({minc, (num + den - 1) / den, 1L});
    RC_ASSERT(a.capacity == C);
    std::vector<std::int32_t> want(static_cast<std::size_t>(s.T) * s.k);
    for (int t = 0; t < s.T; ++t) {
      const auto r = ref_topk(s.logits.data() + static_cast<std::size_t>(t) * s.E, s.E, s.k);
      for (int j = 0; j < s.k; ++j) want[static_cast<std::size_t>(t) * s.k + j] = r[static_cast<std::size_t>(j)];
    }
    std::vector<long> load(static_cast<std::size_t>(s.E), 0);
    long dropped = 0;
    for (int j = 0; j < s.k; ++j)
      for (int t = 0; t < s.T; ++t) {
        auto& e = want[static_cast<std::size_t>(t) * s.k + j];
        if (load[static_cast<std::size_t>(e)] < C) ++load[static_cast<std::size_t>(e)];
        else e = moesim::kNoExpert, ++dropped;
      }
    RC_ASSERT(a.expert == want);
    RC_ASSERT(a.dropped == dropped);
    long lost = 0;  // tokens left with no expert
    for (int t = 0; t < s.T; ++t)
      lost += std::all_of(want.begin() + static_cast<long>(t) * s.k, want.begin() + static_cast<long>(t + 1) * s.k,
                          [](std::int32_t e) { return e < 0; });
    RC_ASSERT(a.dropped_tokens == lost);
    for (int e = 0; e < s.E; ++e) RC_ASSERT(a.counts[static_cast<std::size_t>(e)] == load[static_cast<std::size_t>(e)]);
  });
}

TEST_CASE("position dropping over long, skewed batches equals the request-by-request walk") {
  // Batches of up to 3000 tokens (many of the filter's 256-request chunks) with
  // a few popular experts, so experts fill up anywhere inside a chunk, in both
  // orders; the reference walks the requests one at a time.
  rc::prop("CapacityFilter position == walk", [] {
    const int T = *rc::gen::inRange(1, 3000), k = *rc::gen::inRange(1, 4), E = *rc::gen::inRange(k, 17);
    const bool choice_rank = *rc::gen::arbitrary<bool>();
    moesim::Rng rng(*rc::gen::arbitrary<std::uint64_t>());
    Assignment a;
    a.reset(T, E, k);
    for (int t = 0; t < T; ++t)  // distinct experts per token, skewed towards low indices
      for (int j = 0; j < k; ++j) {
        std::int32_t e;
        do {
          const double u = rng.uniform();
          e = std::min(E - 1, static_cast<std::int32_t>(E * u * u));
        } while (std::find(a.expert.begin() + static_cast<long>(t) * k, a.expert.begin() + static_cast<long>(t) * k + j, e) !=
                 a.expert.begin() + static_cast<long>(t) * k + j);
        a.expert[static_cast<std::size_t>(t) * k + j] = e;
      }
    CapacityConfig cfg;
    cfg.factor = *rc::gen::element(0.3, 0.8, 1.0, 1.25);
    cfg.min_capacity = 0;
    cfg.order = choice_rank ? moesim::DropOrder::ChoiceRank : moesim::DropOrder::Token;
    std::vector<std::int32_t> want = a.expert;
    moesim::CapacityFilter filter;
    filter.apply(cfg, nullptr, a);
    const long C = static_cast<long>(a.capacity);
    std::vector<long> load(static_cast<std::size_t>(E), 0);
    long dropped = 0;
    auto take = [&](std::int32_t& e) {
      if (load[static_cast<std::size_t>(e)] < C) ++load[static_cast<std::size_t>(e)];
      else e = moesim::kNoExpert, ++dropped;
    };
    if (choice_rank) {
      for (int j = 0; j < k; ++j)
        for (int t = 0; t < T; ++t) take(want[static_cast<std::size_t>(t) * k + j]);
    } else {
      for (auto& e : want) take(e);
    }
    RC_ASSERT(a.expert == want);
    RC_ASSERT(a.dropped == dropped);
    for (int e = 0; e < E; ++e) RC_ASSERT(a.counts[static_cast<std::size_t>(e)] == load[static_cast<std::size_t>(e)]);
  });
}

TEST_CASE("count_experts equals a plain count, values outside [0, E) ignored, for any length") {
  rc::prop("count_experts == loop", [] {
    const int E = *rc::gen::inRange(1, 80);
    const auto ex = *rc::gen::container<std::vector<std::int32_t>>(rc::gen::inRange(-2, E + 2));
    std::vector<std::int64_t> got(static_cast<std::size_t>(E)), want(static_cast<std::size_t>(E), 0);
    std::vector<double> got_d(static_cast<std::size_t>(E));
    for (auto e : ex)
      if (e >= 0 && e < E) ++want[static_cast<std::size_t>(e)];
    moesim::count_experts(ex.data(), ex.size(), E, got.data());
    moesim::count_experts(ex.data(), ex.size(), E, got_d.data());
    RC_ASSERT(got == want);
    for (int e = 0; e < E; ++e) RC_ASSERT(got_d[static_cast<std::size_t>(e)] == static_cast<double>(want[static_cast<std::size_t>(e)]));
  });
}

TEST_CASE("topk with drop by probability: kept requests outrank dropped ones per expert") {
  const auto& info = moesim::policy_info("topk");
  rc::prop("per expert: kept = min(requests, C), min kept prob >= max dropped prob", [&info] {
    Scenario s = gen_scenario(info, false);
    const bool sigmoid = choose(2) == 1;
    s.knobs = {{"capacity_factor", choose(2) ? "0.5" : "1"},
               {"min_capacity", "0"},
               {"drop_policy", "probability"},
               {"score_fn", sigmoid ? "sigmoid" : "softmax"}};
    RC_LOG() << s.describe() << '\n';
    auto p = make(s);
    const auto a = route_once(*p, s.logits, s.T, s.E);
    std::vector<long> requests(static_cast<std::size_t>(s.E), 0);
    std::vector<double> min_kept(static_cast<std::size_t>(s.E), 2.0), max_dropped(static_cast<std::size_t>(s.E), -1.0);
    for (int t = 0; t < s.T; ++t) {
      const float* z = s.logits.data() + static_cast<std::size_t>(t) * s.E;
      const auto r = ref_topk(z, s.E, s.k);
      const auto prob = ref_weights(z, s.E, r, sigmoid, /*renormalize=*/false);
      for (int j = 0; j < s.k; ++j) {
        const int e = r[static_cast<std::size_t>(j)];
        ++requests[static_cast<std::size_t>(e)];
        const int got = a.at(t, j);
        RC_ASSERT(got == e || got == moesim::kNoExpert);  // slots keep their rank order
        auto& slot = got == e ? min_kept[static_cast<std::size_t>(e)] : max_dropped[static_cast<std::size_t>(e)];
        slot = got == e ? std::min(slot, prob[static_cast<std::size_t>(j)]) : std::max(slot, prob[static_cast<std::size_t>(j)]);
      }
    }
    for (int e = 0; e < s.E; ++e) {
      RC_ASSERT(a.counts[static_cast<std::size_t>(e)] == std::min<std::int64_t>(requests[static_cast<std::size_t>(e)], a.capacity));
      RC_ASSERT(min_kept[static_cast<std::size_t>(e)] >= max_dropped[static_cast<std::size_t>(e)] - 1e-6);
    }
  });
}

// The conventions Megatron-Core, Mesh-TF and GShard differ on, each hand-computed.
// E = 3, k = 2, T = 3, cf = 0.5, min 0: C = ceil(0.5*3*2/3) = 1.
//   t0 {3, 2, 0} -> (0, 1);  t1 {2, 3, 0} -> (1, 0);  t2 {0, 1, 3} -> (2, 1)
const std::vector<float> kThree = {3, 2, 0, 2, 3, 0, 0, 1, 3};
moesim::KnobMap cap1(std::initializer_list<std::pair<const char*, const char*>> extra) {
  moesim::KnobMap kn = {{"capacity_factor", "0.5"}, {"min_capacity", "0"}};
  for (const auto& [key, v] : extra) kn.emplace(key, v);
  return kn;
}

TEST_CASE("drop_order: choice_rank serves every first choice first, token serves earlier tokens whatever the rank") {
  // choice_rank (GShard, Mesh-TF): rank 0 fills e0 <- t0, e1 <- t1, e2 <- t2; every rank-1 request is refused.
  auto a = route_topk(3, 2, kThree, cap1({}));
  REQUIRE(a.capacity == 1);
  CHECK(a.expert == std::vector<std::int32_t>{0, -1, 1, -1, 2, -1});
  CHECK(a.dropped_tokens == 0);
  // token (Megatron-Core "position"): t0 takes e0 and e1, t1 finds both full, t2 takes e2.
  a = route_topk(3, 2, kThree, cap1({{"drop_order", "token"}}));
  CHECK(a.expert == std::vector<std::int32_t>{0, 1, -1, -1, 2, -1});
  CHECK(a.dropped == 3);
  CHECK(a.dropped_tokens == 1);
  CHECK(a.requested == std::vector<std::int32_t>{0, 1, 1, 0, 2, 1});
  // Renormalised over the served slots: t0 {e^3, e^2} / (e^3 + e^2) = 0.7310586, 0.2689414; t2 keeps 1.
  CHECK(a.weight_at(0, 0) == Approx(0.7310586).epsilon(1e-6));
  CHECK(a.weight_at(0, 1) == Approx(0.2689414).epsilon(1e-6));
  CHECK(a.weight_at(2, 0) == Approx(1.0).epsilon(1e-6));
}

TEST_CASE("drop_weights mask: weights formed over the requested slots, dropped ones only zeroed") {
  // choice_rank drops every second choice. renormalize: each token's one served slot weighs 1;
  // mask (Megatron-Core, Mesh-TF): the weight it had among its two requests.
  auto a = route_topk(3, 2, kThree, cap1({{"drop_weights", "mask"}}));
  CHECK(a.expert == std::vector<std::int32_t>{0, -1, 1, -1, 2, -1});
  CHECK(a.weight_at(0, 0) == Approx(0.7310586).epsilon(1e-6));  // e^3 / (e^3 + e^2)
  CHECK(a.weight_at(1, 0) == Approx(0.7310586).epsilon(1e-6));
  CHECK(a.weight_at(2, 0) == Approx(0.8807971).epsilon(1e-6));  // e^3 / (e^3 + e^1)
  CHECK(a.weight_at(0, 1) == 0.0f);
  auto p = moesim::make_policy("topk", 3, 2, cap1({{"drop_weights", "mask"}}));
  CHECK(p->weight_spec().over_requested);
  CHECK_FALSE(p->weight_spec().normalized());
  // Dropless: nothing is refused, so the convention changes nothing.
  auto d = moesim::make_policy("topk", 3, 2, {{"drop_weights", "mask"}, {"dropless", "true"}});
  CHECK_FALSE(d->weight_spec().over_requested);
}

TEST_CASE("drop_priority: the gate probability (moesim) or the combine weight (Megatron-Core probs) decides") {
  // E = 3, k = 2, T = 2, cf = 0.5: C = ceil(0.5*2*2/3) = 1. Both tokens request expert 0.
  //   t0 {1, 1, -10} -> (0, 1): softmax p(e0) = 0.4999958, weight over {e0, e1} = 0.5
  //   t1 {2, 0, 1.9} -> (0, 2): softmax p(e0) = 7.389/15.075 = 0.4901, weight 1/(1 + e^-0.1) = 0.5249792
  const std::vector<float> z = {1, 1, -10, 2, 0, 1.9f};
  auto a = route_topk(3, 2, z, cap1({{"drop_policy", "probability"}}));
  REQUIRE(a.capacity == 1);
  CHECK(a.expert == std::vector<std::int32_t>{0, 1, -1, 2});  // t0 wins on probability
  a = route_topk(3, 2, z, cap1({{"drop_policy", "probability"}, {"drop_priority", "weight"}}));
  CHECK(a.expert == std::vector<std::int32_t>{-1, 1, 0, 2});  // t1 wins on weight
}

TEST_CASE("capacity_rounding float: Megatron-Core's ceil((T*k/E)*cf) lands one above the exact value") {
  CapacityConfig c;
  c.factor = 1.1, c.min_capacity = 0;
  // T*k/E = 100*2/4 = 50; 50 * 1.1 = 55.00000000000001 in double (exactly 55).
  CHECK(expert_capacity(c, 100, 2, 4) == 55);
  c.rounding = moesim::CapacityRounding::Float;
  CHECK(expert_capacity(c, 100, 2, 4) == 56);
  // Where the product is exact both agree: 50 * 1.25 = 62.5 -> 63.
  c.factor = 1.25;
  CHECK(expert_capacity(c, 100, 2, 4) == 63);
  c.rounding = moesim::CapacityRounding::Exact;
  CHECK(expert_capacity(c, 100, 2, 4) == 63);
}

TEST_CASE("pad_to_capacity: every expert processes min(C, T) slots, the missing ones counted as padding") {
  // cf = 1: C = ceil(6/3) = 2. choice_rank serves e0 <- t0, t1; e1 <- t1, t0; e2 <- t2; t2's second
  // choice (e1) is full. served 5 of E*C = 6: one padding slot.
  auto a = route_topk(3, 2, kThree, {{"capacity_factor", "1"}, {"min_capacity", "0"}, {"pad_to_capacity", "true"}});
  REQUIRE(a.capacity == 2);
  CHECK(a.served() == 5);
  CHECK(a.padded == 1);
  // cf = 2: C = 4 exceeds T = 3, so each expert pads to the 3 tokens there are: 9 - 6 = 3.
  a = route_topk(3, 2, kThree, {{"capacity_factor", "2"}, {"min_capacity", "0"}, {"pad_to_capacity", "true"}});
  CHECK(a.capacity == 4);
  CHECK(a.padded == 3);
  // Routing and weights are what they are without padding.
  const auto b = route_topk(3, 2, kThree, {{"capacity_factor", "2"}, {"min_capacity", "0"}});
  CHECK(b.padded == 0);
  CHECK(a.expert == b.expert);
  CHECK(a.weight == b.weight);
  CHECK_THROWS_WITH(moesim::make_policy("topk", 3, 2, {{"pad_to_capacity", "true"}, {"dropless", "true"}}),
                    Catch::Contains("needs a capacity"));
}
