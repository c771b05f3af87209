#include "torch_backend/attention.hpp"

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <vector>

#include "policies/fast_math.hpp"
#include "torch_backend/gemm.hpp"

namespace moesim::torch_backend {

namespace {

// Backward, per row: dS_ij = scale * P_ij * (dP_ij - sum_j' dP_ij' P_ij').
struct CausalSoftmaxFn : public torch::autograd::Function<CausalSoftmaxFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& s_in, double scale) {
    const auto S = s_in.contiguous();
    const auto T = S.size(-1), rows = S.numel() / T;
    auto P = torch::empty_like(S);
    const float* sp = S.data_ptr<float>();
    float* pp = P.data_ptr<float>();
    const auto scale_f = static_cast<float>(scale);
    at::parallel_for(0, rows, 16, [&](std::int64_t b, std::int64_t e) {
      std::vector<float> x(static_cast<std::size_t>(T));
      for (std::int64_t r = b; r < e; ++r) {
        const int n = static_cast<int>(r % T) + 1;  // query i sees keys 0 .. i
        const float* srow = sp + r * T;
        float* prow = pp + r * T;
        for (int j = 0; j < n; ++j) x[static_cast<std::size_t>(j)] = srow[j] * scale_f;
        const float m = row_max(x.data(), n);
        const auto inv = static_cast<float>(1.0 / row_sum_exp(x.data(), n, m));
        for (int j = 0; j < n; ++j) prow[j] = exp_fast(x[static_cast<std::size_t>(j)] - m) * inv;
        for (std::int64_t j = n; j < T; ++j) prow[j] = 0.0f;
      }
    });
    ctx->save_for_backward({P});
    ctx->saved_data["scale"] = scale;
    return P;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto P = ctx->get_saved_variables()[0];
    const auto dP = grads[0].contiguous();
    const auto scale_f = static_cast<float>(ctx->saved_data.at("scale").toDouble());
    const auto T = P.size(-1), rows = P.numel() / T;
    auto dS = torch::empty_like(P);
    const float *pp = P.data_ptr<float>(), *gp = dP.data_ptr<float>();
    float* op = dS.data_ptr<float>();
    at::parallel_for(0, rows, 16, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t r = b; r < e; ++r) {
        const int n = static_cast<int>(r % T) + 1;
        const float *p = pp + r * T, *g = gp + r * T;
        float* o = op + r * T;
        const float dot = dot_f(g, p, n);
        for (int j = 0; j < n; ++j) o[j] = scale_f * p[j] * (g[j] - dot);
        for (std::int64_t j = n; j < T; ++j) o[j] = 0.0f;
      }
    });
    return {dS, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor causal_softmax(const torch::Tensor& scores, double scale) {
  if (scores.scalar_type() != torch::kFloat || scores.dim() < 2 || scores.size(-1) != scores.size(-2))
    throw std::invalid_argument("causal_softmax: fp32 scores (..., T, T)");
  return CausalSoftmaxFn::apply(scores, scale);
}

Attention::Attention(int dim, int heads, double init_std, double out_std) : dim_(dim), heads_(heads) {
  w_qkv = register_parameter("w_qkv", torch::randn({3 * dim, dim}) * init_std);
  w_out = register_parameter("w_out", torch::randn({dim, dim}) * out_std);
}

void Attention::add_lora(int rank, double alpha) {
  lora_qkv = add_adapter(*this, "w_qkv", w_qkv, false, rank, alpha);
  lora_out = add_adapter(*this, "w_out", w_out, false, rank, alpha);
}

torch::Tensor Attention::forward(const torch::Tensor& x, const Rotary& rope) {
  const auto B = x.size(0), T = x.size(1);
  const auto hd = dim_ / heads_;
  const auto qkv = qkv_rope(gemm_linear(x, adapted(w_qkv, lora_qkv)), heads_, rope);  // q, k, v: (B*H, T, hd)
  const auto probs = causal_softmax(gemm(qkv[0], qkv[1], false, true), 1.0 / std::sqrt(static_cast<double>(hd)));
  auto ctx = gemm(probs, qkv[2]).view({B, heads_, T, hd}).transpose(1, 2).reshape({B, T, dim_});
  return gemm_linear(ctx, adapted(w_out, lora_out));
}

torch::Tensor Attention::forward_cached(const torch::Tensor& x, const Rotary& rope, torch::Tensor& k_cache,
                                       torch::Tensor& v_cache, std::int64_t len) {
  const std::int64_t Tn = x.size(1), hd = dim_ / heads_;
  auto qkv = gemm_linear(x, adapted(w_qkv, lora_qkv)).view({1, Tn, 3, heads_, hd}).permute({2, 0, 3, 1, 4}).unbind(0);  // 1,H,Tn,hd each
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
  return gemm_linear(ctx, adapted(w_out, lora_out));
}

}  // namespace moesim::torch_backend
