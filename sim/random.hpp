#pragma once
// Fast bulk distributions on top of moesim::Rng: the simulator draws millions of
// variates per second, so each comes from one 64-bit value with no branch on it.
// Same seed and same sizes give the same numbers.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "policies/noise.hpp"
#include "policies/rng.hpp"

namespace moesim {

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
    // A mask, not a branch: the coin is a fair guess for the predictor.
    const std::uint32_t keep = 0u - static_cast<std::uint32_t>(static_cast<std::uint64_t>(m) < threshold_[bin]);
    return (static_cast<std::uint32_t>(bin) & keep) | (alias_[bin] & ~keep);
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
