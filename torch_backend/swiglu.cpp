#include "torch_backend/swiglu.hpp"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include "policies/fast_math.hpp"
#include "torch_backend/gemm.hpp"

namespace moesim::torch_backend {

namespace {

// h = silu(g) * u over gu = [g | u] (N, 2H), one pass each way, and the gradient
// lands in one (N, 2H) tensor (split's backward was a cat of two). With
// s = sigmoid(g): dg = dh * u * s * (1 + g * (1 - s)), du = dh * g * s.
struct SiluMulFn : public torch::autograd::Function<SiluMulFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& gu_in) {
    const auto gu = gu_in.contiguous();
    const auto H = gu.size(-1) / 2, N = gu.numel() / (2 * H);
    auto sizes = gu.sizes().vec();
    sizes.back() = H;
    auto h = torch::empty(sizes, torch::kFloat);
    const float* gp = gu.data_ptr<float>();
    float* hp = h.data_ptr<float>();
    at::parallel_for(0, N, 8, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const float *g = gp + i * 2 * H, *u = g + H;
        float* o = hp + i * H;
        for (std::int64_t j = 0; j < H; ++j) o[j] = g[j] / (1.0f + exp_fast(-g[j])) * u[j];
      }
    });
    ctx->save_for_backward({gu});
    return h;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto gu = ctx->get_saved_variables()[0];
    const auto dh = grads[0].contiguous();
    const auto H = gu.size(-1) / 2, N = gu.numel() / (2 * H);
    auto dgu = torch::empty_like(gu);
    const float *gp = gu.data_ptr<float>(), *dp = dh.data_ptr<float>();
    float* op = dgu.data_ptr<float>();
    at::parallel_for(0, N, 8, [&](std::int64_t b, std::int64_t e) {
      for (std::int64_t i = b; i < e; ++i) {
        const float *g = gp + i * 2 * H, *u = g + H, *d = dp + i * H;
        float *dg = op + i * 2 * H, *du = dg + H;
        for (std::int64_t j = 0; j < H; ++j) {
          const float s = 1.0f / (1.0f + exp_fast(-g[j]));
          dg[j] = d[j] * u[j] * s * (1.0f + g[j] * (1.0f - s));
          du[j] = d[j] * g[j] * s;
        }
      }
    });
    return {dgu};
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
  return gemm_matmul(silu_mul(gemm_matmul(x, w13)), w2);
}

SwiGLU::SwiGLU(int dim, int hidden, double init_std, double out_std) {
  w13 = register_parameter("w13", torch::randn({dim, 2 * hidden}) * init_std);
  w2 = register_parameter("w2", torch::randn({hidden, dim}) * out_std);
}

torch::Tensor SwiGLU::forward(const torch::Tensor& x) { return swiglu(x, w13, w2); }

}  // namespace moesim::torch_backend
