#include "torch_backend/swiglu.hpp"

#include "torch_backend/gemm.hpp"

namespace moesim::torch_backend {

torch::Tensor swiglu(const torch::Tensor& x, const torch::Tensor& w13, const torch::Tensor& w2) {
  const auto hidden = w2.size(0);
  auto h = gemm_matmul(x, w13);
  auto g = h.narrow(-1, 0, hidden);
  auto u = h.narrow(-1, hidden, hidden);
  return gemm_matmul(torch::silu(g) * u, w2);
}

SwiGLU::SwiGLU(int dim, int hidden, double init_std, double out_std) {
  w13 = register_parameter("w13", torch::randn({dim, 2 * hidden}) * init_std);
  w2 = register_parameter("w2", torch::randn({hidden, dim}) * out_std);
}

torch::Tensor SwiGLU::forward(const torch::Tensor& x) { return swiglu(x, w13, w2); }

}  // namespace moesim::torch_backend
