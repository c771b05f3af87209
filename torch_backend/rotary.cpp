#include "torch_backend/rotary.hpp"

#include <ATen/Parallel.h>

#include <vector>

#include "policies/types.hpp"

namespace moesim::torch_backend {

Rotary::Rotary(int head_dim, int max_len, double theta) : max_len_(max_len) {
  const int half = head_dim / 2;
  auto inv = torch::pow(theta, -torch::arange(0, half, torch::kDouble) / static_cast<double>(half));
  auto pos = torch::arange(0, max_len, torch::kDouble);
  auto ang = torch::outer(pos, inv);
  cos_ = ang.cos().to(torch::kFloat);
  sin_ = ang.sin().to(torch::kFloat);
}

torch::Tensor Rotary::apply(const torch::Tensor& x, std::int64_t offset) const {
  const auto T = x.size(2);
  if (offset + T > max_len_)
    throw Error("rotary: positions up to " + std::to_string(offset + T) + " exceed data.seq_len=" + std::to_string(max_len_));
  const auto half = x.size(3) / 2;
  auto c = cos_.narrow(0, offset, T);
  auto s = sin_.narrow(0, offset, T);
  auto halves = x.split(half, 3);
  const auto& x1 = halves[0];
  const auto& x2 = halves[1];
  return torch::cat({x1 * c - x2 * s, x1 * s + x2 * c}, 3);
}

namespace {

struct QkvRopeFn : public torch::autograd::Function<QkvRopeFn> {
  // which = 0, 1 rotate (q, k), 2 copies (v); Inverse rotates by -theta (the backward).
  template <bool Inverse>
  static void move(const float* src, float* dst, const float* c, const float* s, std::int64_t half, int which) {
    if (which == 2) {
      for (std::int64_t j = 0; j < 2 * half; ++j) dst[j] = src[j];
      return;
    }
    for (std::int64_t j = 0; j < half; ++j) {
      const float x1 = src[j], x2 = src[j + half];
      dst[j] = Inverse ? x1 * c[j] + x2 * s[j] : x1 * c[j] - x2 * s[j];
      dst[j + half] = Inverse ? x2 * c[j] - x1 * s[j] : x1 * s[j] + x2 * c[j];
    }
  }

  static torch::autograd::tensor_list forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& qkv_in,
                                              std::int64_t heads, const torch::Tensor& cos,
                                              const torch::Tensor& sin) {
    const auto qkv = qkv_in.contiguous();
    const auto B = qkv.size(0), T = qkv.size(1), dim = qkv.size(2) / 3, hd = dim / heads, half = hd / 2;
    std::vector<torch::Tensor> out;
    for (int i = 0; i < 3; ++i) out.push_back(torch::empty({B * heads, T, hd}, torch::kFloat));
    float* dst[3] = {out[0].data_ptr<float>(), out[1].data_ptr<float>(), out[2].data_ptr<float>()};
    const float *src = qkv.data_ptr<float>(), *cp = cos.data_ptr<float>(), *sp = sin.data_ptr<float>();
    at::parallel_for(0, B * T, 8, [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        const auto b = r / T, t = r % T;
        for (int which = 0; which < 3; ++which)
          for (std::int64_t h = 0; h < heads; ++h)
            move<false>(src + (r * 3 + which) * dim + h * hd, dst[which] + ((b * heads + h) * T + t) * hd,
                        cp + t * half, sp + t * half, half, which);
      }
    });
    ctx->save_for_backward({cos, sin});
    ctx->saved_data["shape"] = std::vector<std::int64_t>{B, T, dim, heads};
    return {out[0], out[1], out[2]};
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto shape = ctx->saved_data["shape"].toIntVector();
    const std::int64_t B = shape[0], T = shape[1], dim = shape[2], heads = shape[3], hd = dim / heads, half = hd / 2;
    auto g = torch::empty({B, T, 3 * dim}, torch::kFloat);
    std::vector<torch::Tensor> gin(3);
    for (int i = 0; i < 3; ++i)
      gin[static_cast<std::size_t>(i)] = grads[static_cast<std::size_t>(i)].defined()
                                             ? grads[static_cast<std::size_t>(i)].contiguous()
                                             : torch::zeros({B * heads, T, hd}, torch::kFloat);
    const float* src[3] = {gin[0].data_ptr<float>(), gin[1].data_ptr<float>(), gin[2].data_ptr<float>()};
    const float *cp = saved[0].data_ptr<float>(), *sp = saved[1].data_ptr<float>();
    float* dst = g.data_ptr<float>();
    at::parallel_for(0, B * T, 8, [&](std::int64_t r0, std::int64_t r1) {
      for (std::int64_t r = r0; r < r1; ++r) {
        const auto b = r / T, t = r % T;
        for (int which = 0; which < 3; ++which)
          for (std::int64_t h = 0; h < heads; ++h)
            move<true>(src[which] + ((b * heads + h) * T + t) * hd, dst + (r * 3 + which) * dim + h * hd,
                       cp + t * half, sp + t * half, half, which);
      }
    });
    return {g, torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::autograd::tensor_list qkv_rope(const torch::Tensor& qkv, int heads, const Rotary& rope) {
  const auto T = qkv.size(1);
  if (qkv.dim() != 3 || qkv.scalar_type() != torch::kFloat || qkv.size(2) % (3 * heads) != 0 ||
      (qkv.size(2) / (3 * heads)) % 2 != 0)
    throw std::invalid_argument("qkv_rope: fp32 (B, T, 3 * heads * hd) with an even hd");
  if (T > rope.max_len())
    throw Error("rotary: positions up to " + std::to_string(T) + " exceed data.seq_len=" + std::to_string(rope.max_len()));
  return QkvRopeFn::apply(qkv, static_cast<std::int64_t>(heads), rope.cos_table(), rope.sin_table());
}

}  // namespace moesim::torch_backend
