// The alias table and Zipf weights: exact draws, proportions, bad weights.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "policies/types.hpp"
#include "sim/random.hpp"

using namespace moesim;

TEST_CASE("Zipf weights by hand", "[random]") {
  const auto w = zipf_weights(3, 1.0);
  CHECK(w == std::vector<double>{1.0, 0.5, 1.0 / 3.0});
  CHECK(zipf_weights(2, 0.0) == std::vector<double>{1.0, 1.0});
}

TEST_CASE("alias table draws in proportion to the weights", "[random]") {
  AliasTable t(std::vector<double>{1, 2, 3, 4, 0});
  Rng rng(11);
  std::vector<double> count(5, 0.0);
  const int n = 400000;
  for (int i = 0; i < n; ++i) ++count[t.sample(rng)];
  CHECK(count[4] == 0.0);  // zero weight: never drawn
  for (int i = 0; i < 4; ++i) CHECK(count[i] / n == Approx((i + 1) / 10.0).margin(0.003));
  // Extreme ends of the 64-bit draw stay inside the table.
  CHECK(t.sample(std::uint64_t{0}) < 5);
  CHECK(t.sample(~std::uint64_t{0}) < 4);
}

TEST_CASE("alias table rejects bad weights", "[random]") {
  CHECK_THROWS_AS(AliasTable(std::vector<double>{}), Error);
  CHECK_THROWS_AS(AliasTable(std::vector<double>{0, 0}), Error);
  CHECK_THROWS_AS(AliasTable(std::vector<double>{1, -1}), Error);
  CHECK_THROWS_AS(AliasTable(std::vector<double>{1, NAN}), Error);
}
