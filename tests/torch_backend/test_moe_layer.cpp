// The MoE layer's router options: the MLP head of seed 002, bf16 routing, input
// jitter, forced balancing with a straight-through gradient, global-batch aux
// counts; and the trainer's loss terms and refusals that come with them.
#include <catch2/catch.hpp>

#include <cmath>

#include "helpers.hpp"
#include "policies/registry.hpp"
#include "torch_backend/model.hpp"
#include "torch_backend/moe_layer.hpp"
#include "torch_backend/router_math.hpp"
#include "torch_backend/trainer.hpp"

using namespace moesim;
using namespace moesim::torch_backend;
using namespace moesim::tb_test;

namespace {
std::shared_ptr<MoeLayer> make_layer(RouterOptions ro, const std::string& policy = "topk", KnobMap knobs = {{"dropless", "true"}},
                                     int E = 4, int D = 8) {
  ro.aux.k = 2;
  return std::make_shared<MoeLayer>(0, D, 8, E, make_policy(policy, E, 2, knobs), 7, 0.5, 0.5, ro);
}
}  // namespace

TEST_CASE("router head mlp: logits = W2 LayerNorm(ReLU(W1 x))",
          "[torch][moe_layer]") {
  RouterOptions ro;
  ro.mlp = true;
  ro.mlp_hidden = 6;
  auto layer = make_layer(ro);
  REQUIRE(layer->mlp_w1.sizes() == std::vector<std::int64_t>{6, 8});
  REQUIRE(layer->gate.sizes() == std::vector<std::int64_t>{4, 6});
  {
    auto x = torch::randn({10, 8});
    layer->eval();
    torch::NoGradGuard ng;
    (void)layer->forward(x, torch::zeros({10}, torch::kLong));
    // The same formula through LibTorch's own ops.
    auto h = torch::relu(torch::matmul(x, layer->mlp_w1.t()));
    const auto mu = h.mean(1, true), var = h.var(1, false, true);
    h = (h - mu) / torch::sqrt(var + 1e-5) * layer->mlp_ln_w + layer->mlp_ln_b;
    auto want = torch::matmul(h, layer->gate.t());
    CHECK(torch::allclose(layer->last_logits, want, 1e-4, 1e-5));
    CHECK(layer->router_parameters().size() == 4u);
  }

}

TEST_CASE("router_dtype bf16: the policy routes logits rounded to bfloat16, and gradients still reach the gate",
          "[torch][moe_layer]") {
  RouterOptions ro;
  ro.bf16 = true;
  auto layer = make_layer(ro);
  layer->train();
  auto out = layer->forward(torch::randn({32, 8}), torch::zeros({32}, torch::kLong));
  auto lg = layer->last_logits.detach();
  CHECK(torch::equal(lg, lg.to(torch::kBFloat16).to(torch::kFloat)));  // every value is a bf16 value
  out.pow(2).sum().backward();
  CHECK(layer->gate.grad().abs().sum().item<double>() > 0);
}

TEST_CASE("jitter_eps: training routes the jittered input's logits, evaluation the clean ones", "[torch][moe_layer]") {
  RouterOptions ro;
  ro.jitter_eps = 0.2;
  auto layer = make_layer(ro);
  auto x = torch::randn({64, 8});
  layer->eval();
  (void)layer->forward(x, torch::zeros({64}, torch::kLong));
  const auto clean = layer->last_logits.detach().clone();
  CHECK(torch::allclose(clean, torch::matmul(x, layer->gate.detach().t()), 1e-5, 1e-6));
  layer->train();
  (void)layer->forward(x, torch::zeros({64}, torch::kLong));
  const auto jit = layer->last_logits.detach();
  CHECK(!torch::allclose(jit, clean));
  // |x u W^T - x W^T| <= eps * |x| |W^T| row by row.
  const auto bound = 0.2 * torch::matmul(x.abs(), layer->gate.detach().abs().t()) + 1e-5;
  CHECK((jit - clean).abs().le(bound).all().item<bool>());
}

TEST_CASE("force_balance: random logits forward, the real logits' gradient backward (straight through)",
          "[torch][moe_layer]") {
  RouterOptions ro;
  ro.force_balance = true;
  // A gate that would send everything to one expert, were it not replaced.
  auto layer = make_layer(ro);
  {
    torch::NoGradGuard ng;
    layer->gate.zero_();
    layer->gate.select(0, 0).fill_(10.0);
  }
  layer->train();
  auto x = torch::ones({400, 8});
  auto out = layer->forward(x, torch::zeros({400}, torch::kLong));
  const auto& a = layer->last_assignment;
  for (auto c : a.counts) CHECK(c > 100);  // 800 slots over 4 experts, none starved
  out.pow(2).sum().backward();
  CHECK(layer->gate.grad().abs().sum().item<double>() > 0);
  // Evaluation routes on the gate again.
  layer->eval();
  (void)layer->forward(x, torch::zeros({400}, torch::kLong));
  CHECK(layer->last_assignment.counts[0] == 400);
}

TEST_CASE("aux_scope global: the load-balancing counts add up over the step's micro-batches", "[torch][moe_layer]") {
  RouterOptions ro;
  ro.aux_global = true;
  auto g = make_layer(ro);
  g->train();
  // Micro-batch 1 favours expert 0 (first input feature), micro-batch 2 expert 1.
  auto x1 = torch::zeros({20, 8}), x2 = torch::zeros({20, 8});
  x1.select(1, 0).fill_(1.0);
  x2.select(1, 1).fill_(1.0);
  {
    torch::NoGradGuard ng;
    g->gate.zero_();
    g->gate.index_put_({0, 0}, 5.0);
    g->gate.index_put_({1, 1}, 5.0);
  }
  auto expected = [](const MoeLayer& l, const std::vector<const Assignment*>& as) {
    std::vector<double> count(4, 0.0);
    double total = 0;
    for (const auto* a : as) {
      for (int e = 0; e < 4; ++e) count[static_cast<std::size_t>(e)] += static_cast<double>(a->counts[static_cast<std::size_t>(e)]);
      total += static_cast<double>(a->served());
    }
    auto P = aux_scores(l.last_logits.detach(), AuxScore::Softmax).mean(0);
    double lb = 0;
    for (int e = 0; e < 4; ++e) lb += count[static_cast<std::size_t>(e)] / total * P[e].item<double>();
    return 4 * lb;
  };
  g->begin_step();
  (void)g->forward(x1, torch::zeros({20}, torch::kLong));
  const Assignment first = g->last_assignment;
  CHECK(g->aux_lb.item<double>() == Approx(expected(*g, {&first})).epsilon(1e-5));
  (void)g->forward(x2, torch::zeros({20}, torch::kLong));
  const Assignment second = g->last_assignment;
  CHECK(g->aux_lb.item<double>() == Approx(expected(*g, {&first, &second})).epsilon(1e-5));
  // A new step starts the counts afresh.
  g->begin_step();
  (void)g->forward(x2, torch::zeros({20}, torch::kLong));
  CHECK(g->aux_lb.item<double>() == Approx(expected(*g, {&g->last_assignment})).epsilon(1e-5));
}

TEST_CASE("trainer: every loss term in the log, the entropy term enters with a minus sign, k = 1 softmax refused",
          "[torch][moe_layer]") {
  auto cfg = tiny_config();
  cfg.moe.seq_aux_coef = 0.5;
  cfg.moe.entropy_coef = 0.25;
  cfg.moe.aux_counts = "topk";
  cfg.train.steps = 2;
  auto stream = random_stream(2000, cfg.tokenizer.vocab, 5);
  Trainer tr(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
  const auto st = tr.step();
  CHECK(st.aux_seq > 0);
  CHECK(st.aux_entropy > 0);
  CHECK(st.loss == Approx(st.ce + cfg.moe.aux_loss_coef * st.aux_lb + cfg.moe.z_loss_coef * st.aux_z +
                          0.5 * st.aux_seq - 0.25 * st.aux_entropy)
                       .epsilon(1e-5));
  double psum = 0;
  for (double p : st.layers[0].mean_prob) psum += p;
  CHECK(psum == Approx(1.0).epsilon(1e-5));

  auto bad = tiny_config();
  bad.model.k = 1;
  CHECK_THROWS_WITH(validate(bad), Catch::Contains("the gate would get no gradient"));
  bad.policy.knobs["renormalize"] = "false";  // Megatron-Core's pre-softmax
  CHECK_NOTHROW(validate(bad));
  bad.policy.name = "switch";  // weight = softmax probability: fine at k = 1
  bad.policy.knobs.clear();
  CHECK_NOTHROW(validate(bad));
  auto mlp = tiny_config("noisy_topk");
  mlp.model.router_head = "mlp";
  mlp.policy.knobs["jitter_eps"] = "0.1";
  CHECK_THROWS_WITH(validate(mlp), Catch::Contains("model.router_head=linear"));
}
