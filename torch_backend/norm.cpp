#include "torch_backend/norm.hpp"

namespace moesim::torch_backend {

RMSNorm::RMSNorm(int dim, double eps) : eps_(eps) { weight = register_parameter("weight", torch::ones({dim})); }

torch::Tensor RMSNorm::forward(const torch::Tensor& x) {
  return x * torch::rsqrt(x.pow(2).mean(-1, true) + eps_) * weight;
}

}  // namespace moesim::torch_backend
