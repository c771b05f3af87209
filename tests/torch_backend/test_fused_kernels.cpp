// The fused fp32 kernels (norm.hpp, swiglu.hpp, rotary.hpp, attention.hpp)
// against the LibTorch compositions they replace, evaluated in float64 by
// autograd: outputs and the gradients of every input for a random upstream
// gradient.
#include <catch2/catch.hpp>

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>

#include "torch_backend/attention.hpp"
#include "torch_backend/gemm.hpp"
#include "torch_backend/norm.hpp"
#include "torch_backend/rotary.hpp"
#include "torch_backend/swiglu.hpp"

using namespace moesim::torch_backend;

namespace {

// max |a - b| relative to max |b| (+ a floor for all-zero references).
double rel_err(const torch::Tensor& a, const torch::Tensor& b) {
  const auto bd = b.to(torch::kDouble);
  return (a.to(torch::kDouble) - bd).abs().max().item<double>() / (bd.abs().max().item<double>() + 1e-30);
}

// A leaf copy in float64 for the reference and one in float32 for the kernel.
std::pair<torch::Tensor, torch::Tensor> leaves(const torch::Tensor& x) {
  return {x.to(torch::kDouble).detach().requires_grad_(true), x.to(torch::kFloat).detach().requires_grad_(true)};
}

}  // namespace

TEST_CASE("rms_norm equals x * rsqrt(mean(x^2) + eps) * w, forward and gradients", "[torch][fused]") {
  torch::manual_seed(1);
  for (int D : {7, 64, 256}) {
    auto [xd, xf] = leaves(torch::randn({3, 70, D}) * 3);  // 210 rows: several reduction blocks
    auto [wd, wf] = leaves(torch::randn({D}));
    const auto g = torch::randn({3, 70, D});
    const auto ref = xd * torch::rsqrt(xd.pow(2).mean(-1, true) + 1e-5) * wd;
    const auto got = rms_norm(xf, wf, 1e-5);
    CAPTURE(D);
    CHECK(rel_err(got, ref) < 1e-6);
    (ref * g.to(torch::kDouble)).sum().backward();
    (got * g).sum().backward();
    CHECK(rel_err(xf.grad(), xd.grad()) < 1e-5);
    CHECK(rel_err(wf.grad(), wd.grad()) < 1e-5);
  }
}

TEST_CASE("silu_mul equals silu(g) * u over [g | u], forward and gradient", "[torch][fused]") {
  torch::manual_seed(2);
  auto [gd, gf] = leaves(torch::randn({50, 2 * 33}) * 4);
  const auto up = torch::randn({50, 33});
  const auto halves = gd.split(33, -1);
  const auto ref = torch::silu(halves[0]) * halves[1];
  const auto got = silu_mul(gf);
  CHECK(rel_err(got, ref) < 1e-6);
  (ref * up.to(torch::kDouble)).sum().backward();
  (got * up).sum().backward();
  CHECK(rel_err(gf.grad(), gd.grad()) < 1e-5);
}

// A second implementation: the block as three autograd nodes (gemm, silu_mul,
// gemm), whose GemmFn rounds each operand with LibTorch's .to(kBFloat16). The
// fused node must give the same bits, forward and every gradient, in both
// precisions, with x of three dimensions and an odd number of rows; and at the
// model's width (dim 256, hidden 1024) with 600 rows, which the node runs as
// row blocks of 256, 256 and 88 while the composition multiplies all at once.
TEST_CASE("swiglu's fused node equals the gemm, silu_mul, gemm composition bit for bit", "[torch][fused]") {
  torch::manual_seed(5);
  struct Shape {
    std::int64_t batch, rows, dim, hidden, out;
  };
  for (const Shape sh : {Shape{3, 13, 24, 40, 17}, Shape{2, 300, 256, 1024, 256}})
  for (auto p : {GemmPrecision::fp32, GemmPrecision::bf16}) {
    GemmPrecisionScope scope(p);
    const auto x0 = torch::randn({sh.batch, sh.rows, sh.dim});
    const auto w130 = torch::randn({sh.dim, 2 * sh.hidden}) * (2.0 / std::sqrt(static_cast<double>(sh.dim)));
    const auto w20 = torch::randn({sh.hidden, sh.out});
    const auto up = torch::randn({sh.batch, sh.rows, sh.out});
    CAPTURE(sh.rows, sh.hidden);
    auto leaf = [](const torch::Tensor& t) { return t.clone().requires_grad_(true); };
    auto xa = leaf(x0), w13a = leaf(w130), w2a = leaf(w20);
    auto xb = leaf(x0), w13b = leaf(w130), w2b = leaf(w20);
    const auto got = swiglu(xa, w13a, w2a);
    const auto ref = gemm_matmul(silu_mul(gemm_matmul(xb, w13b)), w2b);
    CAPTURE(p == GemmPrecision::bf16);
    REQUIRE(got.sizes() == ref.sizes());
    CHECK(torch::equal(got, ref));
    (got * up).sum().backward();
    (ref * up).sum().backward();
    CHECK(torch::equal(xa.grad(), xb.grad()));
    CHECK(torch::equal(w13a.grad(), w13b.grad()));
    CHECK(torch::equal(w2a.grad(), w2b.grad()));
    // A bf16 step must actually round: its output differs from the fp32 one.
    if (p == GemmPrecision::bf16) {
      GemmPrecisionScope fp32(GemmPrecision::fp32);
      torch::NoGradGuard ng;
      CHECK_FALSE(torch::equal(swiglu(x0, w130, w20), got.detach()));
    }
  }
}

// A second implementation: each group through its own swiglu node on one
// thread, the outputs concatenated. The grouped node runs the groups one per
// thread (LPT order) on two threads, and must give the same bits for the output
// and every gradient, in both precisions; with 5 groups (more than threads,
// uneven sizes, one of a single row) and with 1 group (fewer than threads).
// Group 2's w13 and group 3's w2 are frozen: their gradients stay undefined,
// the others' do not change; and once xs itself is frozen.
TEST_CASE("grouped_swiglu equals the cat of per-group swiglu on one thread, bit for bit, on two threads",
          "[torch][fused]") {
  torch::manual_seed(7);
  const std::int64_t D = 48, H = 64, O = 40;
  const int threads = at::get_num_threads();
  for (const std::vector<std::int64_t>& rows : {std::vector<std::int64_t>{300, 1, 77, 512, 130}, std::vector<std::int64_t>{260}})
  for (auto p : {GemmPrecision::fp32, GemmPrecision::bf16})
  for (bool x_grad : {true, false}) {
    GemmPrecisionScope scope(p);
    CAPTURE(rows.size(), p == GemmPrecision::bf16, x_grad);
    std::int64_t S = 0;
    for (auto r : rows) S += r;
    const auto x0 = torch::randn({S, D});
    const auto up = torch::randn({S, O});
    std::vector<torch::Tensor> w13_0, w2_0;
    for (std::size_t g = 0; g < rows.size(); ++g) {
      w13_0.push_back(torch::randn({D, 2 * H}) * 0.3);
      w2_0.push_back(torch::randn({H, O}) * 0.2);
    }
    auto leaf = [](const torch::Tensor& t, bool grad = true) { return t.clone().requires_grad_(grad); };
    // The reference, every GEMM on one thread.
    at::set_num_threads(1);
    auto xb = leaf(x0, x_grad);
    std::vector<torch::Tensor> w13b, w2b, ys;
    std::int64_t r0 = 0;
    for (std::size_t g = 0; g < rows.size(); ++g) {
      w13b.push_back(leaf(w13_0[g], g != 2));
      w2b.push_back(leaf(w2_0[g], g != 3));
      ys.push_back(swiglu(xb.narrow(0, r0, rows[g]), w13b[g], w2b[g]));
      r0 += rows[g];
    }
    const auto ref = torch::cat(ys, 0);
    (ref * up).sum().backward();
    at::set_num_threads(2);
    auto xa = leaf(x0, x_grad);
    std::vector<torch::Tensor> w13a, w2a;
    for (std::size_t g = 0; g < rows.size(); ++g) {
      w13a.push_back(leaf(w13_0[g], g != 2));
      w2a.push_back(leaf(w2_0[g], g != 3));
    }
    const auto got = grouped_swiglu(xa, rows, w13a, w2a);
    (got * up).sum().backward();
    at::set_num_threads(threads);
    CHECK(torch::equal(got, ref));
    REQUIRE(xa.grad().defined() == x_grad);
    if (x_grad) CHECK(torch::equal(xa.grad(), xb.grad()));
    for (std::size_t g = 0; g < rows.size(); ++g) {
      CAPTURE(g);
      REQUIRE(w13a[g].grad().defined() == (g != 2));
      REQUIRE(w2a[g].grad().defined() == (g != 3));
      if (g != 2) CHECK(torch::equal(w13a[g].grad(), w13b[g].grad()));
      if (g != 3) CHECK(torch::equal(w2a[g].grad(), w2b[g].grad()));
    }
  }
}

// A second implementation: the dispatch as LibTorch's index_select before the
// grouped node, whose backward is index_add_ into zeros. The fused gather must
// give the same bits forward and for x's and every weight's gradient, in both
// precisions, with tokens routed to no, one, two and three experts (the sum's
// order matters from three on) and an expert-sorted index as the MoE layer
// builds it.
TEST_CASE("grouped_swiglu with an index equals it on x.index_select(0, index), bit for bit, with x's gradient",
          "[torch][fused]") {
  torch::manual_seed(10);
  const std::int64_t N = 300, D = 48, H = 64, E = 4;
  // Token t goes to experts t % 4 < ... : the first (t % 4) experts of a rotation.
  std::vector<std::vector<std::int64_t>> by_expert(E);
  for (std::int64_t t = 0; t < N; ++t)
    for (std::int64_t j = 0; j < t % 4; ++j) by_expert[static_cast<std::size_t>((t + j) % E)].push_back(t);
  std::vector<std::int64_t> idx, rows;
  for (const auto& v : by_expert) {
    idx.insert(idx.end(), v.begin(), v.end());
    rows.push_back(static_cast<std::int64_t>(v.size()));
  }
  const auto index = torch::tensor(idx, torch::kLong);
  const auto x0 = torch::randn({N, D});
  const auto up = torch::randn({index.size(0), D});
  std::vector<torch::Tensor> w13, w2;
  for (std::int64_t e = 0; e < E; ++e) {
    w13.push_back(torch::randn({D, 2 * H}) * 0.3);
    w2.push_back(torch::randn({H, D}) * 0.2);
  }
  for (auto p : {GemmPrecision::fp32, GemmPrecision::bf16}) {
    GemmPrecisionScope scope(p);
    CAPTURE(p == GemmPrecision::bf16);
    auto leaves = [&](std::vector<torch::Tensor>& out, const std::vector<torch::Tensor>& from) {
      for (const auto& t : from) out.push_back(t.clone().requires_grad_(true));
    };
    auto xa = x0.clone().requires_grad_(true), xb = x0.clone().requires_grad_(true);
    std::vector<torch::Tensor> w13a, w2a, w13b, w2b;
    leaves(w13a, w13), leaves(w2a, w2), leaves(w13b, w13), leaves(w2b, w2);
    const auto got = grouped_swiglu(xa, rows, w13a, w2a, index);
    const auto ref = grouped_swiglu(xb.index_select(0, index), rows, w13b, w2b);
    CHECK(torch::equal(got, ref));
    (got * up).sum().backward();
    (ref * up).sum().backward();
    CHECK(torch::equal(xa.grad(), xb.grad()));
    for (std::size_t e = 0; e < static_cast<std::size_t>(E); ++e) {
      CHECK(torch::equal(w13a[e].grad(), w13b[e].grad()));
      CHECK(torch::equal(w2a[e].grad(), w2b[e].grad()));
    }
  }
  CHECK_THROWS_WITH(grouped_swiglu(x0, rows, w13, w2, index.narrow(0, 0, 5)), Catch::Contains("one entry per row"));
  CHECK_THROWS_WITH(grouped_swiglu(x0, rows, w13, w2, index + N), Catch::Contains("outside [0, 300)"));
}

// The MoE layer's combine: tokens with no, one, two and three rows (three is
// where the order of a sum shows), rows expert-sorted as the layer builds them,
// signed zeros among the values and a token whose only row is -0, on two threads.
TEST_CASE("combine_rows equals zeros.index_add_ bit for bit, forward and the source's gradient, on two threads",
          "[torch][fused]") {
  torch::manual_seed(11);
  const std::int64_t N = 300, D = 40, E = 4;
  std::vector<std::vector<std::int64_t>> by_expert(E);
  for (std::int64_t t = 0; t < N; ++t)
    for (std::int64_t j = 0; j < t % 4; ++j) by_expert[static_cast<std::size_t>((t + j) % E)].push_back(t);
  std::vector<std::int64_t> idx;
  for (const auto& v : by_expert) idx.insert(idx.end(), v.begin(), v.end());
  const auto index = torch::tensor(idx, torch::kLong);
  auto src0 = torch::randn({index.size(0), D}) * 1e3;
  src0.index_put_({torch::indexing::Slice(0, 7)}, -0.0);
  // Token 1's only row (expert 1's first) is -0: index_add_ into zeros gives +0,
  // a sum started from the first row would give -0.
  const auto t1 = static_cast<std::int64_t>(by_expert[0].size());
  REQUIRE(idx[static_cast<std::size_t>(t1)] == 1);
  src0.index_put_({t1}, -0.0);
  const auto up = torch::randn({N, D});
  const int threads = at::get_num_threads();
  at::set_num_threads(2);
  auto a = src0.clone().requires_grad_(true), b = src0.clone().requires_grad_(true);
  const auto got = combine_rows(a, index, N);
  const auto ref = torch::zeros({N, D}).index_add(0, index, b);
  at::set_num_threads(threads);
  CHECK(torch::equal(got, ref));
  CHECK(torch::equal(torch::signbit(got), torch::signbit(ref)));
  (got * up).sum().backward();
  (ref * up).sum().backward();
  CHECK(torch::equal(a.grad(), b.grad()));
  CHECK_THROWS_WITH(combine_rows(src0, index + N, N), Catch::Contains("outside [0, 300)"));
  CHECK_THROWS_WITH(combine_rows(src0, index.narrow(0, 0, 5), N), Catch::Contains("S rows"));
}

TEST_CASE("grouped_swiglu rejects groups that do not match xs or their weights, naming the group", "[torch][fused]") {
  const auto x = torch::randn({10, 8});
  const auto w13 = torch::randn({8, 12}), w2 = torch::randn({6, 8});
  CHECK_THROWS_WITH(grouped_swiglu(x, {4, 5}, {w13, w13}, {w2, w2}), Catch::Contains("do not add up"));
  CHECK_THROWS_WITH(grouped_swiglu(x, {10, 0}, {w13, w13}, {w2, w2}), Catch::Contains("at least one row"));
  CHECK_THROWS_WITH(grouped_swiglu(x, {5, 5}, {w13, torch::randn({8, 10})}, {w2, w2}), Catch::Contains("group 1"));
  CHECK_THROWS_WITH(grouped_swiglu(x, {10}, {w13, w13}, {w2}), Catch::Contains("one w13 and one w2 per group"));
}

TEST_CASE("swiglu with frozen weights gives x's gradient alone, the same as with trainable ones", "[torch][fused]") {
  torch::manual_seed(6);
  GemmPrecisionScope scope(GemmPrecision::bf16);
  const auto x0 = torch::randn({9, 16}), w13 = torch::randn({16, 2 * 8}), w2 = torch::randn({8, 16});
  auto xa = x0.clone().requires_grad_(true), xb = x0.clone().requires_grad_(true);
  swiglu(xa, w13, w2).sum().backward();
  auto w13b = w13.clone().requires_grad_(true);
  swiglu(xb, w13b, w2).sum().backward();
  CHECK(torch::equal(xa.grad(), xb.grad()));
  CHECK(w13b.grad().defined());
}

TEST_CASE("qkv_rope equals the permuted split with rotary positions, forward and gradient", "[torch][fused]") {
  torch::manual_seed(3);
  const int B = 2, T = 9, H = 3, hd = 8;
  Rotary rope(hd, 12, 10000.0);
  auto [xd, xf] = leaves(torch::randn({B, T, 3 * H * hd}));
  // Reference: the rotate-half formula in float64 on the same tables.
  const auto c = rope.cos_table().narrow(0, 0, T).to(torch::kDouble), s = rope.sin_table().narrow(0, 0, T).to(torch::kDouble);
  auto parts = xd.view({B, T, 3, H, hd}).permute({2, 0, 3, 1, 4}).unbind(0);
  auto rot = [&](const torch::Tensor& x) {
    auto h = x.split(hd / 2, 3);
    return torch::cat({h[0] * c - h[1] * s, h[0] * s + h[1] * c}, 3).reshape({B * H, T, hd});
  };
  const std::vector<torch::Tensor> ref = {rot(parts[0]), rot(parts[1]), parts[2].reshape({B * H, T, hd})};
  const auto got = qkv_rope(xf, H, rope);
  torch::Tensor lr = torch::zeros({}, torch::kDouble), lg = torch::zeros({});
  for (int i = 0; i < 3; ++i) {
    CAPTURE(i);
    CHECK(rel_err(got[static_cast<std::size_t>(i)], ref[static_cast<std::size_t>(i)]) < 1e-6);
    const auto up = torch::randn({B * H, T, hd});
    lr = lr + (ref[static_cast<std::size_t>(i)] * up.to(torch::kDouble)).sum();
    lg = lg + (got[static_cast<std::size_t>(i)] * up).sum();
  }
  lr.backward();
  lg.backward();
  CHECK(rel_err(xf.grad(), xd.grad()) < 1e-5);
  // A gradient reaching only q and v (k unused) is the same as k's being zero.
  auto x2 = xf.detach().clone().requires_grad_(true);
  const auto o = qkv_rope(x2, H, rope);
  (o[0].sum() + o[2].sum()).backward();
  CHECK(x2.grad().view({B, T, 3, H * hd}).select(2, 1).abs().max().item<float>() == 0.0f);
}

TEST_CASE("causal_softmax equals softmax(scale * scores) with later keys masked, forward and gradient",
          "[torch][fused]") {
  torch::manual_seed(4);
  for (int T : {1, 5, 40}) {
    auto [sd, sf] = leaves(torch::randn({6, T, T}) * 5);
    const double scale = 0.37;
    const auto mask = torch::ones({T, T}, torch::kBool).triu(1);
    const auto ref = torch::softmax((sd * scale).masked_fill(mask, -std::numeric_limits<double>::infinity()), -1);
    const auto got = causal_softmax(sf, scale);
    CAPTURE(T);
    CHECK(rel_err(got, ref) < 1e-6);
    CHECK(got.masked_select(mask.expand({6, T, T})).abs().sum().item<float>() == 0.0f);
    const auto up = torch::randn({6, T, T});
    (ref * up.to(torch::kDouble)).sum().backward();
    (got * up).sum().backward();
    CHECK(rel_err(sf.grad(), sd.grad()) < 1e-5);
  }
}

// A second implementation: gemm, causal_softmax, gemm as three autograd nodes,
// whose GemmFn rounds each operand (probabilities and score gradients included)
// with LibTorch's .to(kBFloat16). The head-by-head node must give the same
// bits, forward and the gradients of q, k and v, in both precisions, with an
// odd head count and length and at the model's shape (32 heads of 256 x 64);
// without autograd its forward must be the same bits too.
TEST_CASE("attention_core equals the gemm, causal_softmax, gemm composition bit for bit", "[torch][fused]") {
  torch::manual_seed(8);
  struct Shape {
    std::int64_t heads, T, hd;
  };
  for (const Shape sh : {Shape{3, 37, 8}, Shape{32, 256, 64}})
    for (auto p : {GemmPrecision::fp32, GemmPrecision::bf16}) {
      GemmPrecisionScope scope(p);
      CAPTURE(sh.heads, sh.T, p == GemmPrecision::bf16);
      const auto q0 = torch::randn({sh.heads, sh.T, sh.hd}), k0 = torch::randn({sh.heads, sh.T, sh.hd}),
                 v0 = torch::randn({sh.heads, sh.T, sh.hd});
      const auto up = torch::randn({sh.heads, sh.T, sh.hd});
      const double scale = 1.0 / std::sqrt(static_cast<double>(sh.hd));
      auto leaf = [](const torch::Tensor& t) { return t.clone().requires_grad_(true); };
      auto qa = leaf(q0), ka = leaf(k0), va = leaf(v0), qb = leaf(q0), kb = leaf(k0), vb = leaf(v0);
      const auto got = attention_core(qa, ka, va, scale);
      const auto ref = gemm(causal_softmax(gemm(qb, kb, false, true), scale), vb);
      REQUIRE(got.sizes() == ref.sizes());
      CHECK(torch::equal(got, ref));
      // A non-contiguous upstream gradient, as the head merge's transpose gives.
      const auto upt = up.transpose(0, 1).contiguous().transpose(0, 1);
      (got * upt).sum().backward();
      (ref * upt).sum().backward();
      CHECK(torch::equal(qa.grad(), qb.grad()));
      CHECK(torch::equal(ka.grad(), kb.grad()));
      CHECK(torch::equal(va.grad(), vb.grad()));
      torch::NoGradGuard ng;
      CHECK(torch::equal(attention_core(q0, k0, v0, scale), ref.detach()));
      if (p == GemmPrecision::bf16) {  // a bf16 pass must actually round
        GemmPrecisionScope fp32(GemmPrecision::fp32);
        CHECK_FALSE(torch::equal(attention_core(q0, k0, v0, scale), got.detach()));
      }
    }
}

// A second implementation: the (BH, T, hd) output viewed (B, H, T, hd),
// transposed and reshaped, as Attention::forward did before. The merged
// layout must give the same bits forward and for every gradient, in both
// precisions, at an odd length and at the model's shape.
TEST_CASE("attention_core with heads gives the transposed, reshaped output bit for bit, and its gradients",
          "[torch][fused]") {
  torch::manual_seed(9);
  struct Shape {
    std::int64_t batch, heads, T, hd;
  };
  for (const Shape sh : {Shape{2, 3, 37, 8}, Shape{8, 4, 256, 64}})
    for (auto p : {GemmPrecision::fp32, GemmPrecision::bf16}) {
      GemmPrecisionScope scope(p);
      CAPTURE(sh.heads, sh.T, p == GemmPrecision::bf16);
      const auto BH = sh.batch * sh.heads;
      const auto q0 = torch::randn({BH, sh.T, sh.hd}), k0 = torch::randn({BH, sh.T, sh.hd}),
                 v0 = torch::randn({BH, sh.T, sh.hd});
      const auto up = torch::randn({sh.batch, sh.T, sh.heads * sh.hd});
      const double scale = 1.0 / std::sqrt(static_cast<double>(sh.hd));
      auto leaf = [](const torch::Tensor& t) { return t.clone().requires_grad_(true); };
      auto qa = leaf(q0), ka = leaf(k0), va = leaf(v0), qb = leaf(q0), kb = leaf(k0), vb = leaf(v0);
      const auto got = attention_core(qa, ka, va, scale, sh.heads);
      const auto ref = attention_core(qb, kb, vb, scale)
                           .view({sh.batch, sh.heads, sh.T, sh.hd})
                           .transpose(1, 2)
                           .reshape({sh.batch, sh.T, sh.heads * sh.hd});
      REQUIRE(got.sizes() == ref.sizes());
      CHECK(torch::equal(got, ref));
      (got * up).sum().backward();
      (ref * up).sum().backward();
      CHECK(torch::equal(qa.grad(), qb.grad()));
      CHECK(torch::equal(ka.grad(), kb.grad()));
      CHECK(torch::equal(va.grad(), vb.grad()));
      torch::NoGradGuard ng;
      CHECK(torch::equal(attention_core(q0, k0, v0, scale, sh.heads), ref.detach()));
    }
  const auto q = torch::randn({6, 5, 4});
  CHECK_THROWS_WITH(attention_core(q, q, q, 0.5, 4), Catch::Contains("heads must divide"));
}

TEST_CASE("attention_core refuses other dtypes and mismatched shapes", "[torch][fused]") {
  const auto q = torch::randn({2, 5, 4});
  CHECK_THROWS_WITH(attention_core(q.to(torch::kDouble), q, q, 0.5), Catch::Contains("attention_core"));
  CHECK_THROWS_WITH(attention_core(q, torch::randn({2, 5, 3}), q, 0.5), Catch::Contains("attention_core"));
  CHECK_THROWS_WITH(attention_core(q.view({10, 4}), q.view({10, 4}), q.view({10, 4}), 0.5), Catch::Contains("attention_core"));
}
