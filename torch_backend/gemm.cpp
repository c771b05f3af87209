#include "torch_backend/gemm.hpp"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>

#ifdef MOESIM_HAVE_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

#include "torch_backend/bf16_shadow.hpp"

namespace moesim::torch_backend {

namespace {

thread_local GemmPrecision t_precision = GemmPrecision::fp32;

#ifdef MOESIM_HAVE_DNNL
// oneDNN 2.x exports its bf16 GEMM (used by its own tests) without declaring it
// in the public header; look it up so a build against another oneDNN still
// links and falls back to LibTorch's bf16 mm.
using Bf16GemmFn = dnnl_status_t (*)(char, char, dnnl_dim_t, dnnl_dim_t, dnnl_dim_t, float, const std::uint16_t*,
                                     dnnl_dim_t, const std::uint16_t*, dnnl_dim_t, float, float*, dnnl_dim_t);
Bf16GemmFn bf16_gemm_fn() {
  static const Bf16GemmFn fn = [] {
    auto f = reinterpret_cast<Bf16GemmFn>(dlsym(RTLD_DEFAULT, "dnnl_gemm_bf16bf16f32"));
    // oneDNN 2.x implements it only from AVX-512 up: on an AVX2 CPU every call
    // answers dnnl_unimplemented. One 1 x 1 x 1 product tells which.
    const std::uint16_t one = 0x3F80;  // 1.0 in bf16
    float c = 0.0f;
    if (f && f('N', 'N', 1, 1, 1, 1.0f, &one, 1, &one, 1, 0.0f, &c, 1) != dnnl_success) f = nullptr;
    return f;
  }();
  return fn;
}
#endif

// Leading dimension of a row-major matrix, or 0 when it is not row-major.
std::int64_t row_major_ld(const torch::Tensor& m) {
  if (m.stride(1) != 1 && m.size(1) > 1) return 0;
  const auto ld = m.size(0) > 1 ? m.stride(0) : m.size(1);
  return ld >= m.size(1) ? std::max<std::int64_t>(ld, 1) : 0;
}

#ifdef MOESIM_HAVE_DNNL
// c = op(a) op(b) + beta c as fixed output tiles, at most max_tiles, each one
// single-threaded oneDNN call gemm(m, n, a_tile, b_tile, c_tile) inside
// at::parallel_for. Why: multi-threaded, oneDNN splits the reduction over
// threads for some shapes, so training gave other bits on 1 and on 2 threads
// (measured: fp32, the SwiGLU's dx, 2048 x 256 with K = 2048; bf16, small
// outputs with K = 2048 such as the router MLP's gate gradient). The tiles
// depend on the shape alone, and each is a whole-K product on one thread, so
// the bits are the same for any thread count, and inside a parallel region
// (the grouped experts, the attention heads), where the tiles run in order.
// Each tile packs its own operands: bf16 takes at most 2 tiles (at 8 its step
// ran 3-5 % slower), fp32 up to 8 (the same speed as oneDNN's threading).
template <typename T, typename Gemm>
dnnl_status_t gemm_tiled(bool ta, bool tb, std::int64_t M, std::int64_t N, const T* a, std::int64_t lda, const T* b,
                         std::int64_t ldb, float* c, std::int64_t ldc, std::int64_t max_tiles, Gemm&& gemm) {
  const std::int64_t mt = std::clamp<std::int64_t>(M / 256, 1, max_tiles);
  std::int64_t nt = 1;
  while (mt * nt < max_tiles && N / (2 * nt) >= 128) nt *= 2;
  std::atomic<int> status{static_cast<int>(dnnl_success)};
  // At least two iterations, so that a single tile also runs inside a parallel
  // region (at::parallel_for calls one iteration inline, where oneDNN would
  // thread it).
  const auto tiles = mt * nt;
  at::parallel_for(0, std::max<std::int64_t>(tiles, 2), 1, [&](std::int64_t lo, std::int64_t hi) {
    for (auto t = lo; t < std::min(hi, tiles); ++t) {
      const auto i = t / nt, j = t % nt;
      const auto m0 = M * i / mt, m1 = M * (i + 1) / mt, n0 = N * j / nt, n1 = N * (j + 1) / nt;
      const T* at = ta ? a + m0 : a + m0 * lda;
      const T* bt = tb ? b + n0 * ldb : b + n0;
      const dnnl_status_t st = gemm(m1 - m0, n1 - n0, at, bt, c + m0 * ldc + n0);
      if (st != dnnl_success) status.store(static_cast<int>(st));
    }
  });
  return static_cast<dnnl_status_t>(status.load());
}
#endif

}  // namespace

void gemm_into(const torch::Tensor& a, bool ta, const torch::Tensor& b, bool tb, torch::Tensor& c, float beta) {
  // A profiler scope (free when no profiler runs), so a trace separates GEMM time
  // from everything else (scripts/profile_breakdown.py).
  RECORD_FUNCTION("moesim::gemm", std::vector<c10::IValue>());
  const auto M = ta ? a.size(1) : a.size(0), K = ta ? a.size(0) : a.size(1);
  const auto N = tb ? b.size(0) : b.size(1);
  if (M == 0 || N == 0) return;
  if (K == 0) {
    // As BLAS: with beta = 0, c is not read (it may hold garbage, NaN included).
    if (beta == 0.0f)
      c.zero_();
    else
      c.mul_(beta);
    return;
  }
#ifdef MOESIM_HAVE_DNNL
  const auto lda = row_major_ld(a), ldb = row_major_ld(b), ldc = row_major_ld(c);
  if (lda > 0 && ldb > 0 && ldc > 0) {
    dnnl_status_t st = dnnl_unimplemented;
    const char opa = ta ? 'T' : 'N', opb = tb ? 'T' : 'N';
    if (a.scalar_type() == torch::kFloat) {
      st = gemm_tiled(ta, tb, M, N, a.data_ptr<float>(), lda, b.data_ptr<float>(), ldb, c.data_ptr<float>(), ldc, 8,
                      [&](std::int64_t m, std::int64_t n, const float* at, const float* bt, float* ct) {
                        return dnnl_sgemm(opa, opb, m, n, K, 1.0f, at, lda, bt, ldb, beta, ct, ldc);
                      });
    } else if (auto fn = bf16_gemm_fn()) {
      using U = std::uint16_t;
      const auto* ap = static_cast<const U*>(a.data_ptr());
      const auto* bp = static_cast<const U*>(b.data_ptr());
      st = gemm_tiled(ta, tb, M, N, ap, lda, bp, ldb, c.data_ptr<float>(), ldc, 2,
                      [&](std::int64_t m, std::int64_t n, const U* at, const U* bt, float* ct) {
                        return fn(opa, opb, m, n, K, 1.0f, at, lda, bt, ldb, beta, ct, ldc);
                      });
    }
    if (st == dnnl_success) return;
    if (a.scalar_type() == torch::kFloat || bf16_gemm_fn())
      throw std::runtime_error("oneDNN GEMM failed (status " + std::to_string(static_cast<int>(st)) + ") for " +
                               std::to_string(M) + "x" + std::to_string(K) + "x" + std::to_string(N));
  }
#endif
  if (a.scalar_type() != torch::kFloat) {
    // No bf16 GEMM here: the operands widened to fp32 (exact), where a product of
    // two bf16 values is exact too, so this is a bf16 GEMM with fp32
    // accumulation, only slower. LibTorch's own bf16 mm would round c to bf16.
    gemm_into(a.to(torch::kFloat), ta, b.to(torch::kFloat), tb, c, beta);
    return;
  }
  auto oa = ta ? a.t() : a, ob = tb ? b.t() : b;
  auto prod = torch::mm(oa, ob);
  if (beta == 0.0f)
    c.copy_(prod);
  else
    c.mul_(beta).add_(prod);
}

torch::ScalarType compute_dtype(GemmPrecision p) { return p == GemmPrecision::bf16 ? torch::kBFloat16 : torch::kFloat; }

namespace {

// bf16_bits over a range; restrict pointers so that it vectorises (16 lanes of
// integer adds, shifts and a compare).
void bf16_range(const float* __restrict x, std::uint16_t* __restrict o, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) o[i] = bf16_bits(x[i]);
}

}  // namespace

torch::Tensor to_bf16(const torch::Tensor& t) {
  if (t.scalar_type() == torch::kBFloat16) return t.contiguous();
  // Other dtypes round once, by LibTorch (through float would round twice).
  if (t.scalar_type() != torch::kFloat) return t.to(torch::kBFloat16).contiguous();
  const auto src = t.contiguous();
  auto out = torch::empty(src.sizes(), src.options().dtype(torch::kBFloat16));
  const float* x = src.data_ptr<float>();
  auto* o = static_cast<std::uint16_t*>(out.data_ptr());
  at::parallel_for(0, src.numel(), 1 << 15, [&](std::int64_t lo, std::int64_t hi) { bf16_range(x + lo, o + lo, hi - lo); });
  return out;
}

torch::Tensor to_compute(const torch::Tensor& t, GemmPrecision p) {
  if (p != GemmPrecision::bf16) return t.contiguous();
  if (t.scalar_type() == torch::kFloat)
    if (auto s = bf16_shadow(t); s.defined()) return s;  // a parameter the optimizer keeps in bf16
  return to_bf16(t);
}

namespace {

// Batched or not: c[i] = op(a[i]) · op(b[i]).
torch::Tensor gemm_raw(const torch::Tensor& a, bool ta, const torch::Tensor& b, bool tb) {
  if (a.dim() == 2) {
    auto c = torch::empty({ta ? a.size(1) : a.size(0), tb ? b.size(0) : b.size(1)}, torch::kFloat);
    gemm_into(a, ta, b, tb, c, 0.0f);
    return c;
  }
  const auto batch = a.size(0);
  auto c = torch::empty({batch, ta ? a.size(2) : a.size(1), tb ? b.size(1) : b.size(2)}, torch::kFloat);
  // Parallel over the batch; inside a parallel region oneDNN runs each GEMM on
  // one thread, which beats splitting small matrices across both cores.
  at::parallel_for(0, batch, 1, [&](std::int64_t lo, std::int64_t hi) {
    for (auto i = lo; i < hi; ++i) {
      auto ci = c.select(0, i);
      gemm_into(a.select(0, i), ta, b.select(0, i), tb, ci, 0.0f);
    }
  });
  return c;
}

struct GemmFn : public torch::autograd::Function<GemmFn> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& a, const torch::Tensor& b,
                               bool ta, bool tb) {
    const auto p = gemm_precision();
    auto ac = to_compute(a, p), bc = to_compute(b, p);
    ctx->saved_data["ta"] = ta;
    ctx->saved_data["tb"] = tb;
    ctx->saved_data["bf16"] = p == GemmPrecision::bf16;
    // The rounded operands are what the backward pass multiplies by (and half the memory in bf16).
    ctx->save_for_backward({ac, bc});
    return gemm_raw(ac, ta, bc, tb);
  }

  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& a = saved[0];
    const auto& b = saved[1];
    const bool ta = ctx->saved_data["ta"].toBool(), tb = ctx->saved_data["tb"].toBool();
    const auto p = ctx->saved_data["bf16"].toBool() ? GemmPrecision::bf16 : GemmPrecision::fp32;
    auto g = to_compute(grads[0], p);
    torch::Tensor da, db;
    // c = op(a)·op(b): d op(a) = g·op(b)ᵀ and d op(b) = op(a)ᵀ·g, transposed back where op transposed.
    if (ctx->needs_input_grad(0)) da = ta ? gemm_raw(b, tb, g, true) : gemm_raw(g, false, b, !tb);
    if (ctx->needs_input_grad(1)) db = tb ? gemm_raw(g, true, a, ta) : gemm_raw(a, !ta, g, false);
    return {da, db, torch::Tensor(), torch::Tensor()};
  }
};

void check_operands(const torch::Tensor& a, const torch::Tensor& b, bool ta, bool tb) {
  if (a.dim() != b.dim() || (a.dim() != 2 && a.dim() != 3))
    throw std::invalid_argument("gemm: operands must both be 2-D or both 3-D, got " + std::to_string(a.dim()) + "-D and " +
                                std::to_string(b.dim()) + "-D");
  if (a.scalar_type() != torch::kFloat || b.scalar_type() != torch::kFloat)
    throw std::invalid_argument("gemm: operands must be float32");
  if (a.dim() == 3 && a.size(0) != b.size(0)) throw std::invalid_argument("gemm: batch sizes differ");
  const auto ka = ta ? a.size(-2) : a.size(-1), kb = tb ? b.size(-1) : b.size(-2);
  if (ka != kb)
    throw std::invalid_argument("gemm: inner dimensions differ (" + std::to_string(ka) + " vs " + std::to_string(kb) + ")");
}

}  // namespace

GemmPrecision gemm_precision() { return t_precision; }

GemmPrecisionScope::GemmPrecisionScope(GemmPrecision p) : prev_(t_precision) { t_precision = p; }
GemmPrecisionScope::~GemmPrecisionScope() { t_precision = prev_; }

torch::Tensor gemm(const torch::Tensor& a, const torch::Tensor& b, bool transpose_a, bool transpose_b) {
  check_operands(a, b, transpose_a, transpose_b);
  if (!torch::GradMode::is_enabled() || (!a.requires_grad() && !b.requires_grad())) {
    const auto p = gemm_precision();
    return gemm_raw(to_compute(a, p), transpose_a, to_compute(b, p), transpose_b);
  }
  return GemmFn::apply(a, b, transpose_a, transpose_b);
}

torch::Tensor gemm_matmul(const torch::Tensor& x, const torch::Tensor& w) {
  auto shape = x.sizes().vec();
  shape.back() = w.size(1);
  return gemm(x.reshape({-1, x.size(-1)}), w).view(shape);
}

torch::Tensor gemm_linear(const torch::Tensor& x, const torch::Tensor& w) {
  auto shape = x.sizes().vec();
  shape.back() = w.size(0);
  return gemm(x.reshape({-1, x.size(-1)}), w, false, true).view(shape);
}

const char* gemm_backend(GemmPrecision p) {
#ifdef MOESIM_HAVE_DNNL
  if (p == GemmPrecision::fp32 || bf16_gemm_fn()) return "oneDNN";
  return "oneDNN sgemm on bf16 operands widened to fp32";
#else
  return p == GemmPrecision::fp32 ? "LibTorch" : "LibTorch mm on bf16 operands widened to fp32";
#endif
}

bool bf16_gemm_native() {
#ifdef MOESIM_HAVE_DNNL
  return bf16_gemm_fn() != nullptr;
#else
  return false;
#endif
}

const char* gemm_isa() {
#ifdef MOESIM_HAVE_DNNL
  switch (dnnl_get_effective_cpu_isa()) {
    case dnnl_cpu_isa_avx512_core_amx: return "AMX-BF16 (oneDNN avx512_core_amx)";
    case dnnl_cpu_isa_avx512_core_bf16: return "AVX-512-BF16 (oneDNN avx512_core_bf16)";
    case dnnl_cpu_isa_avx512_core_vnni: return "AVX-512 VNNI, bf16 emulated (oneDNN avx512_core_vnni)";
    case dnnl_cpu_isa_avx512_core: return "AVX-512, bf16 emulated (oneDNN avx512_core)";
    case dnnl_cpu_isa_avx2_vnni: return "AVX2 VNNI (oneDNN avx2_vnni)";
    case dnnl_cpu_isa_avx2: return "AVX2 (oneDNN avx2)";
    default: return "oneDNN, another ISA";
  }
#else
  return "LibTorch mm (no oneDNN header)";
#endif
}

}  // namespace moesim::torch_backend
