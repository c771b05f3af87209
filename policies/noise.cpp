#include "policies/noise.hpp"

// Elementwise loops: full 512-bit vectors where the target has them (GCC keeps
// 256 by default); every lane computes the same operations, so the numbers do
// not depend on the width.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif

#include <bit>
#include <cmath>
#include <cstring>

#include "policies/fast_math.hpp"

namespace moesim {

namespace {

// The step G between the keys of consecutive values (SplitMix64's golden gamma).
constexpr std::uint64_t kSequenceStep = 0x9e3779b97f4a7c15ULL;

// One 64-bit value to a pair of standard normals times scale (neg2s2 = -2 scale^2):
// cos and sin of the angle, each times r.
inline void normal_pair(std::uint64_t u, float neg2s2, float& cos_r, float& sin_r) {
  // u1 in (0, 1]: ln never sees 0.
  const float u1 = (static_cast<float>(static_cast<std::uint32_t>(u >> 32)) + 0.5f) * 0x1.0p-32f;
  const float r = std::sqrt(neg2s2 * ln_fast(u1));
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
  cos_r = r * std::bit_cast<float>(xb);
  sin_r = r * std::bit_cast<float>(yb);
}

}  // namespace

void NormalFiller::fill_split(std::uint64_t key, std::uint64_t first, float* cos_out, float* sin_out,
                              std::size_t pairs, float scale) {
  const float neg2s2 = -2.0f * scale * scale;
  // Value i is mix64(key + (first + i) G) (mod 2^64): stepped by adding G, which
  // saves a 64-bit vector multiply (three micro-ops) per eight values.
  std::uint64_t z = key + first * kSequenceStep;
  for (std::size_t i = 0; i < pairs; ++i, z += kSequenceStep) normal_pair(mix64(z), neg2s2, cos_out[i], sin_out[i]);
}

void NormalFiller::fill(std::uint64_t key, std::uint64_t first, float* out, std::size_t n, float scale) {
  if (n == 0) return;
  const std::size_t m = (n + 1) / 2;
  if (n % 2 == 0) {  // the sines fill the second half exactly
    fill_split(key, first, out, out + m, m, scale);
    return;
  }
  sin_.resize(m);
  fill_split(key, first, out, sin_.data(), m, scale);
  std::memcpy(out + m, sin_.data(), sizeof(float) * (n - m));
}

void NormalFiller::fill_rows(std::uint64_t key, std::uint64_t first, float* out, int rows, int width, float scale) {
  const auto per_row = (static_cast<std::size_t>(width) + 1) / 2;
  if (per_row <= 16) {
    // Narrow rows (E = 8: four pairs a row) take too few values for a vector
    // loop each; their values are consecutive across the rows, so the block is
    // one sequence, dealt to the rows' cosine and sine halves afterwards.
    const std::size_t total = per_row * static_cast<std::size_t>(rows);
    cos_.resize(total);
    sin_.resize(total);
    fill_split(key, first, cos_.data(), sin_.data(), total, scale);
    const std::size_t w = static_cast<std::size_t>(width);
    for (std::size_t r = 0; r < static_cast<std::size_t>(rows); ++r) {
      std::memcpy(out + r * w, cos_.data() + r * per_row, sizeof(float) * per_row);
      std::memcpy(out + r * w + per_row, sin_.data() + r * per_row, sizeof(float) * (w - per_row));
    }
    return;
  }
  if (width % 2 != 0) {  // the last sine of each row is dropped: per row, through the buffer
    for (int r = 0; r < rows; ++r)
      fill(key, first + static_cast<std::uint64_t>(r) * per_row, out + static_cast<std::size_t>(r) * width,
           static_cast<std::size_t>(width), scale);
    return;
  }
  const std::size_t m = static_cast<std::size_t>(width) / 2;
  for (int r = 0; r < rows; ++r) {
    float* row = out + static_cast<std::size_t>(r) * width;
    fill_split(key, first + static_cast<std::uint64_t>(r) * m, row, row + m, m, scale);
  }
}

namespace {

float gumbel_of(std::uint32_t bits24, float neg_scale) {
  const float u = (static_cast<float>(bits24) + 0.5f) * 0x1.0p-24f;
  return neg_scale * ln_fast(-ln_fast(u));
}

}  // namespace

void fill_gumbel(Rng& rng, float* out, std::size_t n, float scale) { fill_gumbel(rng.next_u64(), 0, out, n, scale); }

void fill_gumbel(std::uint64_t key, std::uint64_t first, float* out, std::size_t n, float scale) {
  if (n == 0) return;
  const std::size_t h = n / 2;
  const float ns = -scale;
  // High and low halves of value i feed out[i] and out[h + i]: two plain
  // streams, no interleaving, so the loop stays a straight vector loop.
  std::uint64_t z = key + first * kSequenceStep;
  for (std::size_t i = 0; i < h; ++i, z += kSequenceStep) {
    const std::uint64_t u = mix64(z);
    out[i] = gumbel_of(static_cast<std::uint32_t>(u >> 40), ns);
    out[h + i] = gumbel_of(static_cast<std::uint32_t>(u) >> 8, ns);
  }
  if (n % 2) out[n - 1] = gumbel_of(static_cast<std::uint32_t>(mix64(key + (first + h) * kSequenceStep) >> 40), ns);
}

}  // namespace moesim
