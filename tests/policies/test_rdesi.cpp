// RD-ESI, hand-computed: Score_i = g_i + beta*R_i - gamma*L_i + c*sqrt(ln(N+1)/(N_i+eps)),
// R <- alpha*perf + (1-alpha)*R (idle experts: perf 0 or kept), decay of idle/all experts,
// L <- a*demand + (1-a)*L (raw or divided by capacity), N_i/N cumulative served slots.
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <cmath>
#include <cstring>

#include "helpers.hpp"
#include "policies/registry.hpp"

using namespace testutil;
using moesim::Assignment;
using moesim::Rng;

namespace {

std::vector<double> state(const moesim::Policy& p, const std::string& name) {
  for (const auto& [n, v] : p.state_vectors())
    if (n == name) return v;
  FAIL("policy " << p.name() << " exposes no state vector '" << name << "'");
  return {};
}

void check_vec(const std::vector<double>& got, const std::vector<double>& want, double eps = 1e-6) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) {
    CAPTURE(i);
    CHECK(got[i] == Approx(want[i]).margin(eps));
  }
}

// E=4, k=2, beta=gamma=ucb_c=1, ucb_eps=1, alpha=0.5, load_ema_alpha=0.5, decay 0.5 on idle
// experts, idle perf 0, raw load, dropless, R starts at 1.
moesim::KnobMap base_knobs() {
  return {{"beta", "1"},           {"gamma", "1"},         {"ucb_c", "1"},          {"ucb_eps", "1"},
          {"alpha", "0.5"},        {"load_ema_alpha", "0.5"}, {"decay_rate", "0.5"}, {"decay_on", "idle"},
          {"idle_perf", "zero"},   {"load_normalize", "none"}, {"dropless", "true"},  {"initial_reputation", "1"}};
}

// base_knobs() with some values replaced (erase + emplace: GCC 12 raises a false
// -Wrestrict on std::string assignment from a literal here).
moesim::KnobMap knobs_with(std::initializer_list<std::pair<const char*, const char*>> changes) {
  auto kn = base_knobs();
  for (const auto& [key, value] : changes) {
    kn.erase(key);
    kn.emplace(key, value);
  }
  return kn;
}

// Step 1 of the hand example: t0 logits {2,0,-1,-2}, t1 {-1,0,2,-2}.
const std::vector<float> kStep1 = {2, 0, -1, -2, -1, 0, 2, -2};
// perf per slot (tokens x k): t0 {4, 1}, t1 {3, 2}.
const std::vector<float> kPerf1 = {4, 1, 3, 2};

Assignment step(moesim::Policy& p, const std::vector<float>& z, int T, const float* perf) {
  moesim::RouteInput in;
  in.logits = z.data();
  in.tokens = T;
  in.experts = p.experts();
  Rng rng(1);
  Assignment a;
  p.route(in, rng, a);
  p.observe(a, perf);
  return a;
}

}  // namespace

TEST_CASE("rdesi hand-computed: one update of R, L, N and the UCB bonus, then the next selection") {
  auto p = moesim::make_policy("rdesi", 4, 2, base_knobs());
  // Fresh state: R = 1, L = 0, N = N_i = 0 -> bonus c*sqrt(ln 1 / 1) = 0, so every bias = beta*1 = 1.
  check_vec(state(*p, "score_bias"), {1, 1, 1, 1});

  // Scores = logits + 1: t0 {3,1,0,-1} -> experts 0, 1; t1 {0,1,3,-1} -> experts 2, 1.
  // Weights = softmax over the selected scores {3, 1}: 1/(1+e^-2) = 0.8807971, 0.1192029.
  const Assignment a = step(*p, kStep1, 2, kPerf1.data());
  REQUIRE(a.expert == std::vector<std::int32_t>{0, 1, 2, 1});
  CHECK(a.weight_at(0, 0) == Approx(0.8807971).epsilon(1e-5));
  CHECK(a.weight_at(0, 1) == Approx(0.1192029).epsilon(1e-5));
  CHECK(a.weight_at(1, 0) == Approx(0.8807971).epsilon(1e-5));

  // perf means: e0 = 4, e1 = (1+2)/2 = 1.5, e2 = 3, e3 idle -> 0.
  // R = 0.5*perf + 0.5*1: e0 2.5, e1 1.25, e2 2.0, e3 0.5 then idle decay *0.5 -> 0.25.
  check_vec(state(*p, "reputation"), {2.5, 1.25, 2.0, 0.25});
  // demand {1,2,1,0}, raw: L = 0.5*demand = {0.5, 1, 0.5, 0}.
  check_vec(state(*p, "load"), {0.5, 1.0, 0.5, 0.0});
  check_vec(state(*p, "counts"), {1, 2, 1, 0});
  // N = 4, ln 5 = 1.6094379.
  //   e0: 2.5 - 0.5 + sqrt(ln5/2) = 2 + 0.8970613 = 2.8970613
  //   e1: 1.25 - 1 + sqrt(ln5/3) = 0.25 + 0.7324475 = 0.9824475
  //   e2: 2.0 - 0.5 + sqrt(ln5/2) = 1.5 + 0.8970613 = 2.3970613
  //   e3: 0.25 - 0 + sqrt(ln5/1) = 0.25 + 1.2686362 = 1.5186362
  check_vec(state(*p, "score_bias"), {2.8970613, 0.9824475, 2.3970613, 1.5186362});

  // Next batch, zero logits: the score is the bias -> experts 0 (2.897), 2 (2.397);
  // weights softmax over {2.8970613, 2.3970613} = 1/(1+e^-0.5) = 0.6224593, 0.3775407.
  const std::vector<float> zero(4, 0.0f);
  const Assignment b = step(*p, zero, 1, nullptr);
  REQUIRE(b.expert == std::vector<std::int32_t>{0, 2});
  CHECK(b.weight_at(0, 0) == Approx(0.6224593).epsilon(1e-5));
  CHECK(b.weight_at(0, 1) == Approx(0.3775407).epsilon(1e-5));
  CHECK(b.offset[0] == Approx(2.8970613).epsilon(1e-5));  // selection score minus gate logit
}

TEST_CASE("rdesi hand-computed: decay_on all_after_ema / all_before_ema, idle_perf=keep spares idle reputation") {
  {
    auto p = moesim::make_policy("rdesi", 4, 2, knobs_with({{"decay_on", "all_after_ema"}}));
    step(*p, kStep1, 2, kPerf1.data());
    // {2.5, 1.25, 2.0, 0.5} all * 0.5
    check_vec(state(*p, "reputation"), {1.25, 0.625, 1.0, 0.25});
  }
  {
    // router.py: R <- 0.5 * 1 = 0.5 for every expert first, then R = 0.5*perf + 0.5*0.5:
    // perf {4, 1.5, 3, 0} -> {2.25, 1.0, 1.75, 0.25}.
    auto p = moesim::make_policy("rdesi", 4, 2, knobs_with({{"decay_on", "all_before_ema"}}));
    step(*p, kStep1, 2, kPerf1.data());
    check_vec(state(*p, "reputation"), {2.25, 1.0, 1.75, 0.25});
  }
  {
    auto p = moesim::make_policy("rdesi", 4, 2, knobs_with({{"idle_perf", "keep"}}));
    step(*p, kStep1, 2, kPerf1.data());
    // e3 idle: R stays 1, then idle decay * 0.5 = 0.5.
    check_vec(state(*p, "reputation"), {2.5, 1.25, 2.0, 0.5});
  }
  {
    auto p = moesim::make_policy("rdesi", 4, 2, knobs_with({{"decay_on", "none"}}));
    step(*p, kStep1, 2, kPerf1.data());
    check_vec(state(*p, "reputation"), {2.5, 1.25, 2.0, 0.5});
  }
}

TEST_CASE("rdesi hand-computed: load divided by capacity; no perf signal leaves R to decay only") {
  {
    auto p = moesim::make_policy(
        "rdesi", 4, 2,
        knobs_with({{"load_normalize", "capacity"}, {"dropless", "false"}, {"capacity_factor", "2"}, {"min_capacity", "0"}}));
    const Assignment a = step(*p, kStep1, 2, kPerf1.data());
    // C = ceil(2*2*2/4) = 2, nothing dropped; L = 0.5 * {1,2,1,0} / 2.
    REQUIRE(a.capacity == 2);
    check_vec(state(*p, "load"), {0.25, 0.5, 0.25, 0.0});
  }
  {
    // dropless: divided by the fair share T*k/E = 2*2/4 = 1
    auto p = moesim::make_policy("rdesi", 4, 2, knobs_with({{"load_normalize", "capacity"}}));
    step(*p, kStep1, 2, kPerf1.data());
    check_vec(state(*p, "load"), {0.5, 1.0, 0.5, 0.0});
  }
  {
    auto p = moesim::make_policy("rdesi", 4, 2, base_knobs());
    step(*p, kStep1, 2, nullptr);
    // No perf: served experts keep R = 1, idle e3 decays to 0.5. Loads and counts still update.
    check_vec(state(*p, "reputation"), {1, 1, 1, 0.5});
    check_vec(state(*p, "counts"), {1, 2, 1, 0});
  }
}

TEST_CASE("rdesi: weights_over=logits gives softmax over the selected gate logits") {
  auto p = moesim::make_policy("rdesi", 4, 2, knobs_with({{"weights_over", "logits"}}));
  const Assignment a = step(*p, kStep1, 2, kPerf1.data());
  // t0 selects {0,1} with logits {2, 0}: 1/(1+e^-2) = 0.8807971 (bias equal, so same as scores here)
  CHECK(a.weight_at(0, 0) == Approx(0.8807971).epsilon(1e-5));
  // Second batch, zero logits, experts {0, 2}: equal logits -> 0.5, 0.5 (scores would give 0.62/0.38).
  const std::vector<float> zero(4, 0.0f);
  const Assignment b = step(*p, zero, 1, nullptr);
  REQUIRE(b.expert == std::vector<std::int32_t>{0, 2});
  CHECK(b.weight_at(0, 0) == Approx(0.5).epsilon(1e-6));
  CHECK(b.weight_at(0, 1) == Approx(0.5).epsilon(1e-6));
}

TEST_CASE("rdesi with beta = gamma = ucb_c = 0 selects exactly what topk selects") {
  // The extra terms vanish, so the selection is top-k on the logits for any feedback.
  const int E = 8, k = 3, T = 64;
  auto p = moesim::make_policy("rdesi", E, k, {{"beta", "0"}, {"gamma", "0"}, {"ucb_c", "0"}, {"dropless", "true"}});
  for (int s = 0; s < 4; ++s) {
    const auto z = make_logits(T, E, 40 + static_cast<std::uint64_t>(s), kMixed);
    const auto perf = make_perf(static_cast<std::size_t>(T) * k, 7 + static_cast<std::uint64_t>(s));
    const Assignment a = step(*p, z, T, perf.data());
    for (int t = 0; t < T; ++t) {
      const auto want = ref_topk(z.data() + static_cast<std::size_t>(t) * E, E, k);
      for (int j = 0; j < k; ++j) REQUIRE(a.at(t, j) == want[static_cast<std::size_t>(j)]);
    }
  }
}

TEST_CASE("rdesi epsilon = 1: every token explores (ignores a dominant logit)") {
  const int E = 8, T = 200;
  auto p = moesim::make_policy("rdesi", E, 1, {{"epsilon", "1"}, {"dropless", "true"}});
  std::vector<float> z(static_cast<std::size_t>(T) * E, 0.0f);
  for (int t = 0; t < T; ++t) z[static_cast<std::size_t>(t) * E] = 50.0f;  // expert 0 dominates
  const auto a = route_once(*p, z, T, E, 3);
  // Uniform random picks: expert 0 expected 25 of 200; P(all 200 on expert 0) = 8^-200.
  CHECK(a.counts[0] < T);
  int used = 0;
  for (auto c : a.counts) used += c > 0;
  CHECK(used == E);  // P(some expert never drawn in 200 uniform picks) < 8 * (7/8)^200 ~ 2e-11
}

// Regression: ucb_eps was once declared down to 1e-300, where an unserved expert's
// bonus c*sqrt(ln(N+1)/eps) ~ 1e149 overflowed the float bias and the weights went
// NaN. Now the declared extremes (smallest eps, largest c) must still route finitely.
TEST_CASE("rdesi: knobs at the ends of their declared ranges still give finite, normalised weights") {
  std::string eps_min, c_max;
  for (const auto& k : moesim::policy_info("rdesi").knobs) {
    if (k.name == "ucb_eps") eps_min = moesim::format_real(k.lo);
    if (k.name == "ucb_c") c_max = moesim::format_real(k.hi);
  }
  REQUIRE(!eps_min.empty());
  REQUIRE(!c_max.empty());
  // E=8, k=1, T=2 leaves experts unserved, so their bonus is the largest possible.
  const int E = 8, T = 2;
  auto p = moesim::make_policy("rdesi", E, 1, {{"ucb_eps", eps_min}, {"ucb_c", c_max}, {"dropless", "true"}});
  const auto z = make_logits(T, E, 21, kContinuous);
  Rng rng(1);
  for (int step = 0; step < 3; ++step) {
    CAPTURE(step);
    Assignment a;
    moesim::RouteInput in;
    in.logits = z.data();
    in.tokens = T;
    in.experts = E;
    p->route(in, rng, a);
    CHECK(violation(*p, T, E, 1, a) == "");
    const auto perf = make_perf(a.expert.size(), 5);
    p->observe(a, perf.data());
  }
}

TEST_CASE("rdesi preset reference: GT-MoE router.py's knob values, explicit knobs still override") {
  auto p = moesim::make_policy("rdesi", 8, 2, {{"preset", "reference"}});
  const auto& v = p->knobs().values();
  CHECK(v.at("decay_on") == "all_before_ema");
  CHECK(v.at("load_normalize") == "none");
  CHECK(v.at("count_slots") == "routed");
  CHECK(v.at("dropless") == "true");
  CHECK(v.at("weights_over") == "scores");
  CHECK(v.at("ucb_eps") == "1e-10");
  CHECK(v.at("idle_perf") == "zero");
  auto q = moesim::make_policy("rdesi", 8, 2, {{"preset", "reference"}, {"gamma", "2"}});
  CHECK(q->knobs().values().at("gamma") == "2");
  CHECK(q->knobs().values().at("decay_on") == "all_before_ema");
  // The default preset is moesim's own, and leaves every knob at its default.
  auto d = moesim::make_policy("rdesi", 8, 2);
  CHECK(d->knobs().values().at("preset") == "moesim");
  CHECK(d->knobs().values().at("load_normalize") == "capacity");
  CHECK_THROWS_WITH(moesim::make_policy("rdesi", 8, 2, {{"preset", "gtmoe"}}),
                    Catch::Contains("knob 'preset' = 'gtmoe': expected one of {moesim, reference}"));
}

TEST_CASE("rdesi preset reference, hand-computed from router.py over three batches (UCB of a never-chosen "
          "expert ~ sqrt(ln(N+1)/1e-10))") {
  // E = 4, k = 2, beta = gamma = 0.1, alpha = 0.9, c = 0.1, eps = 1e-10, decay 0.99, a = 0.9.
  auto p = moesim::make_policy("rdesi", 4, 2, {{"preset", "reference"}});
  // Batch 1: R = L = N = 0, ln(0 + 1) = 0, so no bonus: scores = logits.
  // t0 {2,0,-1,-2} -> {0, 1}; t1 {-1,0,2,-2} -> {2, 1}; weights softmax{2, 0} = 0.8807971, 0.1192029.
  const Assignment a = step(*p, kStep1, 2, kPerf1.data());
  REQUIRE(a.expert == std::vector<std::int32_t>{0, 1, 2, 1});
  CHECK(a.weight_at(0, 0) == Approx(0.8807971).epsilon(1e-6));
  // update_states: N_i += bincount {1,2,1,0}, N += T*k = 4; R <- 0.99*0 then 0.9*perf + 0.1*R with
  // perf {4, 1.5, 3, 0}; L <- 0.9*{1,2,1,0} + 0.1*0.
  check_vec(state(*p, "reputation"), {3.6, 1.35, 2.7, 0.0}, 1e-12);
  check_vec(state(*p, "load"), {0.9, 1.8, 0.9, 0.0}, 1e-12);
  check_vec(state(*p, "counts"), {1, 2, 1, 0}, 0);
  // Batch 2 bias = 0.1 R - 0.1 L + 0.1 sqrt(ln 5 / (N_i + 1e-10)); expert 3 was never chosen:
  // 0.1 * sqrt(1.6094379 / 1e-10) = 12686.362.
  check_vec(state(*p, "score_bias"), {0.3968636241, 0.0447061289, 0.3068636241, 12686.3624118}, 1e-6);
  // Zero logits: every token takes expert 3 and then expert 0; the weight on expert 0 is
  // exp(0.397 - 12686.4) = 0 in float.
  const std::vector<float> zero(8, 0.0f);
  const std::vector<float> perf2 = {5, 1, 7, 3};
  const Assignment b = step(*p, zero, 2, perf2.data());
  REQUIRE(b.expert == std::vector<std::int32_t>{3, 0, 3, 0});
  CHECK(b.weight_at(0, 0) == 1.0f);
  CHECK(b.weight_at(0, 1) == 0.0f);
  // N_i = {3,2,1,2}, N = 8; R <- 0.99 R, then EMA with perf {2, 0, 0, 6}; L <- 0.9 {2,0,0,2} + 0.1 L.
  check_vec(state(*p, "reputation"), {2.1564, 0.13365, 0.2673, 5.4}, 1e-12);
  check_vec(state(*p, "load"), {1.89, 0.18, 0.09, 1.8}, 1e-12);
  check_vec(state(*p, "counts"), {3, 2, 1, 2}, 0);
  // Batch 3 bias with ln 9 = 2.1972246: {0.1122209, 0.1001797, 0.1659604, 0.4648147} -> experts 3, 2.
  check_vec(state(*p, "score_bias"), {0.1122208502, 0.1001797074, 0.1659603807, 0.4648147074}, 1e-9);
  const Assignment c = step(*p, zero, 1, nullptr);
  REQUIRE(c.expert == std::vector<std::int32_t>{3, 2});
}

namespace {

// GT-MoE src/rd_esi/router.py, written out from its equations (forward, then
// update_states), in double: the second implementation the preset is held to.
struct ReferenceRouter {
  int E, k;
  double beta = 0.1, gamma = 0.1, alpha = 0.9, c = 0.1, eps = 1e-10, decay = 0.99, a = 0.9;
  std::vector<double> R, L, Ni;
  double N = 0;
  ReferenceRouter(int E_, int k_) : E(E_), k(k_), R(E_, 0.0), L(E_, 0.0), Ni(E_, 0.0) {}

  // selection_scores = base_logits + beta*R - gamma*L + c*sqrt(log(N+1)/(N_i+eps)); topk; softmax(topk scores)
  void forward(const float* z, int T, std::vector<int>& idx, std::vector<double>& w) const {
    idx.assign(static_cast<std::size_t>(T) * k, -1);
    w.assign(idx.size(), 0.0);
    for (int t = 0; t < T; ++t) {
      std::vector<float> s(static_cast<std::size_t>(E));
      for (int e = 0; e < E; ++e) {
        double b = beta * R[e] - gamma * L[e];
        b += c * std::sqrt(std::log(N + 1.0) / (Ni[e] + eps));
        s[static_cast<std::size_t>(e)] = z[static_cast<std::size_t>(t) * E + e] + static_cast<float>(b);
      }
      const auto top = testutil::ref_topk(s.data(), E, k);
      double m = s[static_cast<std::size_t>(top[0])], sum = 0;
      for (int j = 0; j < k; ++j) sum += std::exp(double(s[static_cast<std::size_t>(top[j])]) - m);
      for (int j = 0; j < k; ++j) {
        idx[static_cast<std::size_t>(t) * k + j] = top[static_cast<std::size_t>(j)];
        w[static_cast<std::size_t>(t) * k + j] = std::exp(double(s[static_cast<std::size_t>(top[j])]) - m) / sum;
      }
    }
  }
  // update_states(expert_indices, current_performances)
  void update(const std::vector<int>& idx, const float* perf, int T) {
    std::vector<double> counts(static_cast<std::size_t>(E), 0.0), psum(static_cast<std::size_t>(E), 0.0);
    for (std::size_t i = 0; i < idx.size(); ++i) {
      counts[static_cast<std::size_t>(idx[i])] += 1;
      psum[static_cast<std::size_t>(idx[i])] += perf[i];
    }
    for (int e = 0; e < E; ++e) Ni[e] += counts[e];
    N += static_cast<double>(T) * k;
    for (int e = 0; e < E; ++e) {
      const double cur = counts[e] > 0 ? psum[e] / counts[e] : 0.0;
      R[e] *= decay;  // use_reputation_decay: every expert, before the EMA
      R[e] = alpha * cur + (1 - alpha) * R[e];
      L[e] = a * counts[e] + (1 - a) * L[e];
    }
  }
};

}  // namespace

TEST_CASE("rdesi preset reference equals router.py step by step (selection, weights, R, L, N_i)") {
  rc::prop("rdesi reference preset vs a second implementation of router.py", [] {
    const int E = *rc::gen::inRange(2, 33);
    const int k = 1 + choose(E);
    const int T = *rc::gen::inRange(1, 80);
    const std::uint64_t seed = any_seed();
    RC_LOG() << "E=" << E << " k=" << k << " T=" << T << " seed=" << seed << '\n';
    auto p = moesim::make_policy("rdesi", E, k, {{"preset", "reference"}});
    ReferenceRouter ref(E, k);
    Rng rng(seed);
    for (int s = 0; s < 6; ++s) {
      // Distinct, well-separated logits: no tie can decide the comparison.
      const auto z = make_distinct_logits(T, E, seed + 977 * static_cast<std::uint64_t>(s));
      moesim::RouteInput in;
      in.logits = z.data();
      in.tokens = T;
      in.experts = E;
      Assignment a;
      p->route(in, rng, a);
      std::vector<int> idx;
      std::vector<double> w;
      ref.forward(z.data(), T, idx, w);
      for (std::size_t i = 0; i < idx.size(); ++i) {
        RC_ASSERT(a.expert[i] == idx[i]);
        RC_ASSERT(std::fabs(a.weight[i] - w[i]) <= 1e-5 * (1 + w[i]));
      }
      const auto perf = make_perf(a.expert.size(), seed ^ static_cast<std::uint64_t>(s));
      p->observe(a, perf.data());
      ref.update(idx, perf.data(), T);
      const auto R = state(*p, "reputation"), L = state(*p, "load"), Ni = state(*p, "counts");
      for (int e = 0; e < E; ++e) {
        RC_ASSERT(std::fabs(R[static_cast<std::size_t>(e)] - ref.R[static_cast<std::size_t>(e)]) <= 1e-9);
        RC_ASSERT(std::fabs(L[static_cast<std::size_t>(e)] - ref.L[static_cast<std::size_t>(e)]) <= 1e-9);
        RC_ASSERT(Ni[static_cast<std::size_t>(e)] == ref.Ni[static_cast<std::size_t>(e)]);
      }
    }
  });
}

TEST_CASE("rdesi count_slots: served counts only what capacity kept, routed counts every request") {
  // E = 4, k = 2, capacity 1 (cf 0.5, min 0): t0 {0,1}, t1 {2,1} -> expert 1 serves one slot.
  auto base = knobs_with({{"dropless", "false"}, {"capacity_factor", "0.5"}, {"min_capacity", "0"}});
  auto served = moesim::make_policy("rdesi", 4, 2, base);
  base.erase("count_slots");
  base.emplace("count_slots", "routed");
  auto routed = moesim::make_policy("rdesi", 4, 2, base);
  const Assignment a = step(*served, kStep1, 2, kPerf1.data());
  step(*routed, kStep1, 2, kPerf1.data());
  REQUIRE(a.capacity == 1);
  REQUIRE(a.dropped == 1);
  check_vec(state(*served, "counts"), {1, 1, 1, 0}, 0);
  check_vec(state(*routed, "counts"), {1, 2, 1, 0}, 0);
}

TEST_CASE("rdesi observe: each expert's mean performance is the in-order double sum over its slots, bit for bit") {
  // R = alpha * (sum / count) + (1 - alpha) * R with alpha = 1, so R is each
  // served expert's mean, the sum written out as one chain in slot order. The second batch puts
  // a 1 before 2^-53 terms on expert 0: the chain rounds each add back to 1,
  // where adding small terms before the 1 would not.
  const int E = 8, k = 2, T = 1500;
  for (int batch = 0; batch < 2; ++batch) {
    auto p = moesim::make_policy("rdesi", E, k, knobs_with({{"alpha", "1"}}));
    Assignment a;
    a.reset(T, E, k);
    std::vector<float> perf(static_cast<std::size_t>(T) * k);
    Rng rng(3);
    for (std::size_t i = 0; i < perf.size(); ++i) {
      a.expert[i] = rng.uniform() < 0.1 ? moesim::kNoExpert : static_cast<std::int32_t>(rng.below(E));
      perf[i] = batch == 0 ? static_cast<float>(rng.uniform(0.2, 1.7)) : (i == 0 ? 1.0f : 0x1p-53f);
    }
    if (batch == 1) a.expert[0] = 0;
    for (auto e : a.expert)
      if (e >= 0) ++a.counts[static_cast<std::size_t>(e)];
    p->observe(a, perf.data());
    const auto R = state(*p, "reputation");
    for (int e = 0; e < E; ++e) {
      double sum = 0.0, n = 0.0;
      for (std::size_t i = 0; i < perf.size(); ++i)
        if (a.expert[i] == e) sum += perf[i], n += 1.0;
      const double want = n > 0 ? 1.0 * (sum / n) + 0.0 * 1.0 : 0.0;  // idle: perf 0
      INFO("batch " << batch << " expert " << e);
      CHECK(std::memcmp(&R[static_cast<std::size_t>(e)], &want, sizeof want) == 0);
    }
  }
}
