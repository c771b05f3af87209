// RD-ESI, hand-computed: Score_i = g_i + beta*R_i - gamma*L_i + c*sqrt(ln(N+1)/(N_i+eps)),
// R <- alpha*perf + (1-alpha)*R (idle experts: perf 0 or kept), decay of idle/all experts,
// L <- a*demand + (1-a)*L (raw or divided by capacity), N_i/N cumulative served slots.
#include <catch2/catch.hpp>

#include <cmath>

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
  if (!is_policy("rdesi")) return;
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

TEST_CASE("rdesi hand-computed: decay_on=all decays every expert, idle_perf=keep spares idle reputation") {
  if (!is_policy("rdesi")) return;
  {
    auto p = moesim::make_policy("rdesi", 4, 2, knobs_with({{"decay_on", "all"}}));
    step(*p, kStep1, 2, kPerf1.data());
    // {2.5, 1.25, 2.0, 0.5} all * 0.5
    check_vec(state(*p, "reputation"), {1.25, 0.625, 1.0, 0.25});
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
  if (!is_policy("rdesi")) return;
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
  if (!is_policy("rdesi")) return;
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
  if (!is_policy("rdesi")) return;
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
  if (!is_policy("rdesi")) return;
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
  if (!is_policy("rdesi")) return;
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
