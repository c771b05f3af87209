// The fused AdamW step and gradient clipping (optim.hpp) against LibTorch's
// AdamW::step and clip_grad_norm_ on the same parameters and gradients.
#include <catch2/catch.hpp>

#include <limits>
#include <vector>

#include "torch_backend/optim.hpp"

using namespace moesim::torch_backend;

namespace {

struct Setup {
  std::vector<torch::Tensor> params;
  std::unique_ptr<torch::optim::AdamW> opt;
};

// Two groups as the trainer builds them: matrices with decay, vectors without.
Setup make_setup() {
  torch::manual_seed(5);
  Setup s;
  s.params = {torch::randn({30, 20}).requires_grad_(true), torch::randn({7}).requires_grad_(true),
              torch::randn({5, 3}).requires_grad_(true)};
  auto o = torch::optim::AdamWOptions(3e-3).betas({0.9, 0.95}).eps(1e-8).weight_decay(0.1);
  auto nd = o;
  nd.weight_decay(0.0);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(std::vector<torch::Tensor>{s.params[0], s.params[2]}, std::make_unique<torch::optim::AdamWOptions>(o));
  groups.emplace_back(std::vector<torch::Tensor>{s.params[1]}, std::make_unique<torch::optim::AdamWOptions>(nd));
  s.opt = std::make_unique<torch::optim::AdamW>(std::move(groups), o);
  return s;
}

void set_grads(Setup& s, int step) {
  torch::manual_seed(100 + step);
  for (std::size_t i = 0; i < s.params.size(); ++i) {
    // The third parameter has no gradient on step 1: both must skip it alike.
    if (i == 2 && step == 1) {
      s.params[i].mutable_grad() = torch::Tensor();
      continue;
    }
    s.params[i].mutable_grad() = torch::randn_like(s.params[i]) * (1.0 + step);
  }
}

}  // namespace

TEST_CASE("fused_adamw_step equals torch::optim::AdamW::step over steps, groups and a missing gradient",
          "[torch][optim]") {
  auto a = make_setup(), b = make_setup();
  for (int step = 0; step < 4; ++step) {
    set_grads(a, step);
    set_grads(b, step);
    a.opt->step();
    fused_adamw_step(*b.opt);
    for (std::size_t i = 0; i < a.params.size(); ++i) {
      CAPTURE(step, i);
      // Float rounding only: elementwise within 1e-6 of each tensor's largest entry.
      auto close = [](const torch::Tensor& x, const torch::Tensor& ref) {
        return (x - ref).abs().max().item<double>() <= 1e-6 * ref.abs().max().item<double>();
      };
      CHECK(close(b.params[i], a.params[i]));
      const auto key = c10::guts::to_string(a.params[i].unsafeGetTensorImpl());
      const auto keyb = c10::guts::to_string(b.params[i].unsafeGetTensorImpl());
      auto& sa = static_cast<torch::optim::AdamWParamState&>(*a.opt->state().at(key));
      auto& sb = static_cast<torch::optim::AdamWParamState&>(*b.opt->state().at(keyb));
      CHECK(sa.step() == sb.step());
      CHECK(close(sb.exp_avg(), sa.exp_avg()));
      CHECK(close(sb.exp_avg_sq(), sa.exp_avg_sq()));
    }
  }
}

TEST_CASE("clip_grad_norm equals clip_grad_norm_: the norm returned and the gradients scaled", "[torch][optim]") {
  for (double max_norm : {0.5, 1e9}) {
    auto a = make_setup(), b = make_setup();
    set_grads(a, 1);
    set_grads(b, 1);
    const double na = torch::nn::utils::clip_grad_norm_(a.params, max_norm);
    const double nb = clip_grad_norm(b.params, max_norm);
    CAPTURE(max_norm);
    CHECK(nb == Approx(na).epsilon(1e-6));
    for (std::size_t i = 0; i < a.params.size(); ++i) {
      if (!a.params[i].grad().defined()) {
        CHECK(!b.params[i].grad().defined());
        continue;
      }
      CHECK(torch::allclose(b.params[i].grad(), a.params[i].grad(), 1e-6, 1e-8));
    }
  }
}

TEST_CASE("fused_adamw_step with clip_scale's factor equals clip_grad_norm followed by the step, bit for bit",
          "[torch][optim]") {
  auto a = make_setup(), b = make_setup();
  for (int step = 0; step < 4; ++step) {
    set_grads(a, step);
    set_grads(b, step);
    // 0.5 clips every step (the gradients' norm is above 10), 1e9 never does.
    const double max_norm = step % 2 == 0 ? 0.5 : 1e9;
    const double na = clip_grad_norm(a.params, max_norm);
    fused_adamw_step(*a.opt);
    const double nb = grad_norm(b.params);
    CHECK(nb == na);
    CHECK((clip_scale(nb, max_norm) < 1.0f) == (step % 2 == 0));
    fused_adamw_step(*b.opt, clip_scale(nb, max_norm));
    for (std::size_t i = 0; i < a.params.size(); ++i) {
      CAPTURE(step, i);
      CHECK(torch::equal(b.params[i], a.params[i]));
      const auto key = c10::guts::to_string(a.params[i].unsafeGetTensorImpl());
      const auto keyb = c10::guts::to_string(b.params[i].unsafeGetTensorImpl());
      auto& sa = static_cast<torch::optim::AdamWParamState&>(*a.opt->state().at(key));
      auto& sb = static_cast<torch::optim::AdamWParamState&>(*b.opt->state().at(keyb));
      CHECK(torch::equal(sb.exp_avg(), sa.exp_avg()));
      CHECK(torch::equal(sb.exp_avg_sq(), sa.exp_avg_sq()));
    }
  }
}

TEST_CASE("clip_scale is max_norm / (norm + 1e-6) below 1 and 1 otherwise, also for an infinite max_norm and a NaN norm",
          "[torch][optim]") {
  CHECK(clip_scale(3.0, 1.5) == static_cast<float>(1.5 / (3.0 + 1e-6)));
  CHECK(clip_scale(0.5, 1.0) == 1.0f);
  CHECK(clip_scale(1.0, 1.0) == static_cast<float>(1.0 / (1.0 + 1e-6)));
  CHECK(clip_scale(7.0, std::numeric_limits<double>::infinity()) == 1.0f);
  CHECK(clip_scale(std::numeric_limits<double>::quiet_NaN(), 1.0) == 1.0f);
}
