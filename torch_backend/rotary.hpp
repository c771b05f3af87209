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

 private:
  int max_len_;
  torch::Tensor cos_, sin_;  // (max_len, D/2)
};

}  // namespace moesim::torch_backend
