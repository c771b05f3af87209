#include "torch_backend/lr_schedule.hpp"

#include <algorithm>
#include <cmath>

namespace moesim::torch_backend {

double lr_at(long step, long warmup, long total, double peak, double min_ratio) {
  if (warmup > 0 && step < warmup) return peak * static_cast<double>(step + 1) / static_cast<double>(warmup);
  const long span = std::max(1L, total - warmup);
  const double p = std::clamp(static_cast<double>(step - warmup) / static_cast<double>(span), 0.0, 1.0);
  const double floor = peak * min_ratio;
  return floor + (peak - floor) * 0.5 * (1.0 + std::cos(M_PI * p));
}

}  // namespace moesim::torch_backend
