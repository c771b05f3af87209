// gemm.hpp against independent references: LibTorch's double-precision mm on
// the same (for bf16: bf16-rounded) operands, and LibTorch autograd for gradients.
#include <catch2/catch.hpp>

#include <ATen/Parallel.h>

#include <limits>

#include "torch_backend/gemm.hpp"

using namespace moesim::torch_backend;

namespace {

torch::Tensor op(const torch::Tensor& t, bool tr) { return tr ? t.transpose(-2, -1) : t; }

// op(a)·op(b) in float64 on the operands as the given precision rounds them.
torch::Tensor reference(const torch::Tensor& a, const torch::Tensor& b, bool ta, bool tb, GemmPrecision p) {
  auto r = [&](const torch::Tensor& t) {
    return (p == GemmPrecision::bf16 ? t.to(torch::kBFloat16) : t).to(torch::kDouble);
  };
  return torch::matmul(op(r(a), ta), op(r(b), tb));
}

// fp32 accumulation over K products of magnitude ~1: error grows ~sqrt(K)·eps.
double tolerance(std::int64_t K) { return 1e-5 * static_cast<double>(K); }

}  // namespace

TEST_CASE("gemm equals a float64 reference for every transpose combination, 2-D and batched", "[torch][gemm]") {
  torch::manual_seed(11);
  for (auto p : {GemmPrecision::fp32, GemmPrecision::bf16})
    for (bool batched : {false, true})
      for (bool ta : {false, true})
        for (bool tb : {false, true}) {
          const std::int64_t M = 37, K = 70, N = 23, B = 3;
          auto shape = [&](std::int64_t r, std::int64_t c, bool t) {
            std::vector<std::int64_t> s{t ? c : r, t ? r : c};
            if (batched) s.insert(s.begin(), B);
            return s;
          };
          auto a = torch::randn(shape(M, K, ta)), b = torch::randn(shape(K, N, tb));
          GemmPrecisionScope scope(p);
          const auto c = gemm(a, b, ta, tb);
          const auto ref = reference(a, b, ta, tb, p);
          INFO("precision " << (p == GemmPrecision::bf16 ? "bf16" : "fp32") << " batched " << batched << " ta " << ta
                            << " tb " << tb);
          CHECK(c.scalar_type() == torch::kFloat);
          CHECK(c.sizes() == ref.sizes());
          CHECK((c.to(torch::kDouble) - ref).abs().max().item<double>() < tolerance(K));
        }
}

// Shapes that fp32 splits into uneven output tiles (1100 rows: 4 tiles of 275;
// 300 columns: 2 of 150), every transpose combination, and beta = 0.5 adding
// to what c held: each tile must read and write its own block of c.
TEST_CASE("gemm_into over output tiles equals a float64 reference, with beta, for every transpose", "[torch][gemm]") {
  torch::manual_seed(14);
  const std::int64_t M = 1100, K = 70, N = 300;
  for (auto p : {GemmPrecision::fp32, GemmPrecision::bf16})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        CAPTURE(p == GemmPrecision::bf16, ta, tb);
        const auto a = ta ? torch::randn({K, M}) : torch::randn({M, K});
        const auto b = tb ? torch::randn({N, K}) : torch::randn({K, N});
        const auto c0 = torch::randn({M, N});
        auto c = c0.clone();
        gemm_into(to_compute(a, p), ta, to_compute(b, p), tb, c, 0.5f);
        const auto ref = reference(a, b, ta, tb, p) + 0.5 * c0.to(torch::kDouble);
        CHECK((c.to(torch::kDouble) - ref).abs().max().item<double>() < tolerance(K) + 1e-6);
        // Operands and output as column windows of wider matrices (leading
        // dimension > columns): each tile must step by the leading dimension,
        // and c's other columns stay as they were.
        const auto aw = to_compute(torch::randn({a.size(0), a.size(1) + 9}), p);
        const auto bw = to_compute(torch::randn({b.size(0), b.size(1) + 5}), p);
        aw.narrow(1, 4, a.size(1)).copy_(to_compute(a, p));
        bw.narrow(1, 2, b.size(1)).copy_(to_compute(b, p));
        const auto cw0 = torch::randn({M, N + 7});
        auto cw = cw0.clone();
        auto cv = cw.narrow(1, 3, N);
        gemm_into(aw.narrow(1, 4, a.size(1)), ta, bw.narrow(1, 2, b.size(1)), tb, cv, 0.5f);
        const auto refw = reference(a, b, ta, tb, p) + 0.5 * cw0.narrow(1, 3, N).to(torch::kDouble);
        CHECK((cv.to(torch::kDouble) - refw).abs().max().item<double>() < tolerance(K) + 1e-6);
        CHECK(torch::equal(cw.narrow(1, 0, 3), cw0.narrow(1, 0, 3)));
        CHECK(torch::equal(cw.narrow(1, N + 3, 4), cw0.narrow(1, N + 3, 4)));
      }
}

TEST_CASE("bf16 gemm rounds its operands: it differs from the fp32 product by bf16 error", "[torch][gemm]") {
  torch::manual_seed(12);
  auto a = torch::randn({64, 128}), b = torch::randn({128, 32});
  const auto exact = reference(a, b, false, false, GemmPrecision::fp32);
  GemmPrecisionScope scope(GemmPrecision::bf16);
  const double err = (gemm(a, b).to(torch::kDouble) - exact).abs().max().item<double>();
  INFO("bf16 error " << err);
  // bf16 keeps 8 significant bits: relative rounding 2^-9 per operand, so the
  // error over 128 products of N(0,1)·N(0,1) is of order 2^-8·sqrt(128) ≈ 0.04.
  CHECK(err > 1e-3);
  CHECK(err < 0.5);
}

TEST_CASE("gemm gradients equal LibTorch autograd through the same product", "[torch][gemm]") {
  torch::manual_seed(13);
  for (bool batched : {false, true})
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        std::vector<std::int64_t> sa{ta ? 9 : 7, ta ? 7 : 9}, sb{tb ? 5 : 9, tb ? 9 : 5};
        if (batched) {
          sa.insert(sa.begin(), 2);
          sb.insert(sb.begin(), 2);
        }
        auto a = torch::randn(sa, torch::dtype(torch::kDouble)), b = torch::randn(sb, torch::dtype(torch::kDouble));
        auto upstream = torch::randn(batched ? std::vector<std::int64_t>{2, 7, 5} : std::vector<std::int64_t>{7, 5},
                                     torch::dtype(torch::kDouble));
        auto a1 = a.to(torch::kFloat).requires_grad_(), b1 = b.to(torch::kFloat).requires_grad_();
        (gemm(a1, b1, ta, tb) * upstream.to(torch::kFloat)).sum().backward();
        auto a2 = a.clone().requires_grad_(), b2 = b.clone().requires_grad_();
        (torch::matmul(op(a2, ta), op(b2, tb)) * upstream).sum().backward();
        INFO("batched " << batched << " ta " << ta << " tb " << tb);
        CHECK((a1.grad().to(torch::kDouble) - a2.grad()).abs().max().item<double>() < 1e-4);
        CHECK((b1.grad().to(torch::kDouble) - b2.grad()).abs().max().item<double>() < 1e-4);
      }
}

TEST_CASE("a backward pass keeps the precision of its forward pass", "[torch][gemm]") {
  torch::manual_seed(14);
  auto a = torch::randn({16, 64}).requires_grad_(), b = torch::randn({64, 8});
  auto g = torch::randn({16, 8});
  torch::Tensor out;
  {
    GemmPrecisionScope scope(GemmPrecision::bf16);
    out = gemm(a, b);
  }
  (out * g).sum().backward();  // outside the scope: must still use bf16 operands
  const auto expect = torch::matmul(g.to(torch::kBFloat16).to(torch::kDouble),
                                    b.to(torch::kBFloat16).to(torch::kDouble).t());
  CHECK((a.grad().to(torch::kDouble) - expect).abs().max().item<double>() < tolerance(8));
}

TEST_CASE("gemm_matmul and gemm_linear keep leading dimensions and match their definitions", "[torch][gemm]") {
  torch::manual_seed(15);
  auto x = torch::randn({2, 3, 6}), w = torch::randn({6, 4}), wt = torch::randn({5, 6});
  CHECK(gemm_matmul(x, w).sizes() == torch::IntArrayRef({2, 3, 4}));
  CHECK(gemm_linear(x, wt).sizes() == torch::IntArrayRef({2, 3, 5}));
  CHECK(torch::allclose(gemm_matmul(x, w), torch::matmul(x, w), 1e-5, 1e-5));
  CHECK(torch::allclose(gemm_linear(x, wt), torch::nn::functional::linear(x, wt), 1e-5, 1e-5));
}

TEST_CASE("gemm rejects mismatched operands with a message naming the dimensions", "[torch][gemm]") {
  auto a = torch::randn({3, 4}), b = torch::randn({5, 2});
  CHECK_THROWS_WITH(gemm(a, b), Catch::Contains("inner dimensions differ (4 vs 5)"));
  CHECK_THROWS_WITH(gemm(a, torch::randn({2, 4, 2})), Catch::Contains("must both be 2-D or both 3-D"));
  CHECK_THROWS_WITH(gemm(a.to(torch::kDouble), torch::randn({4, 2})), Catch::Contains("float32"));
  CHECK(gemm(torch::randn({0, 4}), torch::randn({4, 3})).sizes() == torch::IntArrayRef({0, 3}));
  CHECK(torch::equal(gemm(torch::randn({2, 0}), torch::randn({0, 3})), torch::zeros({2, 3})));
}

// An empty reduction, as BLAS defines it: beta = 0 never reads c (here NaN,
// as fresh memory may hold), other betas scale it.
TEST_CASE("gemm_into with K = 0 writes zeros for beta 0 whatever c held, and beta * c otherwise", "[torch][gemm]") {
  const auto a = torch::randn({2, 0}), b = torch::randn({0, 3});
  auto c = torch::full({2, 3}, std::numeric_limits<float>::quiet_NaN());
  gemm_into(a, false, b, false, c, 0.0f);
  CHECK(torch::equal(c, torch::zeros({2, 3})));
  auto d = torch::full({2, 3}, 4.0f);
  gemm_into(a, false, b, false, d, 0.5f);
  CHECK(torch::equal(d, torch::full({2, 3}, 2.0f)));
}

TEST_CASE("bf16_bits stores what LibTorch's .to(kBFloat16) stores, specials and subnormals included", "[torch][gemm]") {
  torch::manual_seed(11);
  auto x = torch::cat({torch::randn({4096}) * 3.0, torch::rand({1024}) * 1e-38,  // subnormals
                       torch::tensor({0.0f, -0.0f, 1.0f, -1.0f, 3.4e38f, -3.4e38f, 1.00390625f, 1.01171875f})});
  const float inf = std::numeric_limits<float>::infinity();
  x = torch::cat({x, torch::tensor({inf, -inf, std::numeric_limits<float>::quiet_NaN()})});
  const auto want = x.to(torch::kBFloat16).contiguous();
  const auto* w = static_cast<const std::uint16_t*>(want.data_ptr());
  const float* xp = x.data_ptr<float>();
  for (std::int64_t i = 0; i < x.numel(); ++i) {
    INFO("x = " << xp[i]);
    REQUIRE(bf16_bits(xp[i]) == w[i]);
  }
}

// A second implementation: LibTorch's own cast. Sizes around the parallel
// chunk (2^15) and a tail, a transposed (non-contiguous) view, a double input,
// and bf16 passed through unchanged.
TEST_CASE("to_bf16 gives the bits of .to(kBFloat16) for any size, layout and input dtype", "[torch][gemm]") {
  torch::manual_seed(12);
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  for (std::int64_t n : {1, 17, 32768, 32769, 100003}) {
    auto x = torch::randn({n}) * 5.0;
    x.index_put_({0}, nan);
    if (n > 3) x.index_put_({n - 1}, inf), x.index_put_({n - 2}, -0.0f), x.index_put_({n / 2}, 1e-39f);
    CAPTURE(n);
    const auto got = to_bf16(x);
    REQUIRE(got.scalar_type() == torch::kBFloat16);
    CHECK(torch::equal(got.view(torch::kShort), x.to(torch::kBFloat16).view(torch::kShort)));
  }
  const auto m = torch::randn({300, 257});
  const auto mt = m.t();
  REQUIRE_FALSE(mt.is_contiguous());
  const auto got_t = to_bf16(mt);
  CHECK(got_t.sizes() == mt.sizes());
  CHECK(torch::equal(got_t.view(torch::kShort), mt.to(torch::kBFloat16).contiguous().view(torch::kShort)));
  const auto d = torch::randn({1000}, torch::kDouble);
  CHECK(torch::equal(to_bf16(d).view(torch::kShort), d.to(torch::kBFloat16).view(torch::kShort)));
  const auto b = m.to(torch::kBFloat16);
  CHECK(to_bf16(b).data_ptr() == b.data_ptr());
}

// Determinism across thread counts at the shapes the topk model multiplies
// (forward and both gradients of every projection, the experts, the head, the
// gate and one attention head). Before fp32 went by fixed tiles, oneDNN's
// multi-threaded sgemm summed the SwiGLU's dx (K = 2048, NT) in another order
// on 2 threads than on 1.
TEST_CASE("gemm gives the same bits on 1 and on 2 threads at every shape of the topk model and at small outputs, fp32 and bf16",
          "[torch][gemm]") {
  struct Shape {
    const char* name;
    std::int64_t m, n, k;
    bool ta, tb;
  };
  const Shape shapes[] = {
      {"qkv", 2048, 768, 256, false, true},       {"qkv dx", 2048, 256, 768, false, false},
      {"qkv dw", 768, 256, 2048, true, false},    {"o dw", 256, 256, 2048, true, false},
      {"w13", 2048, 2048, 256, false, false},     {"w13 dx", 2048, 256, 2048, false, true},
      {"w13 dw", 256, 2048, 2048, true, false},   {"w2", 2048, 256, 1024, false, false},
      {"w2 dh", 2048, 1024, 256, false, true},    {"w2 dw", 1024, 256, 2048, true, false},
      {"expert w13", 512, 2048, 256, false, false}, {"expert dx", 512, 256, 2048, false, true},
      {"expert w13 dw", 256, 2048, 512, true, false}, {"head", 1024, 8000, 256, false, true},
      {"head dh", 1024, 256, 8000, false, false}, {"head dW", 8000, 256, 1024, true, false},
      {"gate", 2048, 8, 256, false, true},        {"gate dw", 8, 256, 2048, true, false},
      {"scores", 256, 256, 64, false, true},      {"values dv", 256, 64, 256, true, false},
      // Small outputs with a long reduction, where oneDNN's bf16 GEMM split K
      // over threads: the router MLP's gate gradient at dim 128, tiny.yaml's
      // output projection gradient at 2048 tokens, select_selector's qkv dW.
      {"router mlp gate dw", 8, 64, 2048, true, false}, {"tiny o dw", 32, 32, 2048, true, false},
      {"selector qkv dw", 384, 128, 1024, true, false}};
  torch::manual_seed(13);
  const int threads = at::get_num_threads();
  for (auto p : {GemmPrecision::fp32, GemmPrecision::bf16})
    for (const auto& s : shapes) {
      CAPTURE(s.name, p == GemmPrecision::bf16);
      const auto a = to_compute(s.ta ? torch::randn({s.k, s.m}) : torch::randn({s.m, s.k}), p);
      const auto b = to_compute(s.tb ? torch::randn({s.n, s.k}) : torch::randn({s.k, s.n}), p);
      auto c1 = torch::empty({s.m, s.n}), c2 = torch::empty({s.m, s.n});
      at::set_num_threads(1);
      gemm_into(a, s.ta, b, s.tb, c1, 0.0f);
      at::set_num_threads(2);
      gemm_into(a, s.ta, b, s.tb, c2, 0.0f);
      at::set_num_threads(threads);
      CHECK(torch::equal(c1, c2));
    }
}
