// Bulk normals and Gumbels: moments, tails, one draw per call, determinism.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "policies/noise.hpp"

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

TEST_CASE("bulk Gumbels have the mean, variance and CDF of Gumbel(0, 1)", "[random]") {
  Rng rng(9);
  const std::size_t n = (1 << 20) + 1;  // odd: the last value takes the extra draw
  std::vector<float> x(n);
  fill_gumbel(rng, x.data(), n);
  double m1 = 0, m2 = 0, below0 = 0, below1 = 0, lo = 1e9, hi = -1e9;
  for (float v : x) {
    REQUIRE(std::isfinite(v));
    m1 += v, m2 += static_cast<double>(v) * v;
    below0 += v < 0.0f;
    below1 += v < 1.0f;
    lo = std::fmin(lo, v), hi = std::fmax(hi, v);
  }
  const double N = static_cast<double>(n), mean = m1 / N, var = m2 / N - mean * mean;
  // Mean = Euler's gamma, variance = pi^2/6; standard errors at 2^20: 0.0013 and 0.0029.
  CHECK(mean == Approx(0.5772157).margin(0.007));
  CHECK(var == Approx(1.6449341).margin(0.015));
  // CDF exp(-exp(-x)): sd of a proportion at 2^20 is below 0.0005.
  CHECK(below0 / N == Approx(std::exp(-1.0)).margin(0.003));
  CHECK(below1 / N == Approx(std::exp(-std::exp(-1.0))).margin(0.003));
  // u in [2^-25, 1 - 2^-25]: -ln(-ln u) in [-ln(25 ln 2), -ln(2^-25)] = [-2.85, 17.33].
  CHECK(lo >= -2.86);
  CHECK(hi <= 17.34);
}

TEST_CASE("bulk Gumbels: scale, one draw per call, same seed same numbers", "[random]") {
  Rng a(5), b(5), c(5), d(5);
  std::vector<float> x(9), y(9), z(9);
  fill_gumbel(a, x.data(), 9);
  fill_gumbel(b, y.data(), 9, 0.5f);
  for (int i = 0; i < 9; ++i) CHECK(y[i] == Approx(0.5f * x[i]).epsilon(1e-6));
  c.next_u64();
  CHECK(a == c);
  fill_gumbel(d, z.data(), 9);
  CHECK(z == x);
}

TEST_CASE("fill_rows equals fill row by row, bitwise, for even and odd widths", "[random]") {
  NormalFiller rows, one;
  for (int width : {1, 2, 4, 7, 8, 16, 24, 31, 32, 33, 34, 64, 256}) {  // up to 32: one sequence for the block
    for (int n : {1, 5, 16}) {
      CAPTURE(width, n);
      const std::uint64_t key = 0x1234567ull * static_cast<std::uint64_t>(width) + 99, first = 4000;
      const std::uint64_t per_row = static_cast<std::uint64_t>(width + 1) / 2;
      std::vector<float> got(static_cast<std::size_t>(n) * width), want(got.size());
      rows.fill_rows(key, first, got.data(), n, width, 0.7f);
      for (int r = 0; r < n; ++r)
        one.fill(key, first + static_cast<std::uint64_t>(r) * per_row, want.data() + static_cast<std::size_t>(r) * width,
                 static_cast<std::size_t>(width), 0.7f);
      for (std::size_t i = 0; i < got.size(); ++i)
        REQUIRE(std::bit_cast<std::uint32_t>(got[i]) == std::bit_cast<std::uint32_t>(want[i]));
    }
  }
}

TEST_CASE("fill_split writes the cosines and sines of a slice of fill's values where fill puts them", "[random]") {
  NormalFiller whole;
  for (std::size_t n : {2u, 10u, 64u, 1000u}) {
    CAPTURE(n);
    const std::uint64_t key = 0xabcdefull + n;
    const std::size_t m = n / 2;
    std::vector<float> want(n);
    whole.fill(key, 0, want.data(), n, 0.3f);
    // Values [f, f + len) of the sequence: cosines at [f, f + len), sines at m + f.
    for (std::size_t f : {std::size_t{0}, m / 3, m - 1}) {
      const std::size_t len = m - f;
      std::vector<float> c(len), s(len);
      NormalFiller::fill_split(key, f, c.data(), s.data(), len, 0.3f);
      for (std::size_t i = 0; i < len; ++i) {
        REQUIRE(std::bit_cast<std::uint32_t>(c[i]) == std::bit_cast<std::uint32_t>(want[f + i]));
        REQUIRE(std::bit_cast<std::uint32_t>(s[i]) == std::bit_cast<std::uint32_t>(want[m + f + i]));
      }
    }
  }
}
