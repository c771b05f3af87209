#include "torch_backend/attention.hpp"

#include <cmath>
#include <limits>

#include "torch_backend/gemm.hpp"

namespace moesim::torch_backend {

Attention::Attention(int dim, int heads, double init_std, double out_std) : dim_(dim), heads_(heads) {
  w_qkv = register_parameter("w_qkv", torch::randn({3 * dim, dim}) * init_std);
  w_out = register_parameter("w_out", torch::randn({dim, dim}) * out_std);
}

torch::Tensor Attention::forward(const torch::Tensor& x, const Rotary& rope) {
  const auto B = x.size(0), T = x.size(1);
  const auto hd = dim_ / heads_;
  // unbind, not qkv[i]: the backward of three selects would build three zero
  // tensors of the full qkv size; unbind's is one stack.
  auto qkv = gemm_linear(x, w_qkv).view({B, T, 3, heads_, hd}).permute({2, 0, 3, 1, 4}).unbind(0);  // B,H,T,hd each
  const auto BH = B * heads_;
  auto q = rope.apply(qkv[0]).reshape({BH, T, hd});
  auto k = rope.apply(qkv[1]).reshape({BH, T, hd});
  auto v = qkv[2].reshape({BH, T, hd});
  auto scores = gemm(q, k, false, true) * (1.0 / std::sqrt(static_cast<double>(hd)));
  auto mask = torch::ones({T, T}, torch::kBool).triu(1);
  auto probs = torch::softmax(scores.masked_fill(mask, -std::numeric_limits<float>::infinity()), -1);
  auto ctx = gemm(probs, v).view({B, heads_, T, hd}).transpose(1, 2).reshape({B, T, dim_});
  return gemm_linear(ctx, w_out);
}

torch::Tensor Attention::forward_cached(const torch::Tensor& x, const Rotary& rope, torch::Tensor& k_cache,
                                       torch::Tensor& v_cache, std::int64_t len) {
  const std::int64_t Tn = x.size(1), hd = dim_ / heads_;
  auto qkv = gemm_linear(x, w_qkv).view({1, Tn, 3, heads_, hd}).permute({2, 0, 3, 1, 4}).unbind(0);  // 1,H,Tn,hd each
  if (!k_cache.defined()) {
    k_cache = torch::empty({heads_, rope.max_len(), hd}, torch::kFloat);
    v_cache = torch::empty({heads_, rope.max_len(), hd}, torch::kFloat);
  }
  auto q = rope.apply(qkv[0], len).reshape({heads_, Tn, hd});
  k_cache.narrow(1, len, Tn).copy_(rope.apply(qkv[1], len).reshape({heads_, Tn, hd}));
  v_cache.narrow(1, len, Tn).copy_(qkv[2].reshape({heads_, Tn, hd}));
  const auto L = len + Tn;
  auto k = k_cache.narrow(1, 0, L), v = v_cache.narrow(1, 0, L);
  auto scores = gemm(q, k, false, true) * (1.0 / std::sqrt(static_cast<double>(hd)));  // H, Tn, L
  if (Tn > 1) {
    // New token i sits at position len + i and sees keys 0 .. len + i.
    auto mask = torch::ones({Tn, L}, torch::kBool).triu(len + 1);
    scores = scores.masked_fill(mask, -std::numeric_limits<float>::infinity());
  }
  auto ctx = gemm(torch::softmax(scores, -1), v).view({1, heads_, Tn, hd}).transpose(1, 2).reshape({1, Tn, dim_});
  return gemm_linear(ctx, w_out);
}

}  // namespace moesim::torch_backend
