#include "torch_backend/runtime.hpp"

#include <malloc.h>

#include <algorithm>
#include <thread>

#include <torch/torch.h>

namespace moesim::torch_backend {

int configure_runtime(int threads) {
  static const bool heap_kept = [] {
    // Serve large blocks from the heap rather than fresh mmaps, and do not trim
    // the heap top back to the kernel: the same tensor sizes recur every step.
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
    mallopt(M_TOP_PAD, 64 << 20);
    return true;
  }();
  (void)heap_kept;
  const int n = threads > 0 ? threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (torch::get_num_threads() != n) torch::set_num_threads(n);
  return n;
}

}  // namespace moesim::torch_backend
