#pragma once
// Causal multi-head self-attention with rotary positions, no biases.
#include <torch/torch.h>

#include "torch_backend/rotary.hpp"

namespace moesim::torch_backend {

class Attention : public torch::nn::Module {
 public:
  Attention(int dim, int heads, double init_std, double out_std);
  // x: (B, T, dim) -> (B, T, dim)
  torch::Tensor forward(const torch::Tensor& x, const Rotary& rope);
  torch::Tensor w_qkv;  // (3*dim, dim)
  torch::Tensor w_out;  // (dim, dim)

 private:
  int dim_, heads_;
};

}  // namespace moesim::torch_backend
