#include "torch_backend/swiglu.hpp"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

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
// the same bits in a block as in the whole GEMM (a test compares them). Where
// bf16 is widened to fp32 (an AVX2 CPU), the rows' bits depend on the block's
// size (bf16_gemm_native), so it keeps one block there too.
std::int64_t row_block(GemmPrecision p, std::int64_t rows) {
  return p == GemmPrecision::bf16 && bf16_gemm_native() ? std::min<std::int64_t>(256, rows)
                                                        : std::max<std::int64_t>(rows, 1);
}

// What a block's backward multiplies by: the rounded x, W13, W2 and h, and gu
// for the sigmoid.
struct SwigluSaved {
  torch::Tensor xc, w13c, w2c, gu, h;
};

// y = (silu(x W1) * (x W3)) W2 into y (N, out). In bf16 the first GEMM and the
// silu kernel go by row blocks (row_block), so each block's [g | u] is read
// while still in L2, and h is written as the second GEMM's bf16 operand.
SwigluSaved swiglu_forward(const torch::Tensor& x, const torch::Tensor& w13, const torch::Tensor& w2, GemmPrecision p,
                           torch::Tensor& y) {
  SwigluSaved s{to_compute(x, p), to_compute(w13, p), to_compute(w2, p), {}, {}};
  const auto N = x.size(0), H = w2.size(0);
  s.gu = torch::empty({N, 2 * H}, torch::kFloat);
  s.h = torch::empty({N, H}, compute_dtype(p));
  const auto B = row_block(p, N);
  for (std::int64_t r0 = 0; r0 < N; r0 += B) {
    const auto n = std::min(B, N - r0);
    auto gu_blk = s.gu.narrow(0, r0, n);
    gemm_into(s.xc.narrow(0, r0, n), false, s.w13c, false, gu_blk, 0.0f);
    RECORD_FUNCTION("moesim::silu_mul", std::vector<c10::IValue>());
    with_operand_ptr(s.h, [&](auto* hp) { silu_mul_rows(gu_blk.data_ptr<float>(), hp + r0 * H, n, H); });
  }
  gemm_into(s.h, false, s.w2c, false, y, 0.0f);
  return s;
}

// The gradients of one block for the upstream gradient dy_f (N, out) fp32:
// into dx (N, dim, when defined), and new dw13, dw2 where asked. Backward's dh
// is one row block's scratch, never the whole (N, H).
void swiglu_backward(const SwigluSaved& s, const torch::Tensor& dy_f, GemmPrecision p, torch::Tensor* dx, bool want_dw13,
                     bool want_dw2, torch::Tensor& dw13, torch::Tensor& dw2) {
  const auto dy = to_compute(dy_f, p);
  const auto N = s.gu.size(0), H = s.h.size(1);
  if (want_dw2) {
    dw2 = torch::empty({H, dy.size(1)}, torch::kFloat);
    gemm_into(s.h, true, dy, false, dw2, 0.0f);
  }
  if (!dx && !want_dw13) return;
  const auto B = row_block(p, N);
  auto dh = torch::empty({B, H}, torch::kFloat);  // one block, reused
  auto dgu = torch::empty({N, 2 * H}, compute_dtype(p));
  for (std::int64_t r0 = 0; r0 < N; r0 += B) {
    const auto n = std::min(B, N - r0);
    auto dh_blk = dh.narrow(0, 0, n);
    gemm_into(dy.narrow(0, r0, n), false, s.w2c, true, dh_blk, 0.0f);
    RECORD_FUNCTION("moesim::silu_mul", std::vector<c10::IValue>());
    with_operand_ptr(dgu, [&](auto* op) {
      silu_mul_grad_rows(s.gu.data_ptr<float>() + r0 * 2 * H, dh_blk.data_ptr<float>(), op + r0 * 2 * H, n, H);
    });
  }
  if (dx) gemm_into(dgu, false, s.w13c, true, *dx, 0.0f);
  if (want_dw13) {
    dw13 = torch::empty({s.xc.size(1), 2 * H}, torch::kFloat);
    gemm_into(s.xc, true, dgu, false, dw13, 0.0f);
  }
}

GemmPrecision saved_precision(torch::autograd::AutogradContext* ctx) {
  return ctx->saved_data["bf16"].toBool() ? GemmPrecision::bf16 : GemmPrecision::fp32;
}

// The whole block, y = (silu(x W1) * (x W3)) W2, as one autograd node. Why: in
// bf16 the composition wrote h in fp32 and cast it to the second GEMM's operand,
// and backward wrote d[g | u] in fp32 and cast it again; here the kernels emit
// the bf16 operands themselves (the same roundings, so the same bits) and the
// two fp32 intermediates are never written.
struct SwigluFn : public torch::autograd::Function<SwigluFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w13,
                               const torch::Tensor& w2) {
    const auto p = gemm_precision();
    auto y = torch::empty({x.size(0), w2.size(1)}, torch::kFloat);
    const auto s = swiglu_forward(x, w13, w2, p, y);
    ctx->saved_data["bf16"] = p == GemmPrecision::bf16;
    ctx->save_for_backward({s.xc, s.w13c, s.w2c, s.gu, s.h});
    return y;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto v = ctx->get_saved_variables();
    const SwigluSaved s{v[0], v[1], v[2], v[3], v[4]};
    torch::Tensor dx, dw13, dw2;
    if (ctx->needs_input_grad(0)) dx = torch::empty({s.gu.size(0), s.xc.size(1)}, torch::kFloat);
    swiglu_backward(s, grads[0], saved_precision(ctx), dx.defined() ? &dx : nullptr, ctx->needs_input_grad(1),
                    ctx->needs_input_grad(2), dw13, dw2);
    return {dx, dw13, dw2};
  }
};

// Runs job(g) for every group g, one group per thread, largest groups first
// (each thread takes the next one when it is done). Inside the parallel region
// oneDNN and at::parallel_for run on the calling core, so each group's GEMMs
// are single-threaded with its expert's weights in that core's L2. With fewer
// groups than threads the groups run in order, each GEMM on every thread.
// Either way a group's bits are the same: gemm_into's tiles do not depend on
// the thread count, nor on which thread runs them.
template <typename Job>
void for_each_group(const std::vector<std::int64_t>& rows, Job&& job) {
  const auto G = static_cast<std::int64_t>(rows.size());
  const auto threads = static_cast<std::int64_t>(at::get_num_threads());
  if (threads < 2 || G < threads) {
    for (std::int64_t g = 0; g < G; ++g) job(g);
    return;
  }
  std::vector<std::int64_t> order(static_cast<std::size_t>(G));
  for (std::int64_t g = 0; g < G; ++g) order[static_cast<std::size_t>(g)] = g;
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return rows[static_cast<std::size_t>(a)] > rows[static_cast<std::size_t>(b)];
  });
  std::atomic<std::int64_t> next{0};
  at::parallel_for(0, threads, 1, [&](std::int64_t, std::int64_t) {
    // OpenMP workers do not inherit the caller's autograd state: without this,
    // a worker's narrow and cast would record graph nodes.
    c10::AutoGradMode no_grad(false);
    for (auto i = next.fetch_add(1); i < G; i = next.fetch_add(1)) job(order[static_cast<std::size_t>(i)]);
  });
}

// Rows [r0, r0 + n) of xs = x[index] (or of xs = x without an index) rounded
// to the GEMM precision: the gather and the cast in one pass.
torch::Tensor gather_rows(const torch::Tensor& x, const torch::Tensor& index, std::int64_t r0, std::int64_t n,
                          GemmPrecision p) {
  if (!index.defined()) return to_compute(x.narrow(0, r0, n), p);
  const auto D = x.size(1);
  auto out = torch::empty({n, D}, x.options().dtype(compute_dtype(p)));
  const float* xp = x.data_ptr<float>();
  const std::int64_t* ip = index.data_ptr<std::int64_t>() + r0;
  with_operand_ptr(out, [&](auto* op) {
    for (std::int64_t r = 0; r < n; ++r) {
      const float* src = xp + ip[r] * D;
      auto* dst = op + r * D;
      for (std::int64_t d = 0; d < D; ++d) store_operand(dst + d, src[d]);
    }
  });
  return out;
}

// dx (N, D) = the sum over every slot s with index[s] = t of dxs[s], added in
// slot order from +0 (index_add_'s order, so the same bits as
// zeros.index_add_(0, index, dxs)), one token per iteration on every thread.
torch::Tensor scatter_rows(const torch::Tensor& dxs, const torch::Tensor& index, std::int64_t N) {
  const auto S = dxs.size(0), D = dxs.size(1);
  const std::int64_t* ip = index.data_ptr<std::int64_t>();
  std::vector<std::int64_t> first(static_cast<std::size_t>(N) + 1, 0), slots(static_cast<std::size_t>(S));
  for (std::int64_t s = 0; s < S; ++s) ++first[static_cast<std::size_t>(ip[s]) + 1];
  for (std::int64_t t = 0; t < N; ++t) first[static_cast<std::size_t>(t) + 1] += first[static_cast<std::size_t>(t)];
  {
    std::vector<std::int64_t> fill(first.begin(), first.end() - 1);
    for (std::int64_t s = 0; s < S; ++s) slots[static_cast<std::size_t>(fill[static_cast<std::size_t>(ip[s])]++)] = s;
  }
  auto dx = torch::empty({N, D}, torch::kFloat);
  const float* gp = dxs.data_ptr<float>();
  float* op = dx.data_ptr<float>();
  at::parallel_for(0, N, 64, [&](std::int64_t t0, std::int64_t t1) {
    for (auto t = t0; t < t1; ++t) {
      float* o = op + t * D;
      for (std::int64_t d = 0; d < D; ++d) o[d] = 0.0f;
      for (auto k = first[static_cast<std::size_t>(t)]; k < first[static_cast<std::size_t>(t) + 1]; ++k) {
        const float* g = gp + slots[static_cast<std::size_t>(k)] * D;
        for (std::int64_t d = 0; d < D; ++d) o[d] += g[d];
      }
    }
  });
  return dx;
}

// Row offsets of the groups: start[g] .. start[g + 1] are group g's rows.
std::vector<std::int64_t> group_starts(const std::vector<std::int64_t>& rows) {
  std::vector<std::int64_t> start(rows.size() + 1, 0);
  for (std::size_t g = 0; g < rows.size(); ++g) start[g + 1] = start[g] + rows[g];
  return start;
}

// Every expert's block as one node over the expert-sorted rows (grouped_swiglu).
// Saved: five tensors per group, as SwigluFn saves them, group after group.
struct GroupedSwigluFn : public torch::autograd::Function<GroupedSwigluFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, torch::TensorList w13s,
                               torch::TensorList w2s, std::vector<std::int64_t> rows,
                               const c10::optional<torch::Tensor>& index_opt) {
    const auto p = gemm_precision();
    const auto index = index_opt.has_value() ? *index_opt : torch::Tensor();
    const auto G = static_cast<std::int64_t>(rows.size());
    const auto start = group_starts(rows);
    auto y = torch::empty({start.back(), w2s[0].size(1)}, torch::kFloat);
    std::vector<SwigluSaved> saved(rows.size());
    for_each_group(rows, [&](std::int64_t g) {
      const auto i = static_cast<std::size_t>(g);
      auto yg = y.narrow(0, start[i], rows[i]);
      saved[i] = swiglu_forward(gather_rows(x, index, start[i], rows[i], p), w13s[i], w2s[i], p, yg);
    });
    torch::autograd::variable_list keep;
    keep.reserve(saved.size() * 5 + 1);
    for (const auto& s : saved) keep.insert(keep.end(), {s.xc, s.w13c, s.w2c, s.gu, s.h});
    keep.push_back(index);
    ctx->save_for_backward(keep);
    ctx->saved_data["bf16"] = p == GemmPrecision::bf16;
    ctx->saved_data["rows"] = c10::IValue(rows);
    ctx->saved_data["groups"] = G;
    ctx->saved_data["x_rows"] = x.size(0);
    return y;
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto v = ctx->get_saved_variables();
    const auto rows = ctx->saved_data["rows"].toIntVector();
    const auto G = static_cast<std::size_t>(ctx->saved_data["groups"].toInt());
    const auto p = saved_precision(ctx);
    const auto dy = grads[0].contiguous();
    const auto& index = v[5 * G];
    const auto start = group_starts(rows);
    // Inputs in order: x, the G w13s, the G w2s, rows (not a tensor), index.
    torch::autograd::tensor_list out(2 * G + 3);
    const bool want_dx = ctx->needs_input_grad(0);
    torch::Tensor dxs;
    if (want_dx) dxs = torch::empty({start[G], v[0].size(1)}, torch::kFloat);
    // Asked on this thread: needs_input_grad reads the engine's thread-local task.
    std::vector<char> want_dw13(G), want_dw2(G);
    for (std::size_t g = 0; g < G; ++g) {
      want_dw13[g] = ctx->needs_input_grad(1 + g);
      want_dw2[g] = ctx->needs_input_grad(1 + G + g);
    }
    for_each_group(rows, [&](std::int64_t gi) {
      const auto g = static_cast<std::size_t>(gi);
      const SwigluSaved s{v[5 * g], v[5 * g + 1], v[5 * g + 2], v[5 * g + 3], v[5 * g + 4]};
      torch::Tensor dxg = want_dx ? dxs.narrow(0, start[g], rows[g]) : torch::Tensor();
      swiglu_backward(s, dy.narrow(0, start[g], rows[g]), p, want_dx ? &dxg : nullptr, want_dw13[g] != 0,
                      want_dw2[g] != 0, out[1 + g], out[1 + G + g]);
    });
    if (want_dx) out[0] = index.defined() ? scatter_rows(dxs, index, ctx->saved_data["x_rows"].toInt()) : dxs;
    return out;
  }
};

// A row index (int64, 1-D) made contiguous, every entry checked to lie in [0, N).
torch::Tensor checked_index(const torch::Tensor& index, std::int64_t N, const char* who) {
  const auto c = index.contiguous();
  if (c.numel() > 0) {
    const auto [lo, hi] = torch::aminmax(c);
    if (lo.item<std::int64_t>() < 0 || hi.item<std::int64_t>() >= N)
      throw std::invalid_argument(std::string(who) + ": an index is outside [0, " + std::to_string(N) + ")");
  }
  return c;
}

struct CombineRowsFn : public torch::autograd::Function<CombineRowsFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& src,
                               const torch::Tensor& index, std::int64_t N) {
    ctx->save_for_backward({index});
    return scatter_rows(src.contiguous(), index, N);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto index = ctx->get_saved_variables()[0];
    return {grads[0].index_select(0, index), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor combine_rows(const torch::Tensor& src, const torch::Tensor& index, std::int64_t N) {
  if (src.dim() != 2 || src.scalar_type() != torch::kFloat || index.dim() != 1 || index.scalar_type() != torch::kLong ||
      index.size(0) != src.size(0))
    throw std::invalid_argument("combine_rows: fp32 src (S, D) and an int64 index of S rows");
  return CombineRowsFn::apply(src, checked_index(index, N, "combine_rows"), N);
}

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

torch::Tensor grouped_swiglu(const torch::Tensor& xs, const std::vector<std::int64_t>& rows,
                             const std::vector<torch::Tensor>& w13s, const std::vector<torch::Tensor>& w2s,
                             const torch::Tensor& index) {
  if (rows.empty() || rows.size() != w13s.size() || rows.size() != w2s.size())
    throw std::invalid_argument("grouped_swiglu: one w13 and one w2 per group, at least one group");
  if (xs.dim() != 2 || xs.scalar_type() != torch::kFloat)
    throw std::invalid_argument("grouped_swiglu: xs must be 2-D fp32 (rows, dim)");
  std::int64_t total = 0;
  for (std::size_t g = 0; g < rows.size(); ++g) {
    if (rows[g] < 1) throw std::invalid_argument("grouped_swiglu: every group needs at least one row");
    const auto &a = w13s[g], &b = w2s[g];
    if (a.scalar_type() != torch::kFloat || b.scalar_type() != torch::kFloat || a.dim() != 2 || b.dim() != 2 ||
        a.size(0) != xs.size(1) || a.size(1) != 2 * b.size(0) || b.size(1) != w2s[0].size(1))
      throw std::invalid_argument("grouped_swiglu: group " + std::to_string(g) +
                                  ": w13 (dim, 2*hidden) and w2 (hidden, out) with the first group's out");
    total += rows[g];
  }
  if (!index.defined()) {
    if (total != xs.size(0)) throw std::invalid_argument("grouped_swiglu: the groups' rows do not add up to xs's rows");
    return GroupedSwigluFn::apply(xs.contiguous(), torch::TensorList(w13s), torch::TensorList(w2s), rows,
                                  c10::optional<torch::Tensor>());
  }
  if (index.dim() != 1 || index.scalar_type() != torch::kLong || index.size(0) != total)
    throw std::invalid_argument("grouped_swiglu: index must be int64 with one entry per row of the groups");
  return GroupedSwigluFn::apply(xs.contiguous(), torch::TensorList(w13s), torch::TensorList(w2s), rows,
                                c10::optional<torch::Tensor>(checked_index(index, xs.size(0), "grouped_swiglu")));
}

torch::Tensor SwiGLU::forward(const torch::Tensor& x) { return swiglu(x, w13, w2); }

}  // namespace moesim::torch_backend
