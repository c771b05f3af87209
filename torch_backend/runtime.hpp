#pragma once
// Process setup for LibTorch work on a small CPU machine.

namespace moesim::torch_backend {

// Sets LibTorch's intra-op threads (0 = every hardware thread; LibTorch 1.13
// otherwise starts with one here) and keeps freed tensor memory in the heap:
// glibc returns each large block to the kernel with munmap and the next step
// page-faults it back in, which cost ~15% of a training step in a profile.
// Returns the thread count in use.
int configure_runtime(int threads);

}  // namespace moesim::torch_backend
