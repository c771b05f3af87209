#pragma once
// SwiGLU feed-forward (Shazeer 2020): W2 (silu(x W1) * (x W3)), no biases.
// W1 and W3 are one fused (dim, 2*hidden) matrix: one matmul instead of two.
#include <torch/torch.h>

namespace moesim::torch_backend {

// silu(g) * u for gu = [g | u] (..., 2H) -> (..., H), one fused kernel each way
// (sigmoid by exp_fast, relative error below 2e-7).
torch::Tensor silu_mul(const torch::Tensor& gu);

// x: (..., dim); w13: (dim, 2*hidden); w2: (hidden, out). One autograd node
// whose kernels write the GEMMs' operands in the calling thread's precision;
// the same bits as gemm_matmul(silu_mul(gemm_matmul(x, w13)), w2).
torch::Tensor swiglu(const torch::Tensor& x, const torch::Tensor& w13, const torch::Tensor& w2);

class SwiGLU : public torch::nn::Module {
 public:
  SwiGLU(int dim, int hidden, double init_std, double out_std);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor w13, w2;
};

}  // namespace moesim::torch_backend
