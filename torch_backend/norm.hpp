#pragma once
// RMSNorm (Zhang & Sennrich 2019): x / rms(x) * g, computed in fp32.
#include <torch/torch.h>

namespace moesim::torch_backend {

// One fused kernel each way (LibTorch's composition ran five forward and eight
// backward kernels): y = x * rsqrt(mean(x^2, -1) + eps) * weight, the mean of
// squares in double; the weight gradient is summed in a fixed order.
torch::Tensor rms_norm(const torch::Tensor& x, const torch::Tensor& weight, double eps);

class RMSNorm : public torch::nn::Module {
 public:
  RMSNorm(int dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor weight;

 private:
  double eps_;
};

}  // namespace moesim::torch_backend
