#pragma once
// Fast bulk distributions on top of moesim::Rng: the simulator draws millions of
// variates per second, so each comes from one 64-bit value with no branch on it.
// Same seed and same sizes give the same numbers.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "policies/rng.hpp"

namespace moesim {

// Standard normals by Box-Muller: each 64-bit value gives u1 (high 32 bits) and
// the angle (low 32 bits), hence r*cos(th) and r*sin(th), r = sqrt(-2 ln u1).
// ln, sin and cos are our own polynomials (relative error below 1e-6), in one
// branch-free loop the compiler vectorises; the quadrant of the angle comes from
// its top bits, so there is no range reduction. Floats: tails reach about 6.7
// sigma, enough for noise. Not bitwise equal to Rng::normal().
class NormalFiller {
 public:
  // out[0..n) = scale * N(0, 1); consumes one draw of rng, which keys a SplitMix64
  // sequence supplying the ceil(n/2) 64-bit values.
  void fill(Rng& rng, float* out, std::size_t n, float scale = 1.0f);

 private:
  std::vector<float> sin_;
};

// Walker's alias method (Vose's construction): O(n) build, O(1) draw from one
// 64-bit value (its product with n gives the bin and, in the low word, the coin).
class AliasTable {
 public:
  AliasTable() = default;
  // weights: non-negative, finite, positive sum (throws Error otherwise).
  explicit AliasTable(const std::vector<double>& weights) { build(weights); }
  void build(const std::vector<double>& weights);

  std::size_t size() const { return alias_.size(); }
  std::uint32_t sample(std::uint64_t u) const {
    const __uint128_t m = static_cast<__uint128_t>(u) * alias_.size();
    const auto bin = static_cast<std::size_t>(m >> 64);
    return static_cast<std::uint64_t>(m) < threshold_[bin] ? static_cast<std::uint32_t>(bin) : alias_[bin];
  }
  std::uint32_t sample(Rng& rng) const { return sample(rng.next_u64()); }

 private:
  std::vector<std::uint64_t> threshold_;  // keep the bin when the coin is below this
  std::vector<std::uint32_t> alias_;
  std::vector<double> scaled_;
  std::vector<std::uint32_t> small_, large_;
};

// Zipf weights w_r = (r + 1)^-s for r in [0, n), unnormalised.
std::vector<double> zipf_weights(int n, double s);

}  // namespace moesim
