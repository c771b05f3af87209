#include "torch_backend/attention.hpp"

#include <cmath>

#include "torch_backend/precision.hpp"

namespace moesim::torch_backend {

namespace F = torch::nn::functional;

Attention::Attention(int dim, int heads, double init_std, double out_std) : dim_(dim), heads_(heads) {
  w_qkv = register_parameter("w_qkv", torch::randn({3 * dim, dim}) * init_std);
  w_out = register_parameter("w_out", torch::randn({dim, dim}) * out_std);
}

torch::Tensor Attention::forward(const torch::Tensor& x, const Rotary& rope) {
  const auto B = x.size(0), T = x.size(1);
  const auto hd = dim_ / heads_;
  auto qkv = F::linear(x, w_qkv).view({B, T, 3, heads_, hd}).permute({2, 0, 3, 1, 4});  // 3,B,H,T,hd
  auto q = rope.apply(qkv[0]);
  auto k = rope.apply(qkv[1]);
  auto v = qkv[2];
  auto scores = torch::matmul(q, k.transpose(2, 3)).to(torch::kFloat) * (1.0 / std::sqrt(static_cast<double>(hd)));
  auto mask = torch::ones({T, T}, torch::kBool).triu(1);
  torch::Tensor probs;
  {
    AutocastOff fp32;
    probs = torch::softmax(scores.masked_fill(mask, -std::numeric_limits<float>::infinity()), -1);
  }
  auto ctx = torch::matmul(probs, v).transpose(1, 2).reshape({B, T, dim_});
  return F::linear(ctx, w_out).to(torch::kFloat);
}

}  // namespace moesim::torch_backend
