// Hash routing: a token's experts are a fixed function of its id (and the salt),
// independent of the gate; the gate only supplies the combine weights.
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <cmath>

#include "helpers.hpp"
#include "policies/registry.hpp"

using namespace testutil;
using moesim::Assignment;

TEST_CASE("hash: equal ids get equal experts, whatever the logits, the batch or the Rng") {
  rc::prop("experts are a function of the token id", [] {
    const auto& info = moesim::policy_info("hash");
    Scenario s = gen_scenario(info, false, 150, 32);
    s.knobs["dropless"] = "true";
    RC_PRE(s.T > 0);
    auto p = make(s);
    const auto a = route_once(*p, s.logits, s.T, s.E, 1, s.ids.data());
    // Another batch: other logits, ids reversed, another Rng seed.
    const auto z2 = make_logits(s.T, s.E, s.seed + 1, kContinuous);
    std::vector<std::int64_t> ids2(s.ids.rbegin(), s.ids.rend());
    const auto b = route_once(*p, z2, s.T, s.E, 99, ids2.data());
    for (int t = 0; t < s.T; ++t) {
      const int u = s.T - 1 - t;  // same id in the second batch
      for (int j = 0; j < s.k; ++j) RC_ASSERT(a.at(t, j) == b.at(u, j));
      for (int t2 = 0; t2 < t; ++t2)
        if (s.ids[static_cast<std::size_t>(t2)] == s.ids[static_cast<std::size_t>(t)])
          for (int j = 0; j < s.k; ++j) RC_ASSERT(a.at(t, j) == a.at(t2, j));
    }
  });
}

TEST_CASE("hash: slot 0 depends on the id only, not on k") {
  const int E = 16, T = 200;
  std::vector<std::int64_t> ids(T);
  for (int t = 0; t < T; ++t) ids[static_cast<std::size_t>(t)] = 1000 + 37 * t;
  const auto z = make_logits(T, E, 3, kContinuous);
  auto p1 = moesim::make_policy("hash", E, 1), p4 = moesim::make_policy("hash", E, 4);
  const auto a = route_once(*p1, z, T, E, 1, ids.data()), b = route_once(*p4, z, T, E, 1, ids.data());
  for (int t = 0; t < T; ++t) REQUIRE(a.at(t, 0) == b.at(t, 0));
}

TEST_CASE("hash: another salt is another map; distinct ids spread evenly over the experts") {
  const int E = 8, T = 8000;
  std::vector<std::int64_t> ids(T);
  for (int t = 0; t < T; ++t) ids[static_cast<std::size_t>(t)] = t;  // consecutive ids: a weak hash clusters them
  const std::vector<float> z(static_cast<std::size_t>(T) * E, 0.0f);
  auto p = moesim::make_policy("hash", E, 1), q = moesim::make_policy("hash", E, 1, {{"salt", "12345"}});
  const auto a = route_once(*p, z, T, E, 1, ids.data()), b = route_once(*q, z, T, E, 1, ids.data());
  int same = 0;
  for (int t = 0; t < T; ++t) same += a.at(t, 0) == b.at(t, 0);
  // Independent maps agree on ~1/8 of the ids (1000 +- 30).
  CHECK(same < T / 4);
  // Each expert ~ 1000 +- 30 (binomial sd = sqrt(8000 * 1/8 * 7/8) = 29.6): +-200 is > 6 sd.
  for (int e = 0; e < E; ++e) {
    CAPTURE(e);
    CHECK(std::abs(a.counts[static_cast<std::size_t>(e)] - T / E) < 200);
  }
}

TEST_CASE("hash hand-computed: weights come from the gate over the hashed experts") {
  // Zero logits: renormalised softmax over k equal scores = 1/k each; raw softmax = 1/E.
  const int E = 4, k = 2;
  const std::vector<float> z(static_cast<std::size_t>(E), 0.0f);
  const std::int64_t id = 42;
  auto p = moesim::make_policy("hash", E, k);
  const auto a = route_once(*p, z, 1, E, 1, &id);
  CHECK(a.weight_at(0, 0) == Approx(0.5).epsilon(1e-6));
  CHECK(a.weight_at(0, 1) == Approx(0.5).epsilon(1e-6));
  auto q = moesim::make_policy("hash", E, k, {{"renormalize", "false"}});
  const auto b = route_once(*q, z, 1, E, 1, &id);
  CHECK(b.weight_at(0, 0) == Approx(0.25).epsilon(1e-6));
  CHECK(b.weight_at(0, 1) == Approx(0.25).epsilon(1e-6));
  // Logits {ln3, 0, 0, 0} (softmax {1/2, 1/6, 1/6, 1/6}): the weight of whichever expert was
  // hashed is its softmax probability (renormalize=false, k=1).
  auto r = moesim::make_policy("hash", E, 1, {{"renormalize", "false"}});
  const std::vector<float> z3 = {std::log(3.0f), 0, 0, 0};
  const auto c = route_once(*r, z3, 1, E, 1, &id);
  const double want = c.at(0, 0) == 0 ? 0.5 : 1.0 / 6;
  CHECK(c.weight_at(0, 0) == Approx(want).epsilon(1e-5));
}

TEST_CASE("hash: an empty batch needs no token ids") {
  auto p = moesim::make_policy("hash", 4, 1);
  moesim::RouteInput in;
  in.experts = 4;
  moesim::Rng rng(1);
  Assignment a;
  REQUIRE_NOTHROW(p->route(in, rng, a));
  CHECK(a.tokens == 0);
}
