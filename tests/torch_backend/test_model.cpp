// The MoE layer routes through every registry policy; the weights it uses equal
// the policy's own, gradients reach the gate; a tiny model overfits one batch.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>

#include "helpers.hpp"
#include "policies/registry.hpp"
#include "torch_backend/model.hpp"
#include "torch_backend/generate.hpp"
#include "torch_backend/moe_layer.hpp"
#include "torch_backend/gemm.hpp"
#include "torch_backend/router_math.hpp"
#include "torch_backend/trainer.hpp"

using namespace moesim;
using namespace moesim::torch_backend;
using namespace moesim::tb_test;

namespace {

struct Case {
  std::string policy;
  KnobMap knobs;
};

std::vector<Case> all_cases() {
  std::vector<Case> cs;
  for (const auto& info : policy_registry()) cs.push_back({info.name, {}});
  // Variants that exercise the other weight rules and the gate-input jitter.
  cs.push_back({"topk", {{"score_fn", "sigmoid"}}});
  cs.push_back({"topk", {{"renormalize", "false"}}});
  cs.push_back({"noisy_topk", {{"jitter_eps", "0.05"}, {"noise", "none"}}});
  cs.push_back({"rdesi", {{"weights_over", "logits"}, {"epsilon", "0.1"}}});
  cs.push_back({"expert_choice", {{"score_fn", "sigmoid"}, {"renormalize", "true"}}});
  // Megatron-Core's conventions: sqrt-softplus scores, scaled weights, drops that only
  // mask (weights formed over the requested slots), probability drops by weight.
  cs.push_back({"topk", {{"score_fn", "sqrtsoftplus"}, {"topk_scaling_factor", "2.5"}}});
  cs.push_back({"topk", {{"drop_weights", "mask"}, {"capacity_factor", "0.5"}, {"min_capacity", "0"}}});
  cs.push_back({"topk", {{"drop_weights", "mask"}, {"drop_policy", "probability"}, {"drop_priority", "weight"},
                         {"capacity_factor", "0.5"}, {"min_capacity", "0"}, {"score_fn", "sigmoid"}}});
  cs.push_back({"rdesi", {{"preset", "reference"}}});
  cs.push_back({"rdesi", {{"drop_weights", "mask"}, {"capacity_factor", "0.5"}, {"min_capacity", "0"}}});
  cs.push_back({"loss_free", {{"preset", "megatron"}, {"capacity_factor", "0.5"}, {"n_groups", "4"},
                              {"topk_groups", "2"}}});
  cs.push_back({"loss_free", {{"preset", "deepseek_v3"}}});
  cs.push_back({"sinkhorn", {{"preset", "megatron"}}});
  return cs;
}

}  // namespace

TEST_CASE("MoE layer: model weights equal the policy's weights; gradients reach the gate", "[torch][model]") {
  torch::manual_seed(11);
  const int E = 8, D = 16, N = 96;
  for (const auto& c : all_cases()) {
    const auto& info = policy_info(c.policy);
    const int k = accepted_k(info, E, 2);
    KnobMap knobs = c.knobs;
    // Only knobs the policy declares (the variants above are written for their own policy).
    SECTION(c.policy + [&] {
      std::string s;
      for (const auto& [key, v] : c.knobs) s += " " + key + "=" + v;
      return s;
    }()) {
      auto layer = std::make_shared<MoeLayer>(1, D, 24, E, make_policy(c.policy, E, k, knobs), 42, 0.5, 0.5);
      layer->train();
      for (int step = 0; step < 3; ++step) {  // several steps: stateful policies move
        auto x = torch::randn({N, D});
        auto ids = torch::randint(0, 1000, {N}, torch::kLong);
        auto out = layer->forward(x, ids);
        const auto& a = layer->last_assignment;
        REQUIRE(a.tokens == N);
        auto w = layer->last_weights.detach().contiguous();
        REQUIRE(w.size(0) == N);
        REQUIRE(w.size(1) == a.width);
        const float* wp = w.data_ptr<float>();
        double max_diff = 0;
        for (std::size_t s = 0; s < a.weight.size(); ++s)
          max_diff = std::max(max_diff, static_cast<double>(std::fabs(wp[s] - a.weight[s])));
        INFO("policy " << c.policy << " rule " << to_string(layer->policy().weight_spec().rule) << " step " << step);
        CHECK(max_diff < 1e-5);
        // Gradient through the combine weights alone (no aux loss) reaches the gate.
        layer->gate.mutable_grad() = torch::Tensor();
        out.pow(2).sum().backward();
        REQUIRE(layer->gate.grad().defined());
        CHECK(layer->gate.grad().abs().sum().item<double>() > 0);
        layer->observe(torch::Tensor());
      }
    }
  }
}

TEST_CASE("MoE layer: dispatch equals a dense per-token reference", "[torch][model]") {
  torch::manual_seed(5);
  const int E = 4, D = 8, N = 20;
  auto layer = std::make_shared<MoeLayer>(0, D, 12, E, make_policy("topk", E, 2, {{"dropless", "true"}}), 1, 0.5, 0.5);
  auto x = torch::randn({N, D});
  auto out = layer->forward(x, torch::zeros({N}, torch::kLong));
  const auto& a = layer->last_assignment;
  auto ref = torch::zeros({N, D});
  for (int t = 0; t < N; ++t)
    for (int j = 0; j < a.width; ++j) {
      const int e = a.at(t, j);
      if (e < 0) continue;
      auto xt = x[t].unsqueeze(0);
      auto h = torch::matmul(xt, layer->w13[static_cast<std::size_t>(e)]);
      auto y = torch::matmul(torch::silu(h.narrow(1, 0, 12)) * h.narrow(1, 12, 12), layer->w2[static_cast<std::size_t>(e)]);
      ref[t] += a.weight_at(t, j) * y[0];
    }
  CHECK((out - ref).abs().max().item<double>() < 1e-5);
}

// The reference for one forward of `layer` on x: each token's served experts'
// SwiGLU outputs, weighted by the layer's own (differentiable) combine weights.
static torch::Tensor dense_reference(MoeLayer& layer, const torch::Tensor& x, int H) {
  const auto& a = layer.last_assignment;
  const auto w = layer.last_weights;  // the same tensor, so both sides share the gate's path to x
  std::vector<torch::Tensor> rows;
  for (int t = 0; t < a.tokens; ++t) {
    auto acc = torch::zeros({x.size(1)});
    for (int j = 0; j < a.width; ++j) {
      const int e = a.at(t, j);
      if (e < 0) continue;
      auto h = torch::matmul(x[t].unsqueeze(0), layer.w13[static_cast<std::size_t>(e)]);
      auto y = torch::matmul(torch::silu(h.narrow(1, 0, H)) * h.narrow(1, H, H), layer.w2[static_cast<std::size_t>(e)]);
      acc = acc + w[t][j] * y[0];
    }
    rows.push_back(acc);
  }
  return torch::stack(rows);
}

TEST_CASE("MoE layer: gradients of the input and the expert weights equal the dense per-token reference's, "
          "empty experts included",
          "[torch][model]") {
  torch::manual_seed(6);
  const int D = 8, H = 12, N = 40;
  // topk over 4 experts, and hash over 8 with one token id for every token:
  // two experts get every row, so the segments' owners are not 0, 1, ...
  for (const std::string policy : {"topk", "hash"}) {
    const int E = policy == "topk" ? 4 : 8;
    CAPTURE(policy);
    auto layer = std::make_shared<MoeLayer>(0, D, H, E, make_policy(policy, E, 2, {{"dropless", "true"}}), 1, 0.5, 0.5);
    layer->train();
    auto x = torch::randn({N, D}, torch::requires_grad());
    torch::Tensor out;
    for (std::int64_t id = 0; id < 64; ++id) {  // a token id whose experts leave a lower-indexed one empty
      out = layer->forward(x, torch::full({N}, policy == "topk" ? 0 : id, torch::kLong));
      std::vector<int> used(static_cast<std::size_t>(E), 0);
      for (auto e : layer->last_assignment.expert)
        if (e >= 0) used[static_cast<std::size_t>(e)] = 1;
      if (policy == "topk" || used[0] == 0) break;
    }
    if (policy == "hash") {
      int served = 0;
      for (auto e : layer->last_assignment.expert) served += e == 0;
      REQUIRE(served == 0);
    }
    const auto ref = dense_reference(*layer, x, H);
    const auto r = torch::randn({N, D});
    std::vector<torch::Tensor> wrt = {x};
    for (int e = 0; e < E; ++e) {
      wrt.push_back(layer->w13[static_cast<std::size_t>(e)]);
      wrt.push_back(layer->w2[static_cast<std::size_t>(e)]);
    }
    const auto got = torch::autograd::grad({(out * r).sum()}, wrt, {}, /*retain_graph=*/true, false, true);
    const auto want = torch::autograd::grad({(ref * r).sum()}, wrt, {}, false, false, true);
    for (std::size_t i = 0; i < wrt.size(); ++i) {
      INFO("gradient " << i << " (0 = input, then w13/w2 per expert)");
      REQUIRE(got[i].defined() == want[i].defined());
      if (got[i].defined()) CHECK((got[i] - want[i]).abs().max().item<double>() < 1e-4);
    }
  }
}

TEST_CASE("MoE layer: evaluation leaves the policy state and its RNG untouched", "[torch][model]") {
  torch::manual_seed(2);
  auto layer = std::make_shared<MoeLayer>(0, 8, 8, 4, make_policy("rdesi", 4, 2, {}), 9, 0.5, 0.5);
  layer->train();
  (void)layer->forward(torch::randn({16, 8}), torch::zeros({16}, torch::kLong));
  layer->observe(torch::Tensor());
  const auto before = layer->policy().state_vectors();
  const Rng rng_before = layer->rng();
  layer->eval();
  (void)layer->forward(torch::randn({16, 8}), torch::zeros({16}, torch::kLong));
  layer->observe(torch::Tensor());
  CHECK(layer->policy().state_vectors() == before);
  CHECK(layer->rng() == rng_before);
}

TEST_CASE("aux losses: uniform routing gives 1 and (ln E)^2", "[torch][model]") {
  const int E = 4, N = 8;
  auto logits = torch::zeros({N, E}, torch::requires_grad());
  auto p = make_policy("topk", E, 1, {{"dropless", "true"}});
  Rng rng(1);
  Assignment a;
  auto lc = logits.detach().contiguous();
  RouteInput in;
  in.logits = lc.data_ptr<float>();
  in.tokens = N;
  in.experts = E;
  p->route(in, rng, a);
  CHECK(router_z_loss(logits).item<double>() == Approx(std::log(4.0) * std::log(4.0)));
  const auto n = aux_counts(lc.data_ptr<float>(), N, E, a, {});
  std::vector<double> f;
  for (double c : n.count) f.push_back(c / n.total);
  const double lb = load_balancing_loss(aux_scores(logits, AuxScore::Softmax), f).item<double>();
  // All ties go to one expert: f = (1,0,0,0), P = 1/4 each: E * 1/4 = 1.
  CHECK(lb == Approx(1.0));
  CHECK(router_entropy(logits).item<double>() == Approx(std::log(4.0)));
}

TEST_CASE("aux losses: the differentiable twins equal the float definitions for every score function and count",
          "[torch][model]") {
  torch::manual_seed(3);
  const int E = 6, N = 40, k = 2, L = 10;
  auto logits = (torch::randn({N, E}) * 2).requires_grad_(true);
  auto lc = logits.detach().contiguous();
  const float* lp = lc.data_ptr<float>();
  auto p = make_policy("topk", E, k, {{"capacity_factor", "1"}, {"min_capacity", "0"}});
  Rng rng(1);
  Assignment a;
  RouteInput in;
  in.logits = lp;
  in.tokens = N;
  in.experts = E;
  p->route(in, rng, a);
  REQUIRE(a.dropped > 0);  // served and top-k counts differ
  for (auto score : {AuxScore::Softmax, AuxScore::Sigmoid, AuxScore::SqrtSoftplus})
    for (auto counts : {AuxCounts::Served, AuxCounts::TopK}) {
      const AuxLossSpec spec{score, counts, k};
      INFO("score " << static_cast<int>(score) << " counts " << static_cast<int>(counts));
      auto scores = aux_scores(logits, score);
      const auto n = aux_counts(lp, N, E, a, spec);
      std::vector<double> f;
      for (double c : n.count) f.push_back(c / n.total);
      auto lb = load_balancing_loss(scores, f);
      CHECK(lb.item<double>() == Approx(moesim::load_balancing_loss(lp, N, E, a, spec)).epsilon(1e-5));
      auto seq = sequence_balance_loss(scores, sequence_fractions(lp, N, E, a, L, spec), L);
      CHECK(seq.item<double>() == Approx(moesim::sequence_balance_loss(lp, N, E, a, L, spec)).epsilon(1e-5));
      logits.mutable_grad() = torch::Tensor();
      (lb + seq).backward();
      CHECK(logits.grad().abs().sum().item<double>() > 0);
    }
  CHECK(router_entropy(logits).item<double>() == Approx(moesim::router_entropy(lp, N, E)).epsilon(1e-5));
}

TEST_CASE("a tiny MoE Transformer overfits one batch", "[torch][model]") {
  // 4 sequences of 16 random tokens over a 64-token vocabulary: a model that only
  // learns token frequencies stays near ln(61) = 4.1 nats. Falling below 0.5 nats
  // means it memorised the batch through attention, MoE routing and all.
  auto cfg = tiny_config();
  cfg.train.steps = 200;
  cfg.train.warmup = 10;
  cfg.train.lr = 1e-2;
  cfg.train.weight_decay = 0.0;
  cfg.train.min_lr_ratio = 1.0;
  auto stream = random_stream(static_cast<std::size_t>(4 * cfg.data.seq_len + 1), cfg.tokenizer.vocab, 77);
  Trainer tr(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
  double first = 0, last = 0;
  for (long s = 0; s < cfg.train.steps; ++s) {
    const auto st = tr.step();
    if (s == 0) first = st.ce;
    last = st.ce;
  }
  INFO("first " << first << " last " << last);
  CHECK(first > 3.5);
  CHECK(last < 0.5);
}

TEST_CASE("bf16 GEMMs change the model's logits only by bf16 rounding, and the router logits not at all",
          "[torch][model]") {
  auto cfg = tiny_config();
  Transformer m(cfg, 64);
  auto ids = torch::randint(3, 64, {2, 16}, torch::kLong);
  m.eval();
  torch::NoGradGuard ng;
  const auto ref = m.forward(ids).logits;
  const auto ref_router = m.moe_layers()[0]->last_logits.clone();
  ForwardOut lo;
  {
    GemmPrecisionScope bf16(GemmPrecision::bf16);
    lo = m.forward(ids);
  }
  CHECK(lo.logits.scalar_type() == torch::kFloat);
  const double diff = (lo.logits - ref).abs().max().item<double>();
  INFO("max |bf16 - fp32| logit difference " << diff);
  CHECK(diff > 0);  // bf16 really was used
  CHECK(diff < 0.05);
  // The gate's own GEMM stays fp32: the same layer input gives the same router logits.
  auto x = torch::randn({5, cfg.model.dim});
  torch::Tensor gate_fp32, gate_bf16;
  auto& layer = *m.moe_layers()[0];
  (void)layer.forward(x, torch::zeros({5}, torch::kLong));
  gate_fp32 = layer.last_logits.clone();
  {
    GemmPrecisionScope bf16(GemmPrecision::bf16);
    (void)layer.forward(x, torch::zeros({5}, torch::kLong));
  }
  gate_bf16 = layer.last_logits.clone();
  CHECK(torch::equal(gate_fp32, gate_bf16));
  CHECK(ref_router.scalar_type() == torch::kFloat);
}

TEST_CASE("router-only training moves the router (linear or MLP head) and nothing else", "[torch][model]") {
  for (const char* head : {"linear", "mlp"}) {
    INFO("router head " << head);
    auto cfg = tiny_config();
    cfg.train.router_only = true;
    cfg.model.router_head = head;
    auto stream = random_stream(2000, cfg.tokenizer.vocab, 5);
    Trainer tr(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
    std::map<std::string, torch::Tensor> before;
    for (const auto& p : tr.model().named_parameters()) before[p.key()] = p.value().detach().clone();
    for (int i = 0; i < 3; ++i) (void)tr.step();
    int moved = 0;
    for (const auto& p : tr.model().named_parameters()) {
      const bool changed = !torch::equal(before[p.key()], p.value().detach());
      const bool is_router = p.key().find("moe.gate") != std::string::npos || p.key().find("moe.router_") != std::string::npos;
      INFO(p.key());
      CHECK(changed == is_router);
      moved += changed;
    }
    CHECK(moved == (std::string(head) == "mlp" ? 4 : 1));  // W1, LayerNorm gain and bias, W2 / the gate
  }
}

TEST_CASE("generation: a seed replays the same tokens; temperature 0 is greedy", "[torch][model]") {
  auto cfg = tiny_config();
  torch::manual_seed(4);
  Transformer m(cfg, 64);
  SampleOptions opt;
  opt.max_new_tokens = 24;  // longer than seq_len: the context is cropped
  const auto a = sample_tokens(m, {5, 6, 7}, opt);
  const auto b = sample_tokens(m, {5, 6, 7}, opt);
  CHECK(a == b);
  CHECK(a.size() == 27);
  opt.temperature = 0;
  opt.seed = 99;
  const auto g1 = sample_tokens(m, {5, 6, 7}, opt);
  opt.seed = 100;
  CHECK(sample_tokens(m, {5, 6, 7}, opt) == g1);
}

TEST_CASE("loss signal: policies observe the negated per-token loss on served slots", "[torch][model]") {
  torch::manual_seed(8);
  auto layer = std::make_shared<MoeLayer>(0, 8, 8, 4, make_policy("rdesi", 4, 2, {{"alpha", "1"}, {"decay_on", "none"}}), 3, 0.5, 0.5);
  layer->train();
  const int N = 32;
  (void)layer->forward(torch::randn({N, 8}), torch::zeros({N}, torch::kLong));
  layer->observe(torch::full({N}, 2.5f));
  // alpha = 1: the reputation of every expert that served is exactly the mean perf, -2.5.
  const auto& a = layer->last_assignment;
  const auto rep = layer->policy().state_vectors();
  REQUIRE(!rep.empty());
  for (int e = 0; e < 4; ++e)
    if (a.counts[static_cast<std::size_t>(e)] > 0) CHECK(rep[0].second[static_cast<std::size_t>(e)] == Approx(-2.5));
}

TEST_CASE("decoding with the KV cache equals recomputing the context: logits, and the tokens of a seed",
          "[torch][model]") {
  auto cfg = tiny_config();
  cfg.policy.knobs["dropless"] = "true";  // routing of a token then depends on that token alone
  torch::manual_seed(6);
  Transformer m(cfg, 64);
  m.eval();
  torch::NoGradGuard ng;
  // A prefill of 5 tokens, then one token at a time up to max_len, against one
  // full forward pass over the same 16 positions.
  auto ids = torch::randint(3, 64, {1, 16}, torch::kLong);
  const auto full = m.forward(ids).logits[0];
  KVCache cache;
  auto got = m.forward_cached(ids.narrow(1, 0, 5), cache);
  for (int t = 5; t < 16; ++t) got = torch::cat({got, m.forward_cached(ids.narrow(1, t, 1), cache)}, 0);
  CHECK(cache.len == 16);
  CHECK((got - full).abs().max().item<float>() <= 1e-4f * (1.0f + full.abs().max().item<float>()));
  CHECK_THROWS_AS(m.forward_cached(ids.narrow(1, 0, 1), cache), Error);  // position 17 > max_len

  for (double temperature : {0.0, 0.8})
    for (std::uint64_t seed : {1u, 2u}) {
      SampleOptions opt;
      opt.max_new_tokens = 13;  // prompt 3 + 13 = max_len: both modes see the same contexts
      opt.temperature = temperature;
      opt.seed = seed;
      const auto cached = sample_tokens(m, {5, 6, 7}, opt);
      opt.kv_cache = false;
      CAPTURE(temperature, seed);
      CHECK(sample_tokens(m, {5, 6, 7}, opt) == cached);
      CHECK(cached.size() == 16);
    }
}

TEST_CASE("decoding past max_len with the KV cache refills it and keeps going, deterministically", "[torch][model]") {
  auto cfg = tiny_config();
  torch::manual_seed(4);
  Transformer m(cfg, 64);
  SampleOptions opt;
  opt.max_new_tokens = 40;  // 2.5 windows of 16
  const std::vector<int> prompt(20, 9);  // longer than max_len already
  const auto a = sample_tokens(m, prompt, opt);
  CHECK(a.size() == 60);
  CHECK(sample_tokens(m, prompt, opt) == a);
}
