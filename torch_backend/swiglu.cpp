#include "torch_backend/swiglu.hpp"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "policies/fast_math.hpp"
#include "torch_backend/gemm.hpp"

namespace moesim::torch_backend {

namespace {

// h = silu(g) * u over rows of gu = [g | u] (N, 2H).
template <typename Out>
void silu_mul_rows(const float* gp, Out* hp, std::int64_t N, std::int64_t H) {
  at::parallel_for(0, N, 8, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const float *g = gp + i * 2 * H, *u = g + H;
      Out* o = hp + i * H;
      for (std::int64_t j = 0; j < H; ++j) store_operand(o + j, g[j] / (1.0f + exp_fast(-g[j])) * u[j]);
    }
  });
}

// With s = sigmoid(g): dg = dh * u * s * (1 + g * (1 - s)), du = dh * g * s,
// into one (N, 2H) gradient [dg | du].
template <typename Out>
void silu_mul_grad_rows(const float* gp, const float* dp, Out* op, std::int64_t N, std::int64_t H) {
  at::parallel_for(0, N, 8, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const float *g = gp + i * 2 * H, *u = g + H, *d = dp + i * H;
      Out *dg = op + i * 2 * H, *du = dg + H;
      for (std::int64_t j = 0; j < H; ++j) {
        const float s = 1.0f / (1.0f + exp_fast(-g[j]));
        store_operand(dg + j, d[j] * u[j] * s * (1.0f + g[j] * (1.0f - s)));
        store_operand(du + j, d[j] * g[j] * s);
      }
    }
  });
}

// silu(g) * u alone; the gradient lands in one (N, 2H) tensor (split's backward
// was a cat of two).
struct SiluMulFn : public torch::autograd::Function<SiluMulFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& gu_in) {
    const auto gu = gu_in.contiguous();
    const auto H = gu.size(-1) / 2, N = gu.numel() / (2 * H);
    auto sizes = gu.sizes().vec();
    sizes.back() = H;
    auto h = torch::empty(sizes, torch::kFloat);
    silu_mul_rows(gu.data_ptr<float>(), h.data_ptr<float>(), N, H);
    ctx->save_for_backward({gu});
    return h;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto gu = ctx->get_saved_variables()[0];
    const auto dh = grads[0].contiguous();
    const auto H = gu.size(-1) / 2, N = gu.numel() / (2 * H);
    auto dgu = torch::empty_like(gu);
    silu_mul_grad_rows(gu.data_ptr<float>(), dh.data_ptr<float>(), dgu.data_ptr<float>(), N, H);
    return {dgu};
  }
};

// Rows per block in bf16: each block's fp32 [g | u] (and backward's dh) is
// read by the silu kernel while still in L2 (256 x 2048 floats, 2 MiB) instead
// of coming back from memory. fp32 keeps one block: its GEMMs dominate, and at
// 256 rows the step ran 1-2 % slower (measured on AMX). Each row's products are
// the same bits in a block as in the whole GEMM (a test compares them).
std::int64_t row_block(GemmPrecision p, std::int64_t rows) {
  return p == GemmPrecision::bf16 ? std::min<std::int64_t>(256, rows) : std::max<std::int64_t>(rows, 1);
}

// The whole block, y = (silu(x W1) * (x W3)) W2, as one autograd node. Why: in
// bf16 the composition wrote h in fp32 and cast it to the second GEMM's operand,
// and backward wrote d[g | u] in fp32 and cast it again; here the kernels emit
// the bf16 operands themselves (the same roundings, so the same bits) and the
// two fp32 intermediates are never written. In bf16 the first GEMM and the
// silu kernel go by row blocks (row_block), and backward's dh is one block's
// scratch, never the whole (N, H). Saved: the rounded x, W13, W2 and h the GEMMs
// multiply by, and gu for the sigmoid.
struct SwigluFn : public torch::autograd::Function<SwigluFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w13,
                               const torch::Tensor& w2) {
    const auto p = gemm_precision();
    const auto xc = to_compute(x, p), w13c = to_compute(w13, p), w2c = to_compute(w2, p);
    const auto N = x.size(0), H = w2.size(0);
    auto gu = torch::empty({N, 2 * H}, torch::kFloat);
    auto h = torch::empty({N, H}, compute_dtype(p));
    const auto B = row_block(p, N);
    for (std::int64_t r0 = 0; r0 < N; r0 += B) {
      const auto n = std::min(B, N - r0);
      auto gu_blk = gu.narrow(0, r0, n);
      gemm_into(xc.narrow(0, r0, n), false, w13c, false, gu_blk, 0.0f);
      RECORD_FUNCTION("moesim::silu_mul", std::vector<c10::IValue>());
      with_operand_ptr(h, [&](auto* hp) { silu_mul_rows(gu_blk.data_ptr<float>(), hp + r0 * H, n, H); });
    }
    auto y = torch::empty({N, w2.size(1)}, torch::kFloat);
    gemm_into(h, false, w2c, false, y, 0.0f);
    ctx->saved_data["bf16"] = p == GemmPrecision::bf16;
    ctx->save_for_backward({xc, w13c, w2c, gu, h});
    return y;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto &xc = s[0], &w13c = s[1], &w2c = s[2], &gu = s[3], &h = s[4];
    const auto p = ctx->saved_data["bf16"].toBool() ? GemmPrecision::bf16 : GemmPrecision::fp32;
    const auto dy = to_compute(grads[0], p);
    const auto N = gu.size(0), H = h.size(1);
    torch::Tensor dx, dw13, dw2;
    if (ctx->needs_input_grad(2)) {
      dw2 = torch::empty({H, dy.size(1)}, torch::kFloat);
      gemm_into(h, true, dy, false, dw2, 0.0f);
    }
    if (ctx->needs_input_grad(0) || ctx->needs_input_grad(1)) {
      const auto B = row_block(p, N);
      auto dh = torch::empty({B, H}, torch::kFloat);  // one block, reused
      auto dgu = torch::empty({N, 2 * H}, compute_dtype(p));
      for (std::int64_t r0 = 0; r0 < N; r0 += B) {
        const auto n = std::min(B, N - r0);
        auto dh_blk = dh.narrow(0, 0, n);
        gemm_into(dy.narrow(0, r0, n), false, w2c, true, dh_blk, 0.0f);
        RECORD_FUNCTION("moesim::silu_mul", std::vector<c10::IValue>());
        with_operand_ptr(dgu, [&](auto* op) {
          silu_mul_grad_rows(gu.data_ptr<float>() + r0 * 2 * H, dh_blk.data_ptr<float>(), op + r0 * 2 * H, n, H);
        });
      }
      if (ctx->needs_input_grad(0)) {
        dx = torch::empty({N, xc.size(1)}, torch::kFloat);
        gemm_into(dgu, false, w13c, true, dx, 0.0f);
      }
      if (ctx->needs_input_grad(1)) {
        dw13 = torch::empty({xc.size(1), 2 * H}, torch::kFloat);
        gemm_into(xc, true, dgu, false, dw13, 0.0f);
      }
    }
    return {dx, dw13, dw2};
  }
};

}  // namespace

torch::Tensor silu_mul(const torch::Tensor& gu) {
  if (gu.scalar_type() != torch::kFloat || gu.size(-1) % 2 != 0)
    throw std::invalid_argument("silu_mul: fp32 input with an even last dimension [g | u]");
  RECORD_FUNCTION("moesim::silu_mul", std::vector<c10::IValue>());  // its own category in profile_breakdown.py
  return SiluMulFn::apply(gu);
}

torch::Tensor swiglu(const torch::Tensor& x, const torch::Tensor& w13, const torch::Tensor& w2) {
  if (x.scalar_type() != torch::kFloat || w13.scalar_type() != torch::kFloat || w2.scalar_type() != torch::kFloat)
    throw std::invalid_argument("swiglu: fp32 x, w13 and w2");
  if (w13.dim() != 2 || w2.dim() != 2 || x.size(-1) != w13.size(0) || w13.size(1) != 2 * w2.size(0))
    throw std::invalid_argument("swiglu: x (..., dim), w13 (dim, 2*hidden) and w2 (hidden, out)");
  auto shape = x.sizes().vec();
  shape.back() = w2.size(1);
  const auto x2 = x.reshape({-1, x.size(-1)});
  if (x2.size(0) == 0) return gemm_matmul(silu_mul(gemm_matmul(x, w13)), w2);  // no rows: the composition
  return SwigluFn::apply(x2, w13, w2).view(shape);
}

SwiGLU::SwiGLU(int dim, int hidden, double init_std, double out_std) {
  w13 = register_parameter("w13", torch::randn({dim, 2 * hidden}) * init_std);
  w2 = register_parameter("w2", torch::randn({hidden, dim}) * out_std);
}

torch::Tensor SwiGLU::forward(const torch::Tensor& x) { return swiglu(x, w13, w2); }

}  // namespace moesim::torch_backend
