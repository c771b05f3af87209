#include <catch2/catch.hpp>

#include <cmath>

#include "policies/fast_math.hpp"

TEST_CASE("exp_fast stays within 2e-7 relative error of double exp on [-87, 88]") {
  double worst = 0.0;
  for (float x = -87.0f; x < 88.0f; x += 0.0071f) {
    const double want = std::exp(static_cast<double>(x));
    worst = std::fmax(worst, std::fabs(moesim::exp_fast(x) - want) / want);
  }
  REQUIRE(worst < 2e-7);
  REQUIRE(moesim::exp_fast(0.0f) == 1.0f);  // exact at 0: r = 0, n = 0
}

TEST_CASE("exp_fast saturates instead of overflowing to inf or NaN") {
  REQUIRE(std::isfinite(moesim::exp_fast(1e6f)));
  REQUIRE(moesim::exp_fast(-1e6f) >= 0.0f);
  REQUIRE(moesim::exp_fast(-1e6f) < 1e-37f);
}
