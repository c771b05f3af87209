#pragma once
// Bulk noise for the policies and the simulator: millions of variates per batch,
// each from one 64-bit value of a SplitMix64 sequence keyed by a single draw of
// the caller's Rng (Steele et al. 2014). Every element is independent of the
// previous one, so the loops vectorise where xoshiro's serial state would cost
// most of the time. Same seed and same sizes give the same numbers; they are not
// bitwise those of Rng::normal() / Rng::gumbel().
#include <cstddef>
#include <cstdint>
#include <vector>

#include "policies/rng.hpp"

namespace moesim {

// Standard normals by Box-Muller: each 64-bit value gives u1 (high 32 bits) and
// the angle (low 32 bits), hence r*cos(th) and r*sin(th), r = sqrt(-2 ln u1).
// ln, sin and cos are our own polynomials (relative error below 1e-6) in one
// branch-free loop; the quadrant of the angle comes from its top bits, so there
// is no range reduction. Floats: tails reach about 6.7 sigma, enough for noise.
class NormalFiller {
 public:
  // out[0..n) = scale * N(0, 1); consumes one draw of rng, which keys the
  // ceil(n/2) 64-bit values.
  void fill(Rng& rng, float* out, std::size_t n, float scale = 1.0f) { fill(rng.next_u64(), 0, out, n, scale); }
  // The same from values first .. first + ceil(n/2) of the sequence keyed by
  // `key`: a batch drawn row by row (row t from t * ceil(E/2)) stays in cache.
  void fill(std::uint64_t key, std::uint64_t first, float* out, std::size_t n, float scale = 1.0f);
  // `rows` rows of `width` at once, row r as fill(key, first + r * ceil(width/2),
  // out + r * width, width, scale) writes it: for an even width the sines go
  // straight to their half of the row, with no copy and no call per row.
  void fill_rows(std::uint64_t key, std::uint64_t first, float* out, int rows, int width, float scale = 1.0f);
  // Values first .. first + pairs of the sequence keyed by `key`, value i giving
  // cos_out[i] and sin_out[i]: fill of an even n is fill_split(.., out, out + n/2, n/2).
  static void fill_split(std::uint64_t key, std::uint64_t first, float* cos_out, float* sin_out, std::size_t pairs,
                         float scale = 1.0f);

 private:
  std::vector<float> sin_, cos_;
};

// out[0..n) = scale * Gumbel(0, 1) = -scale * ln(-ln u): each 64-bit value gives
// two uniforms of 24 bits, u in [2^-25, 1 - 2^-25] (never 0 or 1, so both logs
// are finite; tails reach -2.9 and 17.3). Consumes one draw of rng.
void fill_gumbel(Rng& rng, float* out, std::size_t n, float scale = 1.0f);
// The same from values first .. first + ceil(n/2) of the sequence keyed by `key`.
void fill_gumbel(std::uint64_t key, std::uint64_t first, float* out, std::size_t n, float scale = 1.0f);

}  // namespace moesim
