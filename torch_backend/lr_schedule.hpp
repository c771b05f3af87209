#pragma once
// Linear warm-up to the peak, then cosine decay to min_ratio * peak at `total`.
namespace moesim::torch_backend {

double lr_at(long step, long warmup, long total, double peak, double min_ratio);

}  // namespace moesim::torch_backend
