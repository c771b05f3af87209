#pragma once
// RMSNorm (Zhang & Sennrich 2019): x / rms(x) * g, computed in fp32.
#include <torch/torch.h>

namespace moesim::torch_backend {

class RMSNorm : public torch::nn::Module {
 public:
  RMSNorm(int dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};

}  // namespace moesim::torch_backend
