#include "sim/random.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <string>

#include "policies/types.hpp"

namespace moesim {

void NormalFiller::fill(Rng& rng, float* out, std::size_t n, float scale) {
  if (n == 0) return;
  const std::size_t m = (n + 1) / 2;
  sin_.resize(m);
  // One draw keys a SplitMix64 sequence (Steele et al. 2014) for the batch: each
  // element is independent of the previous one, so the loop vectorises, where
  // xoshiro's serial state would cost most of the time.
  const std::uint64_t key = rng.next_u64();
  float* cos_out = out;
  float* sin_out = sin_.data();
  const float neg2s2 = -2.0f * scale * scale;
  for (std::size_t i = 0; i < m; ++i) {
    const std::uint64_t u = mix64(key + i * 0x9e3779b97f4a7c15ULL);
    // u1 in (0, 1]: ln never sees 0.
    const float u1 = (static_cast<float>(static_cast<std::uint32_t>(u >> 32)) + 0.5f) * 0x1.0p-32f;
    // ln u1 = e ln 2 + ln mant, mant in [sqrt(1/2), sqrt(2)), ln mant = 2 atanh(f / (2 + f)).
    const std::uint32_t ix = std::bit_cast<std::uint32_t>(u1) + (0x3f800000u - 0x3f3504f3u);
    const float e = static_cast<float>(static_cast<int>(ix >> 23) - 127);
    const float mant = std::bit_cast<float>((ix & 0x007fffffu) + 0x3f3504f3u);
    const float f = mant - 1.0f;
    const float sq = f / (2.0f + f);
    const float z = sq * sq;
    const float ln = e * 0.693147180559945f +
                     2.0f * sq * (1.0f + z * (1.0f / 3 + z * (1.0f / 5 + z * (1.0f / 7 + z * (1.0f / 9)))));
    const float r = std::sqrt(neg2s2 * ln);
    // Angle: a quarter turn q from the top bits, phi in [-pi/4, pi/4) from the rest.
    const std::uint32_t tq = static_cast<std::uint32_t>(u) + 0x20000000u;
    const std::uint32_t q = tq >> 30;
    const float phi = static_cast<float>(static_cast<std::int32_t>(tq & 0x3fffffffu) - 0x20000000) *
                      (6.28318530717958647692f * 0x1.0p-32f);
    const float p2 = phi * phi;
    const float s = phi * (1.0f + p2 * (-1.0f / 6 + p2 * (1.0f / 120 + p2 * (-1.0f / 5040 + p2 * (1.0f / 362880)))));
    const float c = 1.0f + p2 * (-0.5f + p2 * (1.0f / 24 + p2 * (-1.0f / 720 + p2 * (1.0f / 40320))));
    // (cos, sin) of q*pi/2 + phi: swap for odd q, then sign bits; bit blends keep
    // the loop free of branches.
    const std::uint32_t swap = 0u - (q & 1u);
    const std::uint32_t cb = std::bit_cast<std::uint32_t>(c), sb = std::bit_cast<std::uint32_t>(s);
    const std::uint32_t xb = ((cb & ~swap) | (sb & swap)) ^ (((q + 1u) & 2u) << 30);
    const std::uint32_t yb = ((sb & ~swap) | (cb & swap)) ^ ((q & 2u) << 30);
    cos_out[i] = r * std::bit_cast<float>(xb);
    sin_out[i] = r * std::bit_cast<float>(yb);
  }
  std::memcpy(out + m, sin_out, sizeof(float) * (n - m));
}

void AliasTable::build(const std::vector<double>& w) {
  const std::size_t n = w.size();
  if (n == 0 || n > 0xffffffffu) throw Error("alias table: need between 1 and 2^32-1 weights");
  double sum = 0.0;
  for (double x : w) {
    if (!(x >= 0.0) || !std::isfinite(x)) throw Error("alias table: weights must be finite and >= 0");
    sum += x;
  }
  if (!(sum > 0.0)) throw Error("alias table: weights sum to zero");
  threshold_.assign(n, 0);
  alias_.assign(n, 0);
  scaled_.resize(n);
  small_.clear();
  large_.clear();
  for (std::size_t i = 0; i < n; ++i) {
    scaled_[i] = w[i] * static_cast<double>(n) / sum;
    (scaled_[i] < 1.0 ? small_ : large_).push_back(static_cast<std::uint32_t>(i));
  }
  auto set = [&](std::uint32_t i, double p, std::uint32_t a) {
    alias_[i] = a;
    threshold_[i] = p >= 1.0 ? ~std::uint64_t{0} : static_cast<std::uint64_t>(std::ldexp(p, 64));
  };
  while (!small_.empty() && !large_.empty()) {
    const auto s = small_.back();
    small_.pop_back();
    const auto l = large_.back();
    set(s, scaled_[s], l);
    scaled_[l] = (scaled_[l] + scaled_[s]) - 1.0;
    if (scaled_[l] < 1.0) {
      large_.pop_back();
      small_.push_back(l);
    }
  }
  // Leftovers are full bins up to rounding: they alias to themselves.
  for (auto i : large_) set(i, 1.0, i);
  for (auto i : small_) set(i, 1.0, i);
}

std::vector<double> zipf_weights(int n, double s) {
  std::vector<double> w(static_cast<std::size_t>(n));
  for (int r = 0; r < n; ++r) w[r] = std::pow(static_cast<double>(r + 1), -s);
  return w;
}

}  // namespace moesim
