// Bulk normals and the alias table: moments, exact draws, determinism.
#include <catch2/catch.hpp>

#include <cmath>
#include <vector>

#include "policies/types.hpp"
#include "sim/random.hpp"

using namespace moesim;

TEST_CASE("bulk normals have the moments and tails of N(0,1)", "[random]") {
  NormalFiller f;
  Rng rng(7);
  const std::size_t n = 1 << 20;
  std::vector<float> x(n);
  f.fill(rng, x.data(), n);
  double m1 = 0, m2 = 0, m3 = 0, m4 = 0, in1 = 0, in2 = 0;
  for (float v : x) {
    const double d = v;
    m1 += d, m2 += d * d, m3 += d * d * d, m4 += d * d * d * d;
    in1 += std::abs(d) < 1.0;
    in2 += std::abs(d) < 2.0;
  }
  const double N = static_cast<double>(n);
  // Standard errors at n = 2^20: mean 0.001, variance 0.0014, kurtosis 0.0048.
  CHECK(std::abs(m1 / N) < 0.005);
  CHECK(m2 / N == Approx(1.0).margin(0.007));
  CHECK(std::abs(m3 / N) < 0.02);
  CHECK(m4 / N == Approx(3.0).margin(0.03));
  CHECK(in1 / N == Approx(0.682689).margin(0.002));
  CHECK(in2 / N == Approx(0.954500).margin(0.001));
}

TEST_CASE("bulk normals: scale, odd sizes, one draw per call, same seed same numbers", "[random]") {
  NormalFiller f;
  Rng a(3), b(3), c(3);
  std::vector<float> x(7), y(7), z(7);
  f.fill(a, x.data(), 7);
  f.fill(b, y.data(), 7, 2.0f);
  CHECK(x != std::vector<float>(7, 0.0f));
  for (int i = 0; i < 7; ++i) CHECK(y[i] == Approx(2.0f * x[i]).epsilon(1e-6));
  c.next_u64();
  CHECK(a == c);  // exactly one draw consumed, whatever n
  Rng d(3);
  f.fill(d, z.data(), 7);
  CHECK(z == x);
}

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
