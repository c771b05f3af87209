// Balanced assignment (BASE layers): exactly T*k/E slots per expert, chosen to
// maximise the total gate logit (solved exactly, or by an eps-approximate auction, per slot round).
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <cmath>
#include <algorithm>
#include <string>

#include "helpers.hpp"
#include "hungarian.hpp"
#include "policies/registry.hpp"

using namespace testutil;
using moesim::Assignment;

TEST_CASE("balanced hand-computed: 4 tokens x 2 experts, k=1, the optimal balanced assignment") {
  // Each expert gets T*k/E = 2 tokens. Gains z0 - z1: t0 3, t1 2, t2 1, t3 -1.
  // Expert 0 should hold the two largest gains (t0, t1): total 3 + 2 + 0 + 1 = 6;
  // the runner-up (t0, t2 on e0) totals 3 + 0 + 1 + 1 = 5.
  // Plain top-1 would send t0, t1, t2 all to expert 0.
  const std::vector<float> z = {3, 0, 2, 0, 1, 0, 0, 1};
  auto p = moesim::make_policy("balanced", 2, 1);
  const auto a = route_once(*p, z, 4, 2);
  CHECK(a.expert == std::vector<std::int32_t>{0, 0, 1, 1});
  CHECK(a.counts == std::vector<std::int64_t>{2, 2});
  CHECK(a.dropped == 0);
  CHECK(a.weight == std::vector<float>{1, 1, 1, 1});  // k = 1, renormalised
  // Without renormalisation the weight is the softmax probability of the assigned expert:
  // t0 softmax(3,0)[0] = 1/(1+e^-3) = 0.9525741, t1 1/(1+e^-2) = 0.8807971,
  // t2 softmax(1,0)[1] = 1/(1+e) = 0.2689414, t3 softmax(0,1)[1] = 0.7310586.
  auto q = moesim::make_policy("balanced", 2, 1, {{"renormalize", "false"}});
  const auto b = route_once(*q, z, 4, 2);
  REQUIRE(b.expert == std::vector<std::int32_t>{0, 0, 1, 1});
  CHECK(b.weight[0] == Approx(0.9525741).epsilon(1e-5));
  CHECK(b.weight[1] == Approx(0.8807971).epsilon(1e-5));
  CHECK(b.weight[2] == Approx(0.2689414).epsilon(1e-5));
  CHECK(b.weight[3] == Approx(0.7310586).epsilon(1e-5));
}

TEST_CASE("balanced hand-computed: k = E gives every token every expert, slots by descending logit") {
  // T=2, E=2, k=2: loads T*k/E = 2 each; t0 {0.5, 1} -> slots [1, 0]; t1 {2, -1} -> [0, 1].
  const std::vector<float> z = {0.5f, 1.0f, 2.0f, -1.0f};
  auto p = moesim::make_policy("balanced", 2, 2);
  const auto a = route_once(*p, z, 2, 2);
  CHECK(a.expert == std::vector<std::int32_t>{1, 0, 0, 1});
  CHECK(a.counts == std::vector<std::int64_t>{2, 2});
}

TEST_CASE("balanced (k=1): exact solver at the optimum, auction within T*eps*range of it") {
  rc::prop("exact total == optimum; auction total >= optimum - T*eps*range", [] {
    static const int Es[] = {1, 2, 4, 8};
    const int E = Es[choose(4)];
    const int T = E * (1 + choose(32 / E));
    const std::uint64_t seed = any_seed();
    const int style = choose(3);
    const auto z = make_logits(T, E, seed, style);
    RC_LOG() << "E=" << E << " T=" << T << " style=" << style << " seed=" << seed << '\n';
    // The Hungarian oracle (hungarian.hpp, itself checked against exhaustive search).
    const auto best = static_cast<double>(hungarian_balanced_max(z, T, E, T / E));
    const auto [lo, hi] = std::minmax_element(z.begin(), z.end());
    const double range = double(*hi) - double(*lo);
    const double eps = 1e-3;  // the auction_eps default, relative to the logit range
    for (const char* solver : {"exact", "auction"}) {
      auto p = moesim::make_policy("balanced", E, 1, {{"solver", solver}});
      const auto a = route_once(*p, z, T, E);
      double got = 0.0;
      for (int t = 0; t < T; ++t) got += z[static_cast<std::size_t>(t) * E + a.at(t, 0)];
      RC_ASSERT(got <= best + 1e-9 * (1 + range) * T);
      const double gap = std::string(solver) == "exact" ? 1e-9 * (1 + range) * T : T * eps * range + 1e-9;
      RC_ASSERT(got >= best - gap);
    }
  });
}

TEST_CASE("balanced: a batch whose logits are all equal still splits evenly") {
  const int E = 4, T = 16, k = 2;
  const std::vector<float> z(static_cast<std::size_t>(T) * E, 0.5f);
  auto p = moesim::make_policy("balanced", E, k);
  const auto a = route_once(*p, z, T, E);
  CHECK(violation(*p, T, E, k, a).empty());
  CHECK(a.counts == std::vector<std::int64_t>(E, T * k / E));
}

TEST_CASE("balanced refuses auction_eps <= 0") {
  REQUIRE_THROWS_AS(moesim::make_policy("balanced", 4, 1, {{"auction_eps", "0"}}), moesim::Error);
  REQUIRE_THROWS_WITH(moesim::make_policy("balanced", 4, 1, {{"auction_eps", "0"}}), Catch::Contains("auction_eps"));
}
