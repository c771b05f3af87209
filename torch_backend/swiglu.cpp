#include "torch_backend/swiglu.hpp"

#include "torch_backend/gemm.hpp"

namespace moesim::torch_backend {

torch::Tensor swiglu(const torch::Tensor& x, const torch::Tensor& w13, const torch::Tensor& w2) {
  const auto hidden = w2.size(0);
  // split, not two narrows: its backward is one cat instead of two zero-filled copies.
  auto gu = gemm_matmul(x, w13).split(hidden, -1);
  return gemm_matmul(torch::silu(gu[0]) * gu[1], w2);
}

SwiGLU::SwiGLU(int dim, int hidden, double init_std, double out_std) {
  w13 = register_parameter("w13", torch::randn({dim, 2 * hidden}) * init_std);
  w2 = register_parameter("w2", torch::randn({hidden, dim}) * out_std);
}

torch::Tensor SwiGLU::forward(const torch::Tensor& x) { return swiglu(x, w13, w2); }

}  // namespace moesim::torch_backend
