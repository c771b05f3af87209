#include "torch_backend/load_stats.hpp"

#include <algorithm>

namespace moesim::torch_backend {

double max_violation(const std::vector<std::int64_t>& loads) {
  if (loads.empty()) return 0.0;
  double sum = 0, mx = 0;
  for (auto l : loads) {
    sum += static_cast<double>(l);
    mx = std::max(mx, static_cast<double>(l));
  }
  const double mean = sum / static_cast<double>(loads.size());
  return mean > 0 ? (mx - mean) / mean : 0.0;
}

double gini(const std::vector<std::int64_t>& loads) {
  if (loads.empty()) return 0.0;
  std::vector<double> v(loads.begin(), loads.end());
  std::sort(v.begin(), v.end());
  double sum = 0, weighted = 0;
  const auto n = static_cast<double>(v.size());
  for (std::size_t i = 0; i < v.size(); ++i) {
    sum += v[i];
    weighted += (2.0 * static_cast<double>(i + 1) - n - 1.0) * v[i];
  }
  return sum > 0 ? weighted / (n * sum) : 0.0;
}

}  // namespace moesim::torch_backend
