#pragma once
// Deterministic randomness owned by moesim: the generator and every distribution
// are our own code, so the same seed gives the same numbers on every platform
// and standard library (std:: distributions differ between implementations).
#include <cmath>
#include <cstdint>
#include <string_view>

#include "common/hash.hpp"

namespace moesim {

// SplitMix64 finaliser: a bijective 64-bit mixer (Steele et al. 2014).
constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// Child seed derived by name: adding a new named stream never shifts the others.
constexpr std::uint64_t derive_seed(std::uint64_t parent, std::string_view name) noexcept {
  return mix64(parent ^ mix64(fnv1a(name)));
}
constexpr std::uint64_t derive_seed(std::uint64_t parent, std::uint64_t index) noexcept {
  return mix64(parent ^ mix64(index + 0x632be59bd9b4e019ULL));
}

// Uniform double in [0, 1) from the top 53 bits.
constexpr double to_unit(std::uint64_t x) noexcept {
  return static_cast<double>(x >> 11) * 0x1.0p-53;
}

// xoshiro256** (Blackman & Vigna), seeded through SplitMix64.
class Rng {
 public:
  explicit Rng(std::uint64_t seed = 0) noexcept { reseed(seed); }

  void reseed(std::uint64_t seed) noexcept {
    std::uint64_t z = seed;
    for (auto& w : s_) {
      z += 0x9e3779b97f4a7c15ULL;
      w = mix64(z - 0x9e3779b97f4a7c15ULL);
    }
    has_spare_ = false;
    spare_ = 0.0;
  }

  std::uint64_t next_u64() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }

  double uniform() noexcept { return to_unit(next_u64()); }
  double uniform(double lo, double hi) noexcept { return lo + (hi - lo) * uniform(); }

  // Unbiased integer in [0, n) (Lemire's multiply-shift with rejection).
  std::uint64_t below(std::uint64_t n) noexcept {
    if (n <= 1) return 0;
    __uint128_t m = static_cast<__uint128_t>(next_u64()) * n;
    auto lo = static_cast<std::uint64_t>(m);
    if (lo < n) {
      const std::uint64_t threshold = (0 - n) % n;
      while (lo < threshold) {
        m = static_cast<__uint128_t>(next_u64()) * n;
        lo = static_cast<std::uint64_t>(m);
      }
    }
    return static_cast<std::uint64_t>(m >> 64);
  }

  // Standard normal by the Box-Muller transform; the spare is part of the state.
  double normal() noexcept {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double r = std::sqrt(-2.0 * std::log(u1));
    const double th = 6.283185307179586476925 * u2;
    spare_ = r * std::sin(th);
    has_spare_ = true;
    return r * std::cos(th);
  }

  // Standard Gumbel(0, 1): -log(-log U).
  double gumbel() noexcept {
    double u = uniform();
    while (u <= 0.0) u = uniform();
    return -std::log(-std::log(u));
  }

  bool bernoulli(double p) noexcept { return uniform() < p; }

  struct State {
    std::uint64_t s[4];
    bool has_spare;
    double spare;
  };
  State state() const noexcept { return {{s_[0], s_[1], s_[2], s_[3]}, has_spare_, spare_}; }
  void set_state(const State& st) noexcept {
    for (int i = 0; i < 4; ++i) s_[i] = st.s[i];
    has_spare_ = st.has_spare;
    spare_ = st.spare;
  }
  bool operator==(const Rng& o) const noexcept {
    return s_[0] == o.s_[0] && s_[1] == o.s_[1] && s_[2] == o.s_[2] && s_[3] == o.s_[3] &&
           has_spare_ == o.has_spare_ && (!has_spare_ || spare_ == o.spare_);
  }

 private:
  static constexpr std::uint64_t rotl(std::uint64_t x, int k) noexcept {
    return (x << k) | (x >> (64 - k));
  }
  std::uint64_t s_[4];
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace moesim
