#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include "policies/fast_math.hpp"
#include "policies/rng.hpp"

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

TEST_CASE("exp_fast and exp_fast16 carry a NaN through, of either sign, so callers downstream still see it") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (float v : {nan, -nan}) {
    REQUIRE(std::isnan(moesim::exp_fast(v)));
    moesim::f32x16 x;
    for (int l = 0; l < 16; ++l) x[l] = l % 2 ? v : 1.0f;
    const moesim::f32x16 y = moesim::exp_fast16(x), c = moesim::exp_fast16_capped(x - 2.0f);
    for (int l = 0; l < 16; ++l) {
      REQUIRE(std::isnan(y[l]) == (l % 2 == 1));
      REQUIRE(std::isnan(c[l]) == (l % 2 == 1));
    }
  }
}

TEST_CASE("ln_fast stays within 1e-6 absolute-or-relative error of double log over the positive normal floats") {
  double worst = 0.0;
  // Every binade from 2^-126 to 2^127, 4096 mantissas each (exact powers of two included).
  for (int e = -126; e <= 127; ++e)
    for (int j = 0; j < 4096; ++j) {
      const float x = std::ldexp(1.0f + static_cast<float>(j) / 4096.0f, e);
      if (!std::isfinite(x)) continue;
      const double want = std::log(static_cast<double>(x));
      worst = std::fmax(worst, std::fabs(moesim::ln_fast(x) - want) / std::fmax(1.0, std::fabs(want)));
    }
  REQUIRE(worst < 1e-6);
  REQUIRE(moesim::ln_fast(1.0f) == 0.0f);  // e = 0, f = 0
}

TEST_CASE("exp_fast16 equals exp_fast lane by lane, bitwise, saturation, subnormal results and NaN included") {
  std::vector<float> x;
  for (float v = -100.0f; v < 100.0f; v += 0.0137f) x.push_back(v);
  for (float v : {0.0f, -0.0f, 1e6f, -1e6f, 88.7f, -87.5f, std::numeric_limits<float>::infinity(),
                  -std::numeric_limits<float>::infinity(), std::numeric_limits<float>::quiet_NaN(),
                  -std::numeric_limits<float>::quiet_NaN()})
    x.push_back(v);
  // Every float where the scale 2^n is at its ends (n = -126, results subnormal;
  // n = 127, overflow): the vector form scales by vscalefps, the scalar one
  // multiplies by built exponent bits.
  for (float v = -87.5f; v <= -86.5f; v = std::nextafter(v, 0.0f)) x.push_back(v);
  for (float v = 87.5f; v <= 88.5f; v = std::nextafter(v, 100.0f)) x.push_back(v);
  while (x.size() % 16) x.push_back(0.5f);
  for (std::size_t i = 0; i < x.size(); i += 16) {
    moesim::f32x16 v;
    for (int l = 0; l < 16; ++l) v[l] = x[i + static_cast<std::size_t>(l)];
    const moesim::f32x16 y = moesim::exp_fast16(v);
    for (int l = 0; l < 16; ++l) REQUIRE(std::bit_cast<std::uint32_t>(y[l]) ==
                                         std::bit_cast<std::uint32_t>(moesim::exp_fast(v[l])));
  }
}

TEST_CASE("std::exp of zero is exactly one, in float and double (compute_weights skips that call)") {
  volatile float zf = 0.0f;  // volatile: libm's exp, not a constant the compiler folds
  volatile double zd = 0.0;
  REQUIRE(std::exp(zf) == 1.0f);
  REQUIRE(std::exp(-zf) == 1.0f);
  REQUIRE(std::exp(zd) == 1.0);
}

TEST_CASE("exp_fast16_capped equals exp_fast16 bitwise for every x <= 88: underflow, -inf and NaN included") {
  std::vector<float> x;
  for (float v = -100.0f; v <= 88.0f; v += 0.0137f) x.push_back(v);
  const float inf = std::numeric_limits<float>::infinity();
  for (float v : {0.0f, -0.0f, -1e6f, 88.0f, 87.99f, -87.0f, -87.2f, -87.33655f, -87.34f, -87.5f, -inf,
                  std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::denorm_min()})
    x.push_back(v);
  while (x.size() % 16) x.push_back(-0.5f);
  for (std::size_t i = 0; i < x.size(); i += 16) {
    moesim::f32x16 v;
    for (int l = 0; l < 16; ++l) v[l] = x[i + static_cast<std::size_t>(l)];
    const moesim::f32x16 a = moesim::exp_fast16_capped(v), b = moesim::exp_fast16(v);
    for (int l = 0; l < 16; ++l) REQUIRE(std::bit_cast<std::uint32_t>(a[l]) == std::bit_cast<std::uint32_t>(b[l]));
  }
}

TEST_CASE("all_finite finds one NaN or infinity anywhere in a row, in the 16-lane body or the tail") {
  const float bad[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                       -std::numeric_limits<float>::infinity()};
  for (int n : {1, 7, 16, 33, 64}) {
    std::vector<float> z(static_cast<std::size_t>(n), -3.0e38f);
    z[0] = std::numeric_limits<float>::max();
    CHECK(moesim::all_finite(z.data(), n));
    for (int at = 0; at < n; ++at)
      for (float b : bad) {
        const float keep = z[static_cast<std::size_t>(at)];
        z[static_cast<std::size_t>(at)] = b;
        CHECK_FALSE(moesim::all_finite(z.data(), n));
        z[static_cast<std::size_t>(at)] = keep;
      }
  }
}

TEST_CASE("row_max and row_sum_exp equal a plain loop (max exactly, the sum within 2e-7 of double exp)") {
  moesim::Rng rng(3);
  for (int n : {1, 5, 16, 17, 33, 64, 100, 256}) {
    std::vector<float> z(static_cast<std::size_t>(n));
    for (auto& v : z) v = static_cast<float>(8.0 * rng.normal());
    float m = z[0];
    for (float v : z) m = std::max(m, v);
    CHECK(moesim::row_max(z.data(), n) == m);
    double want = 0.0;
    for (float v : z) want += std::exp(static_cast<double>(v) - m);
    CHECK(std::fabs(moesim::row_sum_exp(z.data(), n, m) - want) <= 2e-7 * want);
    CHECK(std::fabs(moesim::row_sum_exp_padded(z.data(), n, m) - want) <= 2e-7 * want);
    // Padding adds exact zeros: on whole 16-lane rows the two sums are the same bits.
    if (n % 16 == 0) CHECK(moesim::row_sum_exp_padded(z.data(), n, m) == moesim::row_sum_exp(z.data(), n, m));
  }
}

TEST_CASE("row_sum_exp_into returns row_sum_exp's sum bitwise and writes exactly exp_fast(z - m) for each term") {
  moesim::Rng rng(13);
  for (int n : {1, 5, 15, 16, 17, 33, 64, 100, 255, 256}) {
    std::vector<float> z(static_cast<std::size_t>(n)), out(static_cast<std::size_t>(n), -1.0f);
    for (auto& v : z) v = static_cast<float>(20.0 * rng.normal());
    if (n > 3) z[2] = -std::numeric_limits<float>::infinity();  // a masked key: exp 0
    const float m = moesim::row_max(z.data(), n);
    INFO("n = " << n);
    const double s = moesim::row_sum_exp_into(z.data(), n, m, out.data());
    CHECK(std::bit_cast<std::uint64_t>(s) == std::bit_cast<std::uint64_t>(moesim::row_sum_exp(z.data(), n, m)));
    for (int e = 0; e < n; ++e)
      CHECK(std::bit_cast<std::uint32_t>(out[static_cast<std::size_t>(e)]) ==
            std::bit_cast<std::uint32_t>(moesim::exp_fast(z[static_cast<std::size_t>(e)] - m)));
  }
}

TEST_CASE("dot_f is one fused multiply-add per term in its documented order, bitwise, for every length 0..300") {
  // The order written out one scalar std::fma at a time: lane l sums the body's
  // e = l mod 16, lanes folded 0..15, then the tail. Before the explicit fmas
  // GCC rounded some tail products before adding them (mul, then add), so
  // lengths with a tail of 8 or more failed here.
  moesim::Rng rng(11);
  std::vector<float> a(300), b(300);
  for (auto& v : a) v = static_cast<float>(3.0 * rng.normal());
  for (auto& v : b) v = static_cast<float>(3.0 * rng.normal());
  for (int n = 0; n <= 300; ++n) {
    float lane[16] = {};
    const int body = n - n % 16;
    for (int e = 0; e < body; ++e) lane[e % 16] = std::fma(a[e], b[e], lane[e % 16]);
    float want = 0.0f;
    for (float l : lane) want += l;
    for (int e = body; e < n; ++e) want = std::fma(a[e], b[e], want);
    const float got = moesim::dot_f(a.data(), b.data(), n);
    INFO("n = " << n);
    CHECK(std::bit_cast<std::uint32_t>(got) == std::bit_cast<std::uint32_t>(want));
  }
}

TEST_CASE("dot_fd adds each term into 16 double lanes folded as documented, bitwise, with and without the weight, "
          "for every length 0..300") {
  moesim::Rng rng(12);
  std::vector<float> a(300), w(300), b(300);
  for (auto* v : {&a, &w, &b})
    for (auto& x : *v) x = static_cast<float>(3.0 * rng.normal());
  for (const float* wp : {static_cast<const float*>(nullptr), static_cast<const float*>(w.data())})
    for (int n = 0; n <= 300; ++n) {
      double lane[16] = {};
      const int body = n - n % 16;
      auto term = [&](int j) { return static_cast<double>(wp ? a[j] * wp[j] : a[j]); };
      for (int j = 0; j < body; ++j) lane[j % 16] = std::fma(term(j), static_cast<double>(b[j]), lane[j % 16]);
      double v[8];
      for (int l = 0; l < 8; ++l) v[l] = lane[l] + lane[l + 8];
      const double q[4] = {v[0] + v[4], v[1] + v[5], v[2] + v[6], v[3] + v[7]};
      double want = (q[0] + q[2]) + (q[1] + q[3]);
      for (int j = body; j < n; ++j) want = std::fma(term(j), static_cast<double>(b[j]), want);
      INFO("n = " << n << (wp ? ", weighted" : ""));
      CHECK(std::bit_cast<std::uint64_t>(moesim::dot_fd(a.data(), wp, b.data(), n)) ==
            std::bit_cast<std::uint64_t>(want));
    }
}

TEST_CASE("exp_neg_d8 stays within 1e-15 relative error of std::exp on [-700, 0], and is 0 below -708") {
  double worst = 0.0;
  for (double x = -700.0; x <= 0.0; x += 0.01237) {
    moesim::f64x8 v;
    for (int l = 0; l < 8; ++l) v[l] = x * (1.0 - 0.001 * l);
    const moesim::f64x8 y = moesim::exp_neg_d8(v);
    for (int l = 0; l < 8; ++l) worst = std::fmax(worst, std::fabs(y[l] - std::exp(v[l])) / std::exp(v[l]));
  }
  CHECK(worst < 1e-15);
  moesim::f64x8 zero{}, low{};
  for (int l = 0; l < 8; ++l) low[l] = -709.0 - l;
  CHECK(moesim::exp_neg_d8(zero)[3] == 1.0);
  CHECK(moesim::exp_neg_d8(low)[0] == 0.0);
}

TEST_CASE("kExpfTable holds 2^(i/32) less i << 47, the table glibc's expf reads") {
  for (int i = 0; i < 32; ++i) {
    const auto want = static_cast<double>(std::exp2(static_cast<long double>(i) / 32.0L));
    REQUIRE(moesim::kExpfTable[i] + (static_cast<std::uint64_t>(i) << 47) == std::bit_cast<std::uint64_t>(want));
  }
}

TEST_CASE("expf16 equals std::exp bitwise on every 61st float, and at glibc's special-path edges") {
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> edges = {0.0f, -0.0f, 88.0f, -88.0f, 87.99999f, -87.99999f, 88.72283f, 88.72284f, -103.27893f,
                              -103.97208f, -103.98f, -87.33655f, inf, -inf, std::numeric_limits<float>::quiet_NaN(),
                              std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::denorm_min(),
                              1e-30f, -1e-30f, 0.5f * std::log(2.0f) / 32};
  while (edges.size() % 16) edges.push_back(-1.0f);
  std::uint64_t checked = 0, wrong = 0;
  float first_wrong = 0.0f;
  auto check = [&](const float* x) {
    moesim::f32x16 v;
    std::memcpy(&v, x, sizeof v);
    const moesim::f32x16 y = moesim::expf16(v);
    for (int l = 0; l < 16; ++l, ++checked) {
      const float want = std::exp(v[l]);
      const bool same = std::bit_cast<std::uint32_t>(y[l]) == std::bit_cast<std::uint32_t>(want) ||
                        (std::isnan(want) && std::isnan(y[l]));
      if (!same && wrong++ == 0) first_wrong = v[l];
    }
  };
  for (std::size_t i = 0; i < edges.size(); i += 16) check(edges.data() + i);
  float x[16];
  int n = 0;
  for (std::uint64_t b = 0; b < (1ull << 32); b += 61) {
    x[n++] = std::bit_cast<float>(static_cast<std::uint32_t>(b));
    if (n == 16) check(x), n = 0;
  }
  INFO("first mismatch at x = " << first_wrong);
  REQUIRE(wrong == 0);
  REQUIRE(checked > 70'000'000);
}

TEST_CASE("row_max_sum_exp16 equals row_max and row_sum_exp row by row, bitwise, ties, signed zeros and NaN included, "
          "at any width") {
  moesim::Rng rng(11);
  for (int n : {1, 2, 8, 15, 16, 24, 32, 64, 70, 256}) {
    for (int trial = 0; trial < 20; ++trial) {
      std::vector<float> z(static_cast<std::size_t>(16) * n);
      for (auto& v : z) v = static_cast<float>((trial % 3 == 0 ? 30.0 : 3.0) * rng.normal());
      // Ties across and within lanes, a -0 beside +0 at the front of a row, a NaN in one row.
      if (trial % 4 == 1)
        for (std::size_t i = 0; i < z.size(); ++i) z[i] = static_cast<float>(rng.next_u64() % 3);
      if (trial % 5 == 2) {
        z[0] = -0.0f;
        for (int e = 1; e < n; ++e) z[static_cast<std::size_t>(e)] = e % 2 ? 0.0f : -1.0f;
      }
      if (trial == 7) z[static_cast<std::size_t>(3 * n + 5 % n)] = std::numeric_limits<float>::quiet_NaN();
      float m[16];
      double s[16];
      moesim::row_max_sum_exp16(z.data(), n, m, s);
      for (int r = 0; r < 16; ++r) {
        const float* zr = z.data() + static_cast<std::size_t>(r) * n;
        const float want_m = moesim::row_max(zr, n);
        const double want_s = moesim::row_sum_exp(zr, n, want_m);
        CHECK(std::bit_cast<std::uint32_t>(m[r]) == std::bit_cast<std::uint32_t>(want_m));
        CHECK(std::bit_cast<std::uint64_t>(s[r]) == std::bit_cast<std::uint64_t>(want_s));
      }
    }
  }
}

TEST_CASE("row_sum_exp16 equals row_sum_exp row by row, bitwise, for any given maxima (row max or above) and any "
          "width (a tail past the 16-lane body, or no body)") {
  moesim::Rng rng(12);
  for (int n : {1, 8, 15, 16, 24, 48, 64, 70}) {
    for (int trial = 0; trial < 12; ++trial) {
      std::vector<float> z(static_cast<std::size_t>(16) * n);
      for (auto& v : z) v = static_cast<float>((trial % 2 ? 40.0 : 2.0) * rng.normal());
      float m[16];
      for (int r = 0; r < 16; ++r) {  // the row's max, or a shift above it (down to underflow)
        const float mx = moesim::row_max(z.data() + static_cast<std::size_t>(r) * n, n);
        m[r] = r % 3 == 0 ? mx : mx + static_cast<float>(r) * (trial % 2 ? 9.0f : 0.5f);
      }
      double s[16];
      moesim::row_sum_exp16(z.data(), n, m, s);
      for (int r = 0; r < 16; ++r) {
        const double want = moesim::row_sum_exp(z.data() + static_cast<std::size_t>(r) * n, n, m[r]);
        CHECK(std::bit_cast<std::uint64_t>(s[r]) == std::bit_cast<std::uint64_t>(want));
      }
    }
  }
}
