#pragma once
// Mixed precision. LibTorch 1.13's CPU autocast casts linear/mm/bmm/matmul to
// bf16 (its lower-precision op list); the router, softmaxes and losses must stay
// fp32, so those regions switch autocast off with this guard.
#include <ATen/autocast_mode.h>

namespace moesim::torch_backend {

class AutocastOff {
 public:
  AutocastOff() : prev_(at::autocast::is_cpu_enabled()) { at::autocast::set_cpu_enabled(false); }
  ~AutocastOff() { at::autocast::set_cpu_enabled(prev_); }
  AutocastOff(const AutocastOff&) = delete;
  AutocastOff& operator=(const AutocastOff&) = delete;

 private:
  bool prev_;
};

// Enables bf16 CPU autocast for a scope when `on`.
class AutocastBf16 {
 public:
  explicit AutocastBf16(bool on);
  ~AutocastBf16();
  AutocastBf16(const AutocastBf16&) = delete;
  AutocastBf16& operator=(const AutocastBf16&) = delete;

 private:
  bool on_, prev_;
  at::ScalarType prev_dtype_;
};

}  // namespace moesim::torch_backend
