#pragma once
// Rotary position embedding (Su et al. 2021), rotate-half layout: the first and
// second halves of each head are the two coordinates of each rotated pair.
#include <torch/torch.h>

namespace moesim::torch_backend {

class Rotary {
 public:
  Rotary(int head_dim, int max_len, double theta);
  // x: (B, H, T, D) at positions offset .. offset+T-1, which must be < max_len.
  torch::Tensor apply(const torch::Tensor& x, std::int64_t offset = 0) const;
  int max_len() const { return max_len_; }
  const torch::Tensor& cos_table() const { return cos_; }
  const torch::Tensor& sin_table() const { return sin_; }

 private:
  int max_len_;
  torch::Tensor cos_, sin_;  // (max_len, D/2)
};

// The attention input projection (B, T, 3 * H * hd), laid out [q | k | v] with
// heads inside each, split into q, k, v of shape (B * H, T, hd), contiguous,
// with q and k rotated at positions 0 .. T-1. One fused kernel each way in
// place of three permuted copies, two splits, four multiplies and two cats (the
// backward rotates the gradients back, by -theta).
torch::autograd::tensor_list qkv_rope(const torch::Tensor& qkv, int heads, const Rotary& rope);

}  // namespace moesim::torch_backend
