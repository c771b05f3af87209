#include "torch_backend/fused_ce.hpp"

#include <cmath>
#include <stdexcept>
#include <string>

#include <ATen/Parallel.h>

#include "policies/fast_math.hpp"
#include "torch_backend/gemm.hpp"

namespace moesim::torch_backend {

namespace {

// Per row of the (n, V) fp32 logits: loss = lse - z[target] and, when grad,
// the row overwritten by softmax(z) - onehot(target). One pass per row while it
// is in L1/L2 (max, sum of exp, then the exps), where LibTorch's logsumexp,
// gather, sub_, exp_ and scatter_add_ each streamed the whole 16 M-logit chunk
// (a fifth of a bf16 step). exp_fast's relative error is below 2e-7; the sum is
// in double.
// bf16, when given (n, V), receives the gradient rounded to bf16 instead of lg:
// the same floats rounded as .to(kBFloat16) would, without writing the fp32
// gradient and streaming it through a separate cast (a tenth of a bf16 step).
void softmax_xent_rows(float* lg, std::int64_t n, std::int64_t V, const std::int64_t* target, float* loss,
                       bool grad, std::uint16_t* bf16) {
  at::parallel_for(0, n, 4, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      float* z = lg + i * V;
      const float m = row_max(z, static_cast<int>(V));
      const double lse_d = m + std::log(row_sum_exp(z, static_cast<int>(V), m));
      const std::int64_t ti = target[i];
      loss[i] = static_cast<float>(lse_d - z[ti]);
      if (!grad) continue;
      const auto lse = static_cast<float>(lse_d);
      if (bf16) {
        std::uint16_t* o = bf16 + i * V;
        const float gt = exp_fast(z[ti] - lse) - 1.0f;
        for (std::int64_t j = 0; j < V; ++j) o[j] = bf16_bits(exp_fast(z[j] - lse));
        o[ti] = bf16_bits(gt);
        continue;
      }
      for (std::int64_t j = 0; j < V; ++j) z[j] = exp_fast(z[j] - lse);
      z[ti] -= 1.0f;
    }
  });
}

struct Result {
  torch::Tensor per_token, d_hidden, d_weight;  // gradients of the sum of per-token losses
};

Result compute(const torch::Tensor& hidden, const torch::Tensor& weight, const torch::Tensor& targets,
               std::int64_t chunk_rows, bool want_grad) {
  const auto p = gemm_precision();
  const auto N = hidden.size(0), V = weight.size(0), D = weight.size(1);
  const auto h = to_compute(hidden, p), w = to_compute(weight, p);
  const auto t = targets.contiguous();
  Result r;
  r.per_token = torch::empty({N}, torch::kFloat);
  if (want_grad) {
    r.d_hidden = torch::empty({N, D}, torch::kFloat);
    r.d_weight = torch::zeros({V, D}, torch::kFloat);
  }
  auto logits = torch::empty({std::min(chunk_rows, N), V}, torch::kFloat);
  const bool bf16 = want_grad && p == GemmPrecision::bf16;
  auto grad_bf16 = bf16 ? torch::empty({std::min(chunk_rows, N), V}, torch::kBFloat16) : torch::Tensor();
  for (std::int64_t r0 = 0; r0 < N; r0 += chunk_rows) {
    const auto n = std::min(chunk_rows, N - r0);
    auto lg = logits.narrow(0, 0, n);
    const auto hc = h.narrow(0, r0, n);
    gemm_into(hc, false, w, true, lg, 0.0f);
    // d(loss_i)/d(logits_i) = softmax(logits_i) - onehot(target_i), built in
    // place (fp32) or straight into the bf16 operand of the next GEMMs.
    softmax_xent_rows(lg.data_ptr<float>(), n, V, t.data_ptr<std::int64_t>() + r0,
                      r.per_token.data_ptr<float>() + r0, want_grad,
                      bf16 ? static_cast<std::uint16_t*>(grad_bf16.data_ptr()) : nullptr);
    if (!want_grad) continue;
    const auto g = bf16 ? grad_bf16.narrow(0, 0, n) : lg;
    auto dh = r.d_hidden.narrow(0, r0, n);
    gemm_into(g, false, w, false, dh, 0.0f);
    gemm_into(g, true, hc, false, r.d_weight, 1.0f);
  }
  return r;
}

struct LinearCrossEntropyFn : public torch::autograd::Function<LinearCrossEntropyFn> {
  static torch::autograd::tensor_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& hidden,
                                              const torch::Tensor& weight, const torch::Tensor& targets,
                                              std::int64_t chunk_rows) {
    auto r = compute(hidden, weight, targets, chunk_rows, true);
    const double inv_n = 1.0 / static_cast<double>(hidden.size(0));
    ctx->save_for_backward({r.d_hidden, r.d_weight});
    ctx->saved_data["inv_n"] = inv_n;
    auto mean = r.per_token.sum() * inv_n;
    ctx->mark_non_differentiable({r.per_token});
    return {mean, r.per_token};
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    // Only the mean is differentiable: dL/dx = g · (1/N) · d(sum of losses)/dx.
    const auto scale = grads[0] * ctx->saved_data["inv_n"].toDouble();
    torch::Tensor dh, dw;
    if (ctx->needs_input_grad(0)) dh = saved[0] * scale;
    if (ctx->needs_input_grad(1)) dw = saved[1] * scale;
    return {dh, dw, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

LinearCrossEntropy linear_cross_entropy(const torch::Tensor& hidden, const torch::Tensor& weight,
                                        const torch::Tensor& targets, std::int64_t chunk_rows) {
  if (hidden.dim() != 2 || weight.dim() != 2 || hidden.size(1) != weight.size(1))
    throw std::invalid_argument("linear_cross_entropy: hidden (N, D) and weight (V, D) must share D");
  if (targets.dim() != 1 || targets.size(0) != hidden.size(0) || targets.scalar_type() != torch::kLong)
    throw std::invalid_argument("linear_cross_entropy: targets must be int64 of shape (N)");
  if (hidden.size(0) == 0) throw std::invalid_argument("linear_cross_entropy: no tokens");
  if (chunk_rows < 1) throw std::invalid_argument("linear_cross_entropy: chunk_rows must be >= 1");
  const auto V = weight.size(0);
  if (targets.min().item<std::int64_t>() < 0 || targets.max().item<std::int64_t>() >= V)
    throw std::invalid_argument("linear_cross_entropy: a target is outside [0, " + std::to_string(V) + ")");
  const bool grad = torch::GradMode::is_enabled() && (hidden.requires_grad() || weight.requires_grad());
  if (!grad) {
    auto r = compute(hidden, weight, targets, chunk_rows, false);
    return {r.per_token.mean(), r.per_token};
  }
  auto out = LinearCrossEntropyFn::apply(hidden, weight, targets, chunk_rows);
  return {out[0], out[1]};
}

}  // namespace moesim::torch_backend
