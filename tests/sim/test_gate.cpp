// The gate: forward product, the reward update by hand, and the auxiliary-loss
// gradient against finite differences of the policy library's own losses.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <vector>

#include "policies/aux_losses.hpp"
#include "sim/gate.hpp"

using namespace moesim;

TEST_CASE("forward is X W^T; noise only on what the policy sees", "[gate]") {
  GateConfig cfg;
  Gate g(cfg, 3, 2, 1);
  RowMatrixXf x(2, 2);
  x << 1, 2, -1, 0.5;
  g.forward(x);
  const auto& W = g.weight();
  for (int t = 0; t < 2; ++t)
    for (int e = 0; e < 3; ++e) CHECK(g.clean()(t, e) == Approx(x(t, 0) * W(e, 0) + x(t, 1) * W(e, 1)));
  CHECK(&g.seen() == &g.clean());
  cfg.noise = 1.0;
  Gate n(cfg, 3, 2, 1);
  n.forward(x);
  CHECK(n.weight() == W);  // the init stream does not depend on the noise knob
  CHECK(n.clean() == g.clean());
  CHECK(n.seen() != n.clean());
}

TEST_CASE("reward update by hand", "[gate]") {
  GateConfig cfg;
  cfg.lr = 0.5;
  cfg.init_scale = 0.0;  // W starts at 0
  Gate g(cfg, 2, 2, 1);
  RowMatrixXf x(2, 2);
  x << 1, 0, 0, 2;
  Assignment a;
  a.reset(2, 2, 1);
  a.expert = {0, 1};
  const std::vector<float> perf = {1.0f, 0.0f};
  g.forward(x);
  g.update(x, a, perf.data());
  // b = mean(1, 0) = 0.5; scale lr/T = 0.25.
  // W_0 += 0.25 * (1 - 0.5) * (1, 0) = (0.125, 0); W_1 += 0.25 * (0 - 0.5) * (0, 2) = (0, -0.25).
  CHECK(g.baseline() == 0.5);
  CHECK(g.weight()(0, 0) == Approx(0.125));
  CHECK(g.weight()(0, 1) == 0.0f);
  CHECK(g.weight()(1, 0) == 0.0f);
  CHECK(g.weight()(1, 1) == Approx(-0.25));
  // Second batch: baseline EMA with rate 0.5 moves half way to the new mean 1.
  cfg.baseline_rate = 0.5;
  Gate h(cfg, 2, 2, 1);
  h.forward(x);
  h.update(x, a, perf.data());
  const std::vector<float> ones = {1.0f, 1.0f};
  h.update(x, a, ones.data());
  CHECK(h.baseline() == Approx(0.75));
  // L2 pull: W <- (1 - lr*l2) W before the step.
  cfg.l2 = 0.4;
  cfg.baseline_rate = 1.0;
  Gate d(cfg, 2, 2, 1);
  d.forward(x);
  d.update(x, a, perf.data());
  d.update(x, a, ones.data());  // zero advantage: only the decay acts
  CHECK(d.weight()(0, 0) == Approx(0.125 * 0.8));
  CHECK(d.weight()(1, 1) == Approx(-0.25 * 0.8));
}

TEST_CASE("aux and z-loss gradients match finite differences of the library's losses", "[gate]") {
  GateConfig cfg;
  cfg.aux_loss = 0.7;
  cfg.z_loss = 0.3;
  cfg.lr = 1e-3;
  const int T = 5, E = 4, d = 3;
  Gate g(cfg, E, d, 3);
  RowMatrixXf x(T, d);
  Rng rng(5);
  for (int i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
  Assignment a;
  a.reset(T, E, 1);
  a.expert = {0, 0, 1, 3, 0};
  a.counts = {3, 1, 0, 1};
  const RowMatrixXf W0 = g.weight();
  auto loss = [&](const RowMatrixXf& W) {
    RowMatrixXf z = x * W.transpose();
    return cfg.aux_loss * load_balancing_loss(z.data(), T, E, a) + cfg.z_loss * z_loss(z.data(), T, E);
  };
  g.forward(x);
  g.update(x, a, nullptr);
  for (int e = 0; e < E; ++e)
    for (int j = 0; j < d; ++j) {
      RowMatrixXf p = W0, m = W0;
      const float h = 1e-2f;
      p(e, j) += h;
      m(e, j) -= h;
      const double numeric = (loss(p) - loss(m)) / (2.0 * h);
      const double applied = (W0(e, j) - g.weight()(e, j)) / cfg.lr;
      CHECK(applied == Approx(numeric).margin(2e-3).epsilon(0.02));
    }
}

TEST_CASE("router_dtype bf16: the policy sees the logits rounded to the nearest bfloat16, ties to even", "[gate]") {
  GateConfig cfg;
  cfg.init_scale = 0.0;
  cfg.router_dtype = "bf16";
  Gate g(cfg, 1, 1, 1);
  // bf16 keeps 8 significant bits: near 1 the step is 2^-7 = 0.0078125.
  //   1 + 2^-8 (a tie)         -> 1          (even)
  //   1 + 3*2^-8 (a tie)       -> 1 + 2^-6   (even: 1.015625)
  //   1 + 2^-8 + 2^-12         -> 1 + 2^-7   (above the tie)
  //   -3.14159                 -> -3.140625
  const std::vector<float> in = {1.00390625f, 1.01171875f, 1.00415039f, -3.14159f};
  const std::vector<float> want = {1.0f, 1.015625f, 1.0078125f, -3.140625f};
  RowMatrixXf x(4, 1);
  for (int t = 0; t < 4; ++t) x(t, 0) = in[static_cast<std::size_t>(t)];
  // W = 1 (the gate's only weight, set through its own storage): the clean logits are the inputs.
  const_cast<RowMatrixXf&>(g.weight())(0, 0) = 1.0f;
  g.forward(x);
  for (int t = 0; t < 4; ++t) {
    CHECK(g.clean()(t, 0) == in[static_cast<std::size_t>(t)]);
    CHECK(g.seen()(t, 0) == want[static_cast<std::size_t>(t)]);
  }
  // Random logits against the definition: 8 significant bits, round half to even.
  GateConfig rc = cfg;
  rc.init_scale = 3.0;
  Gate r(rc, 16, 8, 5);
  RowMatrixXf xr = RowMatrixXf::Random(64, 8);
  r.forward(xr);
  for (Eigen::Index i = 0; i < r.clean().size(); ++i) {
    int e = 0;
    const double m = std::frexp(static_cast<double>(r.clean().data()[i]), &e);  // |m| in [0.5, 1)
    const double want_i = std::ldexp(std::nearbyint(std::ldexp(m, 8)), e - 8);
    CHECK(static_cast<double>(r.seen().data()[i]) == want_i);
  }
}

TEST_CASE("jitter_eps: logits of the jittered input, every factor inside [1 - eps, 1 + eps]", "[gate]") {
  GateConfig cfg;
  cfg.jitter_eps = 0.1;
  Gate g(cfg, 3, 4, 2);
  RowMatrixXf x = RowMatrixXf::Constant(50, 4, 2.0f);
  g.forward(x);
  const auto& xj = g.input(x);
  REQUIRE(&xj != &x);
  bool varied = false;
  for (Eigen::Index i = 0; i < xj.size(); ++i) {
    CHECK(xj.data()[i] >= 1.8f);
    CHECK(xj.data()[i] <= 2.2f);
    varied |= xj.data()[i] != 2.0f;
  }
  CHECK(varied);
  const RowMatrixXf z = xj * g.weight().transpose();
  CHECK(g.clean().isApprox(z));
  CHECK(&g.seen() == &g.clean());
}

TEST_CASE("force_balance: the policy sees standard-normal logits whatever the gate computes", "[gate]") {
  GateConfig cfg;
  cfg.force_balance = true;
  cfg.init_scale = 100.0;  // a gate that would collapse routing
  Gate g(cfg, 8, 4, 3);
  RowMatrixXf x = RowMatrixXf::Constant(2000, 4, 1.0f);
  g.forward(x);
  double sum = 0, sq = 0;
  for (Eigen::Index i = 0; i < g.seen().size(); ++i) {
    sum += g.seen().data()[i];
    sq += double(g.seen().data()[i]) * g.seen().data()[i];
  }
  const double n = static_cast<double>(g.seen().size()), mean = sum / n, sd = std::sqrt(sq / n - mean * mean);
  // 16000 draws: the mean's sd is 0.008.
  CHECK(std::fabs(mean) < 0.05);
  CHECK(std::fabs(sd - 1.0) < 0.05);
  CHECK(g.clean()(0, 0) == g.clean()(1, 0));  // the gate itself is unchanged
}

TEST_CASE("reward step: one fused multiply-add per weight and served slot, in slot order", "[gate]") {
  // d = 37 takes the 16-float blocks and the per-element tail, d = 16, 32 and 64
  // the loops compiled for those widths; the expected W is the header's update
  // written out with std::fma, slot after slot.
  const int d = GENERATE(37, 32, 16, 64);
  const int T = 40, E = 5, k = 2;
  GateConfig cfg;
  cfg.lr = 0.3;
  Gate g(cfg, E, d, 7);
  Rng rng(8);
  RowMatrixXf x(T, d);
  for (Eigen::Index i = 0; i < x.size(); ++i) x.data()[i] = static_cast<float>(rng.normal());
  Assignment a;
  a.reset(T, E, k);
  std::vector<float> perf(static_cast<std::size_t>(T) * k);
  for (std::size_t i = 0; i < perf.size(); ++i) {
    a.expert[i] = rng.uniform() < 0.3 ? kNoExpert : static_cast<std::int32_t>(rng.below(E));
    perf[i] = a.expert[i] == kNoExpert ? std::nanf("") : static_cast<float>(rng.uniform());  // empty: never read
  }
  RowMatrixXf want = g.weight();
  double sum = 0.0;
  int n = 0;
  for (std::size_t i = 0; i < perf.size(); ++i)
    if (a.expert[i] != kNoExpert) sum += perf[i], ++n;
  const auto b = static_cast<float>(sum / n);  // the first batch's baseline is its mean
  for (std::size_t i = 0; i < perf.size(); ++i) {
    if (a.expert[i] == kNoExpert) continue;
    const auto c = static_cast<float>(cfg.lr / T * (perf[i] - b));
    for (int q = 0; q < d; ++q)
      want(a.expert[i], q) = std::fma(c, x(static_cast<Eigen::Index>(i / k), q), want(a.expert[i], q));
  }
  g.forward(x);
  g.update(x, a, perf.data());
  CHECK(g.baseline() == sum / n);
  for (Eigen::Index i = 0; i < want.size(); ++i)
    REQUIRE(std::bit_cast<std::uint32_t>(g.weight().data()[i]) == std::bit_cast<std::uint32_t>(want.data()[i]));
}
