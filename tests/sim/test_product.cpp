// gate_logits: bitwise the fixed fma chain of its header, written here as a plain
// scalar loop, for shapes that exercise every tile and mask; and close to the
// float64 product.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "policies/rng.hpp"
#include "sim/product.hpp"

using namespace moesim;

namespace {

std::vector<float> draw(Rng& rng, std::size_t n) {
  std::vector<float> v(n);
  for (auto& x : v) x = static_cast<float>(rng.uniform(-2.0, 2.0));
  return v;
}

}  // namespace

TEST_CASE("gate_logits is bitwise the in-order fma chain from +0 for every shape", "[product]") {
  Rng rng(11);
  std::vector<float> scratch;
  for (int E : {1, 5, 16, 17, 48, 63, 64, 65, 100, 130})
    for (int d : {1, 3, 16, 32, 33})
      for (int T : {1, 5, 6, 7, 13}) {
        const auto x = draw(rng, static_cast<std::size_t>(T) * d);
        const auto w = draw(rng, static_cast<std::size_t>(E) * d);
        // Sentinels one past the end: the masked tail must not write beyond Z.
        std::vector<float> z(static_cast<std::size_t>(T) * E + 1, 7.0f);
        gate_logits(x.data(), T, d, w.data(), E, z.data(), scratch);
        CHECK(z.back() == 7.0f);
        int mismatches = 0;
        for (int t = 0; t < T; ++t)
          for (int e = 0; e < E; ++e) {
            float acc = 0.0f;
            for (int q = 0; q < d; ++q)
              acc = std::fma(x[static_cast<std::size_t>(t) * d + q], w[static_cast<std::size_t>(e) * d + q], acc);
            const float got = z[static_cast<std::size_t>(t) * E + e];
            mismatches += std::memcmp(&acc, &got, sizeof acc) != 0;
          }
        INFO("E = " << E << ", d = " << d << ", T = " << T);
        CHECK(mismatches == 0);
      }
}

TEST_CASE("gate_logits agrees with the float64 product to float rounding", "[product]") {
  Rng rng(12);
  const int T = 37, d = 32, E = 64;
  const auto x = draw(rng, static_cast<std::size_t>(T) * d);
  const auto w = draw(rng, static_cast<std::size_t>(E) * d);
  std::vector<float> z(static_cast<std::size_t>(T) * E), scratch;
  gate_logits(x.data(), T, d, w.data(), E, z.data(), scratch);
  double worst = 0.0;
  for (int t = 0; t < T; ++t)
    for (int e = 0; e < E; ++e) {
      double ref = 0.0, mag = 0.0;
      for (int q = 0; q < d; ++q) {
        const double p = static_cast<double>(x[static_cast<std::size_t>(t) * d + q]) * w[static_cast<std::size_t>(e) * d + q];
        ref += p;
        mag += std::abs(p);
      }
      // d roundings of at most half an ulp of the running magnitude each.
      worst = std::max(worst, std::abs(z[static_cast<std::size_t>(t) * E + e] - ref) / (mag * d * 0x1.0p-24));
    }
  CHECK(worst <= 1.0);
}
