#include "torch_backend/optim.hpp"

#include <ATen/Parallel.h>
#include <c10/util/string_utils.h>

#include <cmath>
#include <cstdint>
#include <stdexcept>

#include "torch_backend/bf16_shadow.hpp"
#include "torch_backend/gemm.hpp"

namespace moesim::torch_backend {

namespace {

constexpr std::int64_t kChunk = 1 << 14;  // elements per reduction chunk: a fixed order for any thread count

// sum of x^2 over a contiguous fp32 gradient, in double, chunk sums added in order.
double sum_squares(const torch::Tensor& g) {
  const auto n = g.numel();
  const float* p = g.data_ptr<float>();
  const auto chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> part(static_cast<std::size_t>(chunks), 0.0);
  at::parallel_for(0, chunks, 1, [&](std::int64_t c0, std::int64_t c1) {
    for (auto c = c0; c < c1; ++c) {
      double acc[8] = {};
      const auto lo = c * kChunk, hi = std::min(n, lo + kChunk);
      auto i = lo;
      for (; i + 8 <= hi; i += 8)
        for (int l = 0; l < 8; ++l) acc[l] += static_cast<double>(p[i + l]) * p[i + l];
      for (; i < hi; ++i) acc[0] += static_cast<double>(p[i]) * p[i];
      double s = 0.0;
      for (double a : acc) s += a;
      part[static_cast<std::size_t>(c)] = s;
    }
  });
  double s = 0.0;
  for (double x : part) s += x;
  return s;
}

// One contiguous range of the update. Its own function with restrict pointers
// and the scalars by value: inside the parallel lambda they were captured by
// reference, so every store might have changed them and the loop stayed scalar
// (one sqrt and one divide at a time); here it vectorises, and vector sqrt and
// divide round exactly as the scalar ones do.
// With Bf16, o receives the new weight's bf16 bits as well (bf16_shadow.hpp).
template <bool Bf16>
void adamw_range(float* __restrict p, const float* __restrict g, float* __restrict m, float* __restrict v,
                 std::uint16_t* __restrict o, std::int64_t n, float grad_scale, float decay, float beta1, float beta2,
                 float inv_sqrt_bc2, float eps, float step_size) {
  const float a1 = 1.0f - beta1, a2 = 1.0f - beta2;
  for (std::int64_t i = 0; i < n; ++i) {
    // Rounded as g.mul_(grad_scale) would store it.
    const float gi = g[i] * grad_scale;
    const float mi = m[i] * beta1 + a1 * gi;
    const float vi = v[i] * beta2 + a2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    const float pi = p[i] * decay - step_size * (mi / (std::sqrt(vi) * inv_sqrt_bc2 + eps));
    p[i] = pi;
    if constexpr (Bf16) o[i] = bf16_bits(pi);
  }
}

void adamw_update(float* p, const float* g, float* m, float* v, std::uint16_t* o, std::int64_t n, float grad_scale,
                  float decay, float beta1, float beta2, float inv_sqrt_bc2, float eps, float step_size) {
  at::parallel_for(0, n, kChunk, [=](std::int64_t lo, std::int64_t hi) {
    if (o)
      adamw_range<true>(p + lo, g + lo, m + lo, v + lo, o + lo, hi - lo, grad_scale, decay, beta1, beta2, inv_sqrt_bc2,
                        eps, step_size);
    else
      adamw_range<false>(p + lo, g + lo, m + lo, v + lo, nullptr, hi - lo, grad_scale, decay, beta1, beta2,
                         inv_sqrt_bc2, eps, step_size);
  });
}

}  // namespace

void fused_adamw_step(torch::optim::AdamW& opt, float grad_scale, bool bf16_copies) {
  torch::NoGradGuard ng;
  for (auto& group : opt.param_groups()) {
    auto& o = static_cast<torch::optim::AdamWOptions&>(group.options());
    if (o.amsgrad()) throw std::invalid_argument("fused_adamw_step: amsgrad is not supported");
    const auto [beta1, beta2] = o.betas();
    for (auto& p : group.params()) {
      if (!p.grad().defined()) continue;
      if (p.scalar_type() != torch::kFloat || !p.is_contiguous())
        throw std::invalid_argument("fused_adamw_step: parameters must be contiguous fp32");
      const auto key = c10::guts::to_string(p.unsafeGetTensorImpl());
      auto& slot = opt.state()[key];
      if (!slot) {
        auto st = std::make_unique<torch::optim::AdamWParamState>();
        st->step(0);
        st->exp_avg(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        st->exp_avg_sq(torch::zeros_like(p, torch::MemoryFormat::Preserve));
        slot = std::move(st);
      }
      auto& st = static_cast<torch::optim::AdamWParamState&>(*slot);
      st.step(st.step() + 1);
      const auto t = static_cast<double>(st.step());
      const double bc1 = 1.0 - std::pow(beta1, t), bc2 = 1.0 - std::pow(beta2, t);
      const auto g = p.grad().contiguous();
      torch::Tensor copy;
      if (bf16_copies) {
        copy = bf16_shadow_buffer(p);
        if (!copy.defined()) copy = torch::empty(p.sizes(), p.options().dtype(torch::kBFloat16));
        // A graph still holding the old copy now fails its version check
        // instead of multiplying by the new weights.
        copy.unsafeGetTensorImpl()->bump_version();
      }
      adamw_update(p.data_ptr<float>(), g.data_ptr<float>(), st.exp_avg().data_ptr<float>(),
                   st.exp_avg_sq().data_ptr<float>(),
                   copy.defined() ? static_cast<std::uint16_t*>(copy.data_ptr()) : nullptr, p.numel(), grad_scale,
                   static_cast<float>(1.0 - o.lr() * o.weight_decay()),
                   static_cast<float>(beta1), static_cast<float>(beta2), static_cast<float>(1.0 / std::sqrt(bc2)),
                   static_cast<float>(o.eps()), static_cast<float>(o.lr() / bc1));
      // Written by pointer: bump the version as an in-place op would, so that a
      // graph which saved p refuses backward and an earlier bf16 copy of p is
      // never handed out again (set_bf16_shadow records the new version).
      p.unsafeGetTensorImpl()->bump_version();
      if (copy.defined()) set_bf16_shadow(p, copy);
    }
  }
}

double grad_norm(const std::vector<torch::Tensor>& params) {
  double ss = 0.0;
  for (const auto& p : params) {
    if (!p.grad().defined()) continue;
    if (p.grad().scalar_type() != torch::kFloat) throw std::invalid_argument("grad_norm: gradients must be fp32");
    ss += sum_squares(p.grad().contiguous());
  }
  return std::sqrt(ss);
}

float clip_scale(double norm, double max_norm) {
  const double coef = max_norm / (norm + 1e-6);
  return coef < 1.0 ? static_cast<float>(coef) : 1.0f;
}

double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm) {
  torch::NoGradGuard ng;
  const double norm = grad_norm(params);
  const float scale = clip_scale(norm, max_norm);
  if (scale != 1.0f)
    for (const auto& p : params)
      if (p.grad().defined()) p.grad().mul_(scale);
  return norm;
}

}  // namespace moesim::torch_backend
