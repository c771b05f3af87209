#include "torch_backend/precision.hpp"

namespace moesim::torch_backend {

AutocastBf16::AutocastBf16(bool on)
    : on_(on), prev_(at::autocast::is_cpu_enabled()), prev_dtype_(at::autocast::get_autocast_cpu_dtype()) {
  if (!on_) return;
  at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  at::autocast::set_cpu_enabled(true);
}

AutocastBf16::~AutocastBf16() {
  if (!on_) return;
  at::autocast::set_cpu_enabled(prev_);
  at::autocast::set_autocast_cpu_dtype(prev_dtype_);
  // Cast weights are cached per autocast region; drop them with the region.
  if (!prev_) at::autocast::clear_cache();
}

}  // namespace moesim::torch_backend
