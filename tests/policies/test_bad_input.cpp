// Bad input: every refusal is a moesim::Error whose message names what is wrong.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "helpers.hpp"
#include "policies/registry.hpp"

using namespace testutil;
using moesim::Assignment;
using moesim::Rng;

// Type and message (the expression runs twice: once per check).
#define REQUIRE_ERROR(expr, fragment)                   \
  do {                                                  \
    REQUIRE_THROWS_AS(expr, moesim::Error);             \
    REQUIRE_THROWS_WITH(expr, Catch::Contains(fragment)); \
  } while (0)

namespace {
void route(moesim::Policy& p, const moesim::RouteInput& in) {
  Rng rng(1);
  Assignment a;
  p.route(in, rng, a);
}
moesim::RouteInput input(const std::vector<float>& z, int T, int E, const std::vector<std::int64_t>* ids = nullptr) {
  moesim::RouteInput in;
  in.logits = z.data();
  in.tokens = T;
  in.experts = E;
  in.token_ids = ids ? ids->data() : nullptr;
  return in;
}
}  // namespace

TEST_CASE("k < 1, k > E and E < 1 are refused by every policy") {
  for (const auto& info : moesim::policy_registry()) {
    CAPTURE(info.name);
    REQUIRE_ERROR(moesim::make_policy(info.name, 4, 0), "k=0");
    REQUIRE_ERROR(moesim::make_policy(info.name, 4, -2), "k=-2");
    REQUIRE_ERROR(moesim::make_policy(info.name, 4, 5), "k=5");
    REQUIRE_ERROR(moesim::make_policy(info.name, 0, 1), "E=0");
    REQUIRE_ERROR(moesim::make_policy(info.name, -3, 1), "E=-3");
    // The message names the policy.
    REQUIRE_ERROR(moesim::make_policy(info.name, 4, 5), info.name);
  }
}

TEST_CASE("capacity_factor <= 0 is refused outside dropless mode and accepted in dropless mode") {
  for (const auto& info : moesim::policy_registry()) {
    if (!has_knob(info, "capacity_factor")) continue;
    CAPTURE(info.name);
    const int k = 1;
    // hash is dropless by default: ask for capacity mode explicitly.
    moesim::KnobMap capped;
    if (has_knob(info, "dropless")) capped["dropless"] = "false";
    for (const char* cf : {"0", "-1", "-0.5"}) {
      CAPTURE(cf);
      capped["capacity_factor"] = cf;
      REQUIRE_ERROR(moesim::make_policy(info.name, 4, k, capped), "must be > 0");
      REQUIRE_ERROR(moesim::make_policy(info.name, 4, k, capped), "capacity_factor");
      // Policies with a dropless mode say so, and accept any factor in it (expert
      // choice has no dropless mode: C is its whole mechanism).
      if (has_knob(info, "dropless")) {
        REQUIRE_ERROR(moesim::make_policy(info.name, 4, k, capped), "outside dropless mode");
        REQUIRE_NOTHROW(moesim::make_policy(info.name, 4, k, {{"capacity_factor", cf}, {"dropless", "true"}}));
      }
    }
  }
}

TEST_CASE("logits shaped for another E, negative tokens and null logits are refused") {
  for (const auto& info : moesim::policy_registry()) {
    CAPTURE(info.name);
    auto p = moesim::make_policy(info.name, 4, 1);
    const std::vector<float> z(15, 0.0f);
    const std::vector<std::int64_t> ids(5, 1);
    REQUIRE_ERROR(route(*p, input(z, 5, 3, &ids)), "logits have 3 experts per token, policy was built for E=4");
    REQUIRE_ERROR(route(*p, input(z, -1, 4, &ids)), "tokens=-1");
    moesim::RouteInput in = input(z, 2, 4, &ids);
    in.logits = nullptr;
    REQUIRE_ERROR(route(*p, in), "logits pointer is null");
  }
}

TEST_CASE("a NaN or infinite gate score is refused, naming the token and expert") {
  for (const auto& info : moesim::policy_registry()) {
    CAPTURE(info.name);
    // Balanced needs T a multiple of E: T = 8, E = 4 suits every policy.
    auto p = moesim::make_policy(info.name, 4, 1);
    const std::vector<std::int64_t> ids(8, 3);
    std::vector<float> z = make_logits(8, 4, 1, kContinuous);
    z[3 * 4 + 1] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_ERROR(route(*p, input(z, 8, 4, &ids)), "NaN at token 3, expert 1");
    REQUIRE_ERROR(route(*p, input(z, 8, 4, &ids)), info.name);
    z[3 * 4 + 1] = 0.0f;
    z[6 * 4 + 2] = std::numeric_limits<float>::infinity();
    REQUIRE_ERROR(route(*p, input(z, 8, 4, &ids)), "infinite at token 6, expert 2");
    z[6 * 4 + 2] = 0.0f;
    z[0] = -std::numeric_limits<float>::infinity();
    REQUIRE_ERROR(route(*p, input(z, 8, 4, &ids)), "infinite at token 0, expert 0");
    // The first bad score is the one named.
    z[7 * 4 + 3] = std::numeric_limits<float>::quiet_NaN();
    REQUIRE_ERROR(route(*p, input(z, 8, 4, &ids)), "token 0, expert 0");
  }
}

TEST_CASE("a NaN or infinite gate score is refused in the 16-row kernels too (T = 64, E = 64, k = 1 and 2), leaving the Rng untouched") {
  for (const auto& info : moesim::policy_registry())
    for (int k : {1, 2}) {
      if (info.name == "switch" && k == 2) continue;  // top-1 only
      CAPTURE(info.name, k);
      auto p = moesim::make_policy(info.name, 64, k);
      const std::vector<std::int64_t> ids(64, 3);
      std::vector<float> z = make_logits(64, 64, 1, kContinuous);
      z[37 * 64 + 50] = std::numeric_limits<float>::quiet_NaN();
      REQUIRE_ERROR(route(*p, input(z, 64, 64, &ids)), "NaN at token 37, expert 50");
      // A refused batch consumes none of the caller's randomness.
      moesim::Rng rng(17);
      const moesim::Rng before = rng;
      moesim::Assignment a;
      REQUIRE_THROWS_AS(p->route(input(z, 64, 64, &ids), rng, a), moesim::Error);
      CHECK(rng == before);
      z[37 * 64 + 50] = 0.0f;
      z[21 * 64 + 63] = -std::numeric_limits<float>::infinity();
      REQUIRE_ERROR(route(*p, input(z, 64, 64, &ids)), "infinite at token 21, expert 63");
    }
}

TEST_CASE("unknown knobs are refused, naming the policy and the key") {
  for (const auto& info : moesim::policy_registry()) {
    CAPTURE(info.name);
    REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{"no_such_knob", "1"}}), "unknown knob 'no_such_knob'");
    REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{"no_such_knob", "1"}}), info.name);
  }
}

TEST_CASE("every knob of every policy refuses a value of the wrong type") {
  for (const auto& info : moesim::policy_registry()) {
    for (const auto& spec : info.knobs) {
      CAPTURE(info.name, spec.name);
      const std::string where = "knob '" + spec.name + "'";
      switch (spec.type) {
        case moesim::KnobType::Real:
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, "abc"}}), "expected a real number");
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, "1.5x"}}), where);
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, "nan"}}), where);
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, "inf"}}), where);
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, ""}}), where);
          break;
        case moesim::KnobType::Int:
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, "1.5"}}), "expected an integer");
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, "two"}}), where);
          break;
        case moesim::KnobType::Bool:
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, "maybe"}}), "expected true or false");
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, "2"}}), where);
          break;
        case moesim::KnobType::Choice:
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, "no_such_choice"}}), "expected one of");
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, "no_such_choice"}}), where);
          break;
      }
    }
  }
}

TEST_CASE("knob values outside their declared range are refused") {
  for (const auto& info : moesim::policy_registry()) {
    for (const auto& spec : info.knobs) {
      if (spec.type != moesim::KnobType::Real && spec.type != moesim::KnobType::Int) continue;
      CAPTURE(info.name, spec.name);
      if (spec.type == moesim::KnobType::Int) {
        // Integer bounds are exact: probe one step outside each, however wide.
        if (spec.ilo > std::numeric_limits<long>::min())
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, std::to_string(spec.ilo - 1)}}), "out of range");
        if (spec.ihi < std::numeric_limits<long>::max())
          REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, std::to_string(spec.ihi + 1)}}), "out of range");
        continue;
      }
      if (std::fabs(spec.lo) < 1e299)
        REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, moesim::format_real(spec.lo - 1.0)}}), "out of range");
      if (std::fabs(spec.hi) < 1e299)
        REQUIRE_ERROR(moesim::make_policy(info.name, 4, 1, {{spec.name, moesim::format_real(spec.hi + 1.0)}}), "out of range");
    }
  }
  // Spot checks with hand-picked values.
  REQUIRE_ERROR(moesim::make_policy("rdesi", 4, 1, {{"alpha", "1.5"}}), "knob 'alpha'");
  REQUIRE_ERROR(moesim::make_policy("rdesi", 4, 1, {{"decay_rate", "-0.1"}}), "out of range");
  REQUIRE_ERROR(moesim::make_policy("topk", 4, 1, {{"min_capacity", "-1"}}), "knob 'min_capacity'");
}

// Regression: integer knobs were once range-checked as doubles, so past 2^53 a
// value one beyond the bound rounded onto it and was accepted.
TEST_CASE("integer knobs with bounds beyond 2^53 still refuse a value one past the bound") {
  REQUIRE_ERROR(moesim::make_policy("hash", 4, 1, {{"salt", "4611686018427387905"}}), "out of range");
  REQUIRE_ERROR(moesim::make_policy("hash", 4, 1, {{"salt", "-4611686018427387905"}}), "out of range");
}

TEST_CASE("group-limited routing refuses impossible group settings") {
  REQUIRE_ERROR(moesim::make_policy("topk", 6, 1, {{"n_groups", "4"}}), "must divide E=6");
  REQUIRE_ERROR(moesim::make_policy("topk", 8, 1, {{"n_groups", "2"}, {"topk_groups", "3"}}), "exceeds n_groups");
  // 4 groups of 2, one kept: at most 2 experts reachable.
  REQUIRE_ERROR(moesim::make_policy("topk", 8, 3, {{"n_groups", "4"}, {"topk_groups", "1"}}), "k=3 exceeds");
  REQUIRE_ERROR(moesim::make_policy("topk", 4, 1, {{"n_groups", "4"}, {"group_score", "top2sum"}}),
                "needs groups of at least 2");
}

TEST_CASE("switch refuses k != 1; jitter without the gate input is refused") {
  REQUIRE_ERROR(moesim::make_policy("switch", 4, 2), "routes exactly one expert per token");
  auto p = moesim::make_policy("switch", 4, 1, {{"jitter_eps", "0.01"}});
  const std::vector<float> z(8, 0.0f);
  REQUIRE_ERROR(route(*p, input(z, 2, 4)), "needs the gate input");
  auto q = moesim::make_policy("noisy_topk", 4, 1, {{"jitter_eps", "0.01"}});
  REQUIRE_ERROR(route(*q, input(z, 2, 4)), "needs the gate input");
}

TEST_CASE("observe() refuses an assignment for another number of experts") {
  for (const auto& info : moesim::policy_registry()) {
    CAPTURE(info.name);
    auto p = moesim::make_policy(info.name, 4, 1);
    Assignment a;
    a.reset(2, 5, 1);
    REQUIRE_ERROR(p->observe(a, nullptr), "assignment has E=5");
  }
}

TEST_CASE("hash routing without token ids is refused") {
  auto p = moesim::make_policy("hash", 4, 1);
  const std::vector<float> z(8, 0.0f);
  REQUIRE_ERROR(route(*p, input(z, 2, 4)), "needs token ids");
}

TEST_CASE("balanced assignment refuses T not a multiple of E") {
  auto p = moesim::make_policy("balanced", 4, 1);
  const std::vector<float> z(6 * 4, 0.0f);
  REQUIRE_ERROR(route(*p, input(z, 6, 4)), "T=6 tokens is not a multiple of E=4");
}

// Regression: the jittered logits x*u W^T are computed past Policy::route's
// finiteness check; a NaN or inf gate input once crashed noisy_topk (offset read at
// expert -1) and let switch route on an infinite score. Input: jitter_eps=0.01,
// E=3, d=2, T=2, gate input {1, 0, 0, bad}; expected: an Error naming token 1.
static void jitter_bad_input_case(const char* name, float bad) {
  const std::vector<float> z = {0, 0, 0, 0, 0, 0};
  const std::vector<float> W = {1, 0, 0, 1, 1, 1};  // E=3 x d=2
  const std::vector<float> x = {1, 0, 0, bad};      // T=2 x d=2, token 1 feature 1 bad
  moesim::RouteInput in;
  in.logits = z.data();
  in.tokens = 2;
  in.experts = 3;
  in.gate_input = x.data();
  in.gate_weight = W.data();
  in.gate_dim = 2;
  CAPTURE(name, bad);
  auto p = moesim::make_policy(name, 3, 1, {{"jitter_eps", "0.01"}});
  REQUIRE_ERROR(route(*p, in), "token 1");
}

TEST_CASE("noisy_topk: a NaN or infinite gate input under jitter is refused, naming the token") {
  jitter_bad_input_case("noisy_topk", std::numeric_limits<float>::quiet_NaN());
  jitter_bad_input_case("noisy_topk", std::numeric_limits<float>::infinity());
}

TEST_CASE("switch: a NaN gate input under jitter is refused, naming the token") {
  jitter_bad_input_case("switch", std::numeric_limits<float>::quiet_NaN());
}

TEST_CASE("switch: an infinite gate input under jitter is refused, naming the token") {
  jitter_bad_input_case("switch", std::numeric_limits<float>::infinity());
}

// Regression: an unbounded noise scale once overflowed float to -inf rows that
// select nothing, and the policy then indexed expert -1 (crash). The noise knobs are
// now bounded (1e6): 1e38 is refused by name, and at the bound every row routes.
TEST_CASE("an enormous noise scale is refused by its knob; at the bound every token still routes validly") {
  const int T = 20000, E = 1;
  const std::vector<float> z(static_cast<std::size_t>(T) * E, 0.0f);
  for (const auto& [name, knob] : {std::pair<std::string, std::string>{"noisy_topk", "noise_std"}, {"rdesi", "score_noise"}}) {
    CAPTURE(name);
    REQUIRE_ERROR(moesim::make_policy(name, E, 1, {{knob, "1e38"}, {"dropless", "true"}}),
                  "knob '" + knob + "' = '1e38': out of range [0, 1e+06]");
    auto p = moesim::make_policy(name, E, 1, {{knob, "1e6"}, {"dropless", "true"}});
    Assignment a;
    Rng rng(1);
    p->route(input(z, T, E), rng, a);
    CHECK(violation(*p, T, E, 1, a) == "");
  }
}
