// The fused head + cross-entropy against the unfused reference: LibTorch's
// linear and cross_entropy, autograd for the gradients.
#include <catch2/catch.hpp>

#include "torch_backend/fused_ce.hpp"
#include "torch_backend/gemm.hpp"

using namespace moesim::torch_backend;

namespace {
struct Ref {
  torch::Tensor per_token, dh, dw;
};

// Unfused, float64, on operands rounded as precision p rounds them.
Ref reference(const torch::Tensor& h, const torch::Tensor& w, const torch::Tensor& t, GemmPrecision p,
              const torch::Tensor& upstream) {
  auto r = [&](const torch::Tensor& x) {
    return (p == GemmPrecision::bf16 ? x.to(torch::kBFloat16) : x).to(torch::kDouble);
  };
  auto hd = r(h).requires_grad_(), wd = r(w).requires_grad_();
  auto per = torch::nn::functional::cross_entropy(torch::matmul(hd, wd.t()), t,
                                                  torch::nn::functional::CrossEntropyFuncOptions().reduction(torch::kNone));
  (per.mean() * upstream).backward();
  return {per.detach(), hd.grad(), wd.grad()};
}
}  // namespace

TEST_CASE("fused linear cross-entropy equals the unfused loss and gradients for any chunking", "[torch][fused_ce]") {
  torch::manual_seed(21);
  const std::int64_t N = 37, D = 24, V = 50;
  auto h = torch::randn({N, D}), w = torch::randn({V, D}) * 0.5;
  auto t = torch::randint(0, V, {N}, torch::kLong);
  const auto upstream = torch::tensor(1.7, torch::kDouble);
  for (auto p : {GemmPrecision::fp32, GemmPrecision::bf16}) {
    const auto ref = reference(h, w, t, p, upstream);
    for (std::int64_t chunk : {1, 5, 37, 256}) {
      GemmPrecisionScope scope(p);
      auto h1 = h.clone().requires_grad_(), w1 = w.clone().requires_grad_();
      auto out = linear_cross_entropy(h1, w1, t, chunk);
      (out.mean * upstream.to(torch::kFloat)).backward();
      INFO("precision " << (p == GemmPrecision::bf16 ? "bf16" : "fp32") << " chunk " << chunk);
      CHECK(!out.per_token.requires_grad());
      CHECK((out.per_token.to(torch::kDouble) - ref.per_token).abs().max().item<double>() < 1e-4);
      CHECK(std::abs(out.mean.item<double>() - ref.per_token.mean().item<double>()) < 1e-5);
      // bf16 rounds the logit gradient too before its GEMMs: allow its rounding.
      const double tol = p == GemmPrecision::bf16 ? 2e-3 : 1e-5;
      CHECK((h1.grad().to(torch::kDouble) - ref.dh).abs().max().item<double>() < tol);
      CHECK((w1.grad().to(torch::kDouble) - ref.dw).abs().max().item<double>() < tol);
    }
  }
}

TEST_CASE("fused linear cross-entropy without grad mode gives the same losses", "[torch][fused_ce]") {
  torch::manual_seed(22);
  auto h = torch::randn({10, 8}), w = torch::randn({12, 8});
  auto t = torch::randint(0, 12, {10}, torch::kLong);
  auto with = linear_cross_entropy(h.clone().requires_grad_(), w, t, 3);
  torch::NoGradGuard ng;
  auto without = linear_cross_entropy(h, w, t, 3);
  CHECK(torch::equal(with.per_token, without.per_token));
}

TEST_CASE("fused linear cross-entropy rejects bad shapes and out-of-range targets", "[torch][fused_ce]") {
  auto h = torch::randn({4, 8}), w = torch::randn({6, 8});
  CHECK_THROWS_WITH(linear_cross_entropy(h, torch::randn({6, 7}), torch::zeros({4}, torch::kLong)),
                    Catch::Contains("must share D"));
  CHECK_THROWS_WITH(linear_cross_entropy(h, w, torch::zeros({3}, torch::kLong)), Catch::Contains("shape (N)"));
  CHECK_THROWS_WITH(linear_cross_entropy(h, w, torch::full({4}, 6, torch::kLong)), Catch::Contains("outside [0, 6)"));
}
