#include "sim/random.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <string>

#include "policies/types.hpp"

namespace moesim {

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
