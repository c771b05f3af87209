// The optimizer's bf16 weight copies (bf16_shadow.hpp): the same bits as a
// cast, used by to_compute while valid, never once the parameter changed.
#include <catch2/catch.hpp>

#include "torch_backend/bf16_shadow.hpp"
#include "torch_backend/gemm.hpp"
#include "torch_backend/optim.hpp"

using namespace moesim::torch_backend;

namespace {

torch::Tensor bits(const torch::Tensor& bf16) { return bf16.view(torch::kShort); }

// Three AdamW steps of a two-layer bf16 product (x w1 w2, squared) on the same
// start; returns the parameters after them.
std::vector<torch::Tensor> train_three_steps(bool copies) {
  torch::manual_seed(21);
  auto w1 = (torch::randn({40, 64}) * 0.3).requires_grad_(true), w2 = (torch::randn({64, 24}) * 0.3).requires_grad_(true);
  torch::optim::AdamW opt({w1, w2}, torch::optim::AdamWOptions(1e-2).weight_decay(0.1));
  const auto x = torch::randn({50, 40});
  for (int s = 0; s < 3; ++s) {
    opt.zero_grad();
    GemmPrecisionScope bf16(GemmPrecision::bf16);
    gemm(gemm(x, w1), w2).pow(2).mean().backward();
    fused_adamw_step(opt, 1.0f, copies);
  }
  return {w1.detach().clone(), w2.detach().clone(), w1, w2};
}

}  // namespace

// A second implementation: the same steps casting every weight. The copies must
// actually be used (to_compute hands out the copy's own storage) and hold the
// bits of the cast.
TEST_CASE("bf16 copies written by AdamW give bitwise the same training as casting, and are used", "[torch][bf16_shadow]") {
  clear_bf16_shadows();
  const auto cast = train_three_steps(false);
  CHECK_FALSE(bf16_shadow(cast[2]).defined());
  const auto kept = train_three_steps(true);
  for (int i = 0; i < 2; ++i) {
    CAPTURE(i);
    CHECK(torch::equal(cast[static_cast<std::size_t>(i)], kept[static_cast<std::size_t>(i)]));
    const auto& p = kept[static_cast<std::size_t>(i) + 2];
    const auto copy = bf16_shadow(p);
    REQUIRE(copy.defined());
    CHECK(to_compute(p, GemmPrecision::bf16).data_ptr() == copy.data_ptr());
    CHECK(torch::equal(bits(copy), bits(to_bf16(p.detach()))));
  }
  clear_bf16_shadows();
  CHECK_FALSE(bf16_shadow(kept[2]).defined());
}

TEST_CASE("a bf16 copy is not used once its parameter changed in place", "[torch][bf16_shadow]") {
  clear_bf16_shadows();
  auto p = torch::randn({33, 7});
  set_bf16_shadow(p, to_bf16(p));
  REQUIRE(bf16_shadow(p).defined());
  {
    torch::NoGradGuard ng;
    p.mul_(3.0f);  // bumps the version counter
  }
  CHECK_FALSE(bf16_shadow(p).defined());
  CHECK(torch::equal(bits(to_compute(p, GemmPrecision::bf16)), bits(p.to(torch::kBFloat16))));
  // A copy recorded anew is valid again; another tensor of the same shape has none.
  set_bf16_shadow(p, to_bf16(p));
  CHECK(bf16_shadow(p).defined());
  CHECK_FALSE(bf16_shadow(p.clone()).defined());
  CHECK_THROWS_WITH(set_bf16_shadow(p, to_bf16(p).t().contiguous()), Catch::Contains("parameter's shape"));
  clear_bf16_shadows();
}

// AdamW writes parameters by pointer; without copies it must still retire an
// earlier copy, or to_compute would hand out the weights before the step.
TEST_CASE("an fp32 AdamW step retires the bf16 copy recorded before it", "[torch][bf16_shadow]") {
  clear_bf16_shadows();
  torch::manual_seed(23);
  auto w = torch::randn({12, 6}).requires_grad_(true);
  torch::optim::AdamW opt({w}, torch::optim::AdamWOptions(1e-2));
  w.mutable_grad() = torch::randn({12, 6});
  fused_adamw_step(opt, 1.0f, true);
  REQUIRE(bf16_shadow(w).defined());
  fused_adamw_step(opt, 1.0f, false);
  CHECK_FALSE(bf16_shadow(w).defined());
  CHECK(torch::equal(bits(to_compute(w, GemmPrecision::bf16)), bits(w.detach().to(torch::kBFloat16))));
  clear_bf16_shadows();
}

// A graph that saved a copy (the backward of a bf16 GEMM multiplies by it) must
// not run after the optimizer rewrote that copy: it would multiply by the new
// weights. The version check refuses it.
TEST_CASE("backward through a graph saved before the optimizer rewrote its bf16 copy is refused", "[torch][bf16_shadow]") {
  clear_bf16_shadows();
  torch::manual_seed(22);
  auto w = torch::randn({16, 8}).requires_grad_(true);
  torch::optim::AdamW opt({w}, torch::optim::AdamWOptions(1e-2));
  const auto x = torch::randn({5, 16});
  GemmPrecisionScope bf16(GemmPrecision::bf16);
  gemm(x, w).sum().backward();
  fused_adamw_step(opt, 1.0f, true);  // records w's copy
  auto y = gemm(x, w).sum();          // saves the copy
  fused_adamw_step(opt, 1.0f, true);  // rewrites it
  CHECK_THROWS(y.backward());
  clear_bf16_shadows();
}
