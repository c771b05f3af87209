#include "torch_backend/attention.hpp"

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "policies/fast_math.hpp"
#include "torch_backend/gemm.hpp"

namespace moesim::torch_backend {

namespace {

// One query row of causal_softmax: p[0, n) = softmax(scale * s[0, n)) and
// p[n, T) = 0, where query i sees keys 0 .. i (n = i + 1); x: n floats of
// scratch. The exps are computed once, by the pass that sums them, and scaled
// in a second; pc, when given, receives p rounded to bf16 in that same pass.
void softmax_row(const float* s, float* p, std::uint16_t* pc, int n, std::int64_t T, float scale, float* x) {
  for (int j = 0; j < n; ++j) x[j] = s[j] * scale;
  const float m = row_max(x, n);
  const auto inv = static_cast<float>(1.0 / row_sum_exp_into(x, n, m, p));
  if (pc) {
    for (int j = 0; j < n; ++j) pc[j] = bf16_bits(p[j] *= inv);
    for (std::int64_t j = n; j < T; ++j) pc[j] = 0;
  } else {
    for (int j = 0; j < n; ++j) p[j] *= inv;
  }
  for (std::int64_t j = n; j < T; ++j) p[j] = 0.0f;
}

// Its gradient: o_j = scale * p_j * (g_j - sum_j' g_j' p_j') for j < n, 0 beyond,
// stored as the next GEMM's operand (float, or bf16 rounded as .to() rounds).
template <typename Out>
void softmax_grad_row(const float* p, const float* g, Out* o, int n, std::int64_t T, float scale) {
  const float dot = dot_f(g, p, n);
  for (int j = 0; j < n; ++j) store_operand(o + j, scale * p[j] * (g[j] - dot));
  for (std::int64_t j = n; j < T; ++j) store_operand(o + j, 0.0f);
}

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
      for (std::int64_t r = b; r < e; ++r)
        softmax_row(sp + r * T, pp + r * T, nullptr, static_cast<int>(r % T) + 1, T, scale_f, x.data());
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
      for (std::int64_t r = b; r < e; ++r)
        softmax_grad_row(pp + r * T, gp + r * T, op + r * T, static_cast<int>(r % T) + 1, T, scale_f);
    });
    return {dS, torch::Tensor()};
  }
};

// The attention core, head by head: P = causal_softmax(q kᵀ, scale), out = P v,
// with q, k, v (BH, T, hd) rounded to the GEMM precision as gemm() rounds them.
// Each head's scores (and backward's dP) are a (T, T) scratch that stays in L2,
// and the kernels write the next GEMM's operand themselves (P, dS in bf16), so
// the (BH, T, T) fp32 scores, dP and dS the composition wrote, and the casts of P
// and dS, are gone; every product is the one the composition's GEMMs run, one
// head per call on one thread, so the results are the same bits (a test
// compares them). Saved: the rounded q, k, v, P in fp32 for the softmax
// gradient and, in bf16, P rounded for the GEMMs.
struct AttentionCoreFn : public torch::autograd::Function<AttentionCoreFn> {
  struct Out {
    torch::Tensor out, P, Pc;
  };

  // Head i's rows of the output: (T, hd), inside (BH, T, hd), or with heads > 0
  // columns h*hd.. of batch b's (T, heads*hd) rows, for i = b*heads + h.
  static torch::Tensor head_rows(const torch::Tensor& t, std::int64_t i, std::int64_t heads, std::int64_t hd) {
    if (heads == 0) return t.select(0, i);
    return t.select(0, i / heads).narrow(1, (i % heads) * hd, hd);
  }

  static Out run(const torch::Tensor& qc, const torch::Tensor& kc, const torch::Tensor& vc, float scale, bool keep,
                 std::int64_t heads) {
    const auto BH = qc.size(0), T = qc.size(1), hd = qc.size(2);
    const bool bf16 = qc.scalar_type() == torch::kBFloat16;
    Out o;
    o.out = heads == 0 ? torch::empty({BH, T, hd}, torch::kFloat) : torch::empty({BH / heads, T, heads * hd}, torch::kFloat);
    if (keep) {
      o.P = torch::empty({BH, T, T}, torch::kFloat);
      o.Pc = bf16 ? torch::empty({BH, T, T}, torch::kBFloat16) : o.P;
    }
    at::parallel_for(0, BH, 1, [&](std::int64_t lo, std::int64_t hi) {
      auto S = torch::empty({T, T}, torch::kFloat);
      auto Pt = keep ? torch::Tensor() : torch::empty({T, T}, torch::kFloat);
      auto Pct = keep || !bf16 ? torch::Tensor() : torch::empty({T, T}, torch::kBFloat16);
      std::vector<float> x(static_cast<std::size_t>(T));
      for (auto i = lo; i < hi; ++i) {
        gemm_into(qc.select(0, i), false, kc.select(0, i), true, S, 0.0f);
        auto P = keep ? o.P.select(0, i) : Pt;
        auto Pc = keep ? o.Pc.select(0, i) : (bf16 ? Pct : P);
        const float* sp = S.data_ptr<float>();
        float* pp = P.data_ptr<float>();
        auto* pc = bf16 ? static_cast<std::uint16_t*>(Pc.data_ptr()) : nullptr;
        for (std::int64_t r = 0; r < T; ++r)
          softmax_row(sp + r * T, pp + r * T, pc ? pc + r * T : nullptr, static_cast<int>(r) + 1, T, scale, x.data());
        auto oi = head_rows(o.out, i, heads, hd);
        gemm_into(Pc, false, vc.select(0, i), false, oi, 0.0f);
      }
    });
    return o;
  }

  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v, double scale, std::int64_t heads) {
    const auto p = gemm_precision();
    const auto qc = to_compute(q, p), kc = to_compute(k, p), vc = to_compute(v, p);
    auto o = run(qc, kc, vc, static_cast<float>(scale), true, heads);
    ctx->save_for_backward({qc, kc, vc, o.P, o.Pc});
    ctx->saved_data["scale"] = scale;
    ctx->saved_data["heads"] = heads;
    ctx->saved_data["bf16"] = p == GemmPrecision::bf16;
    return o.out;
  }

  // With g = dout: dv = Pᵀ g and dP = g vᵀ, dS = softmax_grad_row(P, dP),
  // dq = dS k and dk = dSᵀ q, the composition's GEMM backward calls.
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto s = ctx->get_saved_variables();
    const auto &qc = s[0], &kc = s[1], &vc = s[2], &P = s[3], &Pc = s[4];
    const auto p = ctx->saved_data["bf16"].toBool() ? GemmPrecision::bf16 : GemmPrecision::fp32;
    const auto scale = static_cast<float>(ctx->saved_data.at("scale").toDouble());
    const auto g = to_compute(grads[0], p);
    const auto heads = ctx->saved_data.at("heads").toInt();
    const auto BH = qc.size(0), T = qc.size(1), hd = qc.size(2);
    auto dq = torch::empty({BH, T, hd}, torch::kFloat), dk = torch::empty({BH, T, hd}, torch::kFloat),
         dv = torch::empty({BH, T, hd}, torch::kFloat);
    at::parallel_for(0, BH, 1, [&](std::int64_t lo, std::int64_t hi) {
      auto dP = torch::empty({T, T}, torch::kFloat);
      auto dS = torch::empty({T, T}, compute_dtype(p));
      for (auto i = lo; i < hi; ++i) {
        const auto gi = head_rows(g, i, heads, hd);
        auto dvi = dv.select(0, i), dqi = dq.select(0, i), dki = dk.select(0, i);
        gemm_into(gi, false, vc.select(0, i), true, dP, 0.0f);
        gemm_into(Pc.select(0, i), true, gi, false, dvi, 0.0f);
        const float *pp = P.select(0, i).data_ptr<float>(), *dpp = dP.data_ptr<float>();
        with_operand_ptr(dS, [&](auto* op) {
          for (std::int64_t r = 0; r < T; ++r)
            softmax_grad_row(pp + r * T, dpp + r * T, op + r * T, static_cast<int>(r) + 1, T, scale);
        });
        gemm_into(dS, false, kc.select(0, i), false, dqi, 0.0f);
        gemm_into(dS, true, qc.select(0, i), false, dki, 0.0f);
      }
    });
    return {dq, dk, dv, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor causal_softmax(const torch::Tensor& scores, double scale) {
  if (scores.scalar_type() != torch::kFloat || scores.dim() < 2 || scores.size(-1) != scores.size(-2))
    throw std::invalid_argument("causal_softmax: fp32 scores (..., T, T)");
  return CausalSoftmaxFn::apply(scores, scale);
}

torch::Tensor attention_core(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                             std::int64_t heads) {
  if (q.scalar_type() != torch::kFloat || k.scalar_type() != torch::kFloat || v.scalar_type() != torch::kFloat ||
      q.dim() != 3 || q.sizes() != k.sizes() || q.sizes() != v.sizes())
    throw std::invalid_argument("attention_core: fp32 q, k, v of one shape (BH, T, hd)");
  if (heads < 0 || (heads > 0 && q.size(0) % heads != 0))
    throw std::invalid_argument("attention_core: heads must divide BH = " + std::to_string(q.size(0)));
  if (q.numel() == 0) {  // empty: the composition
    auto out = gemm(causal_softmax(gemm(q, k, false, true), scale), v);
    if (heads == 0) return out;
    const auto B = q.size(0) / heads, T = q.size(1), hd = q.size(2);
    return out.view({B, heads, T, hd}).transpose(1, 2).reshape({B, T, heads * hd});
  }
  if (torch::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad()))
    return AttentionCoreFn::apply(q, k, v, scale, heads);
  const auto p = gemm_precision();
  return AttentionCoreFn::run(to_compute(q, p), to_compute(k, p), to_compute(v, p), static_cast<float>(scale), false,
                              heads)
      .out;
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
  const auto hd = dim_ / heads_;
  const auto qkv = qkv_rope(gemm_linear(x, adapted(w_qkv, lora_qkv)), heads_, rope);  // q, k, v: (B*H, T, hd)
  // The heads' outputs land merged, (B, T, dim), as the output projection reads them.
  const auto ctx = attention_core(qkv[0], qkv[1], qkv[2], 1.0 / std::sqrt(static_cast<double>(hd)), heads_);
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
