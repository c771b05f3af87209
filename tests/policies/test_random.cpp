// Uniform random routing: k distinct experts per token, drawn from the Rng passed in only.
#include <catch2/catch.hpp>

#include <cmath>

#include "helpers.hpp"
#include "policies/registry.hpp"

using namespace testutil;
using moesim::Assignment;

TEST_CASE("random: ignores the logits, depends on the Rng, spreads uniformly") {
  const int E = 8, k = 2, T = 4000;
  auto p = moesim::make_policy("random", E, k, {{"dropless", "true"}});
  std::vector<float> z(static_cast<std::size_t>(T) * E, 0.0f);
  for (int t = 0; t < T; ++t) z[static_cast<std::size_t>(t) * E + 3] = 50.0f;  // expert 3 dominates the gate
  const auto z2 = make_logits(T, E, 4, kContinuous);
  const auto a = route_once(*p, z, T, E, 7), b = route_once(*p, z2, T, E, 7), c = route_once(*p, z, T, E, 8);
  CHECK(a.expert == b.expert);  // same Rng, other logits: same experts
  CHECK(a.expert != c.expert);  // other Rng: other experts (8000 draws cannot all coincide)
  // 8000 slots, each expert with probability 1/8: 1000 +- 29.6 (sd); +-200 is > 6 sd.
  for (int e = 0; e < E; ++e) {
    CAPTURE(e);
    CHECK(std::abs(a.counts[static_cast<std::size_t>(e)] - T * k / E) < 200);
  }
  // Slot 0 and slot 1 are both uniform: slot 1 is not biased toward the experts slot 0 skipped.
  std::vector<int> first(E, 0);
  for (int t = 0; t < T; ++t) ++first[static_cast<std::size_t>(a.at(t, 0))];
  for (int e = 0; e < E; ++e) CHECK(std::abs(first[static_cast<std::size_t>(e)] - T / E) < 150);  // sd 20.9
}

TEST_CASE("random: every unordered pair of experts is equally likely (k = 2 of 4)") {
  // 6 pairs, each with probability 1/6: 6000 tokens -> 1000 +- 28.9 (sd) per pair.
  const int E = 4, k = 2, T = 6000;
  auto p = moesim::make_policy("random", E, k, {{"dropless", "true"}});
  const std::vector<float> z(static_cast<std::size_t>(T) * E, 0.0f);
  const auto a = route_once(*p, z, T, E, 11);
  std::vector<int> pairs(16, 0);
  for (int t = 0; t < T; ++t) {
    const int x = std::min(a.at(t, 0), a.at(t, 1)), y = std::max(a.at(t, 0), a.at(t, 1));
    REQUIRE(x != y);
    ++pairs[static_cast<std::size_t>(x * 4 + y)];
  }
  for (int x = 0; x < E; ++x)
    for (int y = x + 1; y < E; ++y) {
      CAPTURE(x, y);
      CHECK(std::abs(pairs[static_cast<std::size_t>(x * 4 + y)] - T / 6) < 200);
    }
}
