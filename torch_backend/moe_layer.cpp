#include "torch_backend/moe_layer.hpp"

#include <ATen/record_function.h>

#include "torch_backend/gemm.hpp"
#include "torch_backend/router_math.hpp"
#include "torch_backend/swiglu.hpp"

namespace moesim::torch_backend {

namespace F = torch::nn::functional;

namespace {

// Rows [t0, t0 + n) of a routed batch's assignment, with their own counts and drops.
Assignment assignment_rows(const Assignment& g, int t0, int n) {
  Assignment a;
  a.tokens = n;
  a.experts = g.experts;
  a.width = g.width;
  a.capacity = g.capacity;
  const auto b = static_cast<std::ptrdiff_t>(t0) * g.width, e = b + static_cast<std::ptrdiff_t>(n) * g.width;
  a.expert.assign(g.expert.begin() + b, g.expert.begin() + e);
  a.requested.assign(g.requested.begin() + b, g.requested.begin() + e);
  a.weight.assign(g.weight.begin() + b, g.weight.begin() + e);
  a.offset.assign(g.offset.begin() + b, g.offset.begin() + e);
  a.counts.assign(static_cast<std::size_t>(g.experts), 0);
  for (int t = 0; t < n; ++t) {
    bool asked = false, served = false;
    for (int j = 0; j < a.width; ++j) {
      const auto s = static_cast<std::size_t>(t) * static_cast<std::size_t>(a.width) + static_cast<std::size_t>(j);
      if (a.requested[s] >= 0) ++a.routed, asked = true;
      if (a.expert[s] >= 0) ++a.counts[static_cast<std::size_t>(a.expert[s])], served = true;
      else if (a.requested[s] >= 0) ++a.dropped;
    }
    if (asked && !served) ++a.dropped_tokens;
  }
  return a;
}

}  // namespace

MoeLayer::MoeLayer(int layer, int dim, int hidden, int experts, std::unique_ptr<Policy> policy, std::uint64_t seed,
                   double init_std, double out_std, RouterOptions router)
    : layer_(layer),
      experts_(experts),
      policy_(std::move(policy)),
      seed_(seed),
      rng_(derive_seed(seed, "route")),
      router_(router) {
  if (router_.mlp) {
    const int h = router_.mlp_hidden > 0 ? router_.mlp_hidden : std::max(1, dim / 2);
    mlp_w1 = register_parameter("router_w1", torch::randn({h, dim}) * init_std);
    mlp_ln_w = register_parameter("router_ln_w", torch::ones({h}));
    mlp_ln_b = register_parameter("router_ln_b", torch::zeros({h}));
    gate = register_parameter("gate", torch::randn({experts, h}) * init_std);
  } else {
    gate = register_parameter("gate", torch::randn({experts, dim}) * init_std);
  }
  step_counts_.assign(static_cast<std::size_t>(experts), 0.0);
  for (int e = 0; e < experts; ++e) {
    w13.push_back(register_parameter("w13_" + std::to_string(e), torch::randn({dim, 2 * hidden}) * init_std));
    w2.push_back(register_parameter("w2_" + std::to_string(e), torch::randn({hidden, dim}) * out_std));
  }
}

void MoeLayer::add_lora(int rank, double alpha) {
  for (int e = 0; e < experts_; ++e) {
    const auto i = static_cast<std::size_t>(e);
    lora_w13.push_back(add_adapter(*this, "w13_" + std::to_string(e), w13[i], true, rank, alpha));
    lora_w2.push_back(add_adapter(*this, "w2_" + std::to_string(e), w2[i], true, rank, alpha));
  }
}

std::vector<torch::Tensor> MoeLayer::router_parameters() const {
  if (router_.mlp) return {mlp_w1, mlp_ln_w, mlp_ln_b, gate};
  return {gate};
}

void MoeLayer::begin_step() {
  std::fill(step_counts_.begin(), step_counts_.end(), 0.0);
  step_total_ = 0.0;
}

// Jitter, head, bf16 rounding, random logits, in Megatron-Core's order (router
// forward: apply_input_jitter, gating, force load balancing; the dtype is the model's).
torch::Tensor MoeLayer::router_logits(const torch::Tensor& x) {
  torch::Tensor in = x;
  if (is_training() && router_.jitter_eps > 0.0) {
    auto u = torch::empty_like(x);
    float* up = u.data_ptr<float>();
    for (std::int64_t i = 0; i < u.numel(); ++i)
      up[i] = static_cast<float>(rng_.uniform(1.0 - router_.jitter_eps, 1.0 + router_.jitter_eps));
    in = x * u;
  }
  torch::Tensor logits;
  {
    GemmPrecisionScope fp32(GemmPrecision::fp32);  // routing decisions and their weights in full precision
    if (router_.mlp) {
      auto h = torch::relu(gemm_linear(in, mlp_w1));
      h = torch::layer_norm(h, {h.size(1)}, mlp_ln_w, mlp_ln_b, 1e-5);
      logits = gemm_linear(h, gate);
    } else {
      logits = gemm_linear(in, gate);
    }
  }
  if (router_.bf16) logits = logits.to(torch::kBFloat16).to(torch::kFloat);  // round to nearest even
  if (is_training() && router_.force_balance) {
    // Straight through: random values forward, the real logits' gradient backward.
    auto r = torch::empty_like(logits);
    float* rp = r.data_ptr<float>();
    for (std::int64_t i = 0; i < r.numel(); ++i) rp[i] = static_cast<float>(rng_.normal());
    logits = r + (logits - logits.detach());
  }
  return logits;
}

void MoeLayer::aux_losses(const torch::Tensor& logits, const torch::Tensor& logits_c, const Assignment& a,
                          const torch::Tensor& routed_c, const Assignment& routed) {
  const int N = a.tokens, E = experts_;
  const float* lp = logits_c.data_ptr<float>();
  auto scores = aux_scores(logits, router_.aux.score);
  const auto n = aux_counts(routed_c.data_ptr<float>(), routed.tokens, E, routed, router_.aux);
  std::vector<double> f(static_cast<std::size_t>(E), 0.0);
  if (router_.aux_global && is_training()) {
    // Megatron-Core global_aux_loss: counts summed over this step's micro-batches so far.
    for (int e = 0; e < E; ++e) step_counts_[static_cast<std::size_t>(e)] += n.count[static_cast<std::size_t>(e)];
    step_total_ += n.total;
    for (int e = 0; e < E; ++e)
      f[static_cast<std::size_t>(e)] = step_total_ > 0 ? step_counts_[static_cast<std::size_t>(e)] / step_total_ : 0.0;
  } else {
    for (int e = 0; e < E; ++e) f[static_cast<std::size_t>(e)] = n.total > 0 ? n.count[static_cast<std::size_t>(e)] / n.total : 0.0;
  }
  aux_lb = load_balancing_loss(scores, f);
  aux_z = router_z_loss(logits);
  const int L = router_.seq_len > 0 ? router_.seq_len : std::max(N, 1);
  aux_seq = sequence_balance_loss(scores, sequence_fractions(lp, N, E, a, L, router_.aux), L);
  aux_entropy = router_entropy(logits);
  auto mp = scores.detach().mean(0).to(torch::kDouble).contiguous();
  last_mean_prob.assign(mp.data_ptr<double>(), mp.data_ptr<double>() + E);
}

// The policy routes this process's tokens, or data-parallel in training every
// rank's (gathered), into last_assignment; returns the logits it routed.
torch::Tensor MoeLayer::route(const torch::Tensor& x, const torch::Tensor& logits_c, const torch::Tensor& token_ids) {
  const auto D = x.size(1);
  auto x_c = x.detach().contiguous();
  auto gate_c = gate.detach().contiguous();
  auto ids_c = token_ids.to(torch::kLong).contiguous();
  sharded_ = dp_ != nullptr && is_training();
  torch::Tensor routed_c = logits_c, routed_ids = ids_c, routed_x = x_c;
  if (sharded_) {
    routed_c = dp_->all_gather(logits_c);
    routed_ids = dp_->all_gather(ids_c);
    if (!router_.mlp && policy_->reads_gate_input()) routed_x = dp_->all_gather(x_c);
  }
  RouteInput in;
  in.logits = routed_c.data_ptr<float>();
  in.tokens = static_cast<int>(routed_c.size(0));
  in.experts = experts_;
  in.token_ids = routed_ids.data_ptr<std::int64_t>();
  if (!router_.mlp) {  // a policy's own jitter needs logits = x W^T
    in.gate_input = routed_x.data_ptr<float>();
    in.gate_weight = gate_c.data_ptr<float>();
    in.gate_dim = static_cast<int>(D);
  }
  in.training = is_training();
  {
    RECORD_FUNCTION("moesim::route", std::vector<c10::IValue>());
    if (is_training()) {
      policy_->route(in, rng_, last_assignment);
    } else {
      // Evaluation must not move the policy's state or its random stream.
      auto frozen = policy_->clone();
      Rng eval_rng(derive_seed(seed_, "eval"));
      frozen->route(in, eval_rng, last_assignment);
    }
  }
  routed_logits = routed_c;
  return routed_c;
}

torch::Tensor MoeLayer::forward(const torch::Tensor& x, const torch::Tensor& token_ids) {
  const auto N = x.size(0);
  const auto D = x.size(1);
  torch::Tensor logits = router_logits(x);
  // The policy sees plain contiguous CPU floats, detached from the graph.
  auto logits_c = logits.detach().contiguous();
  const torch::Tensor routed_c = route(x, logits_c, token_ids);
  if (sharded_) local_ = assignment_rows(last_assignment, dp_->rank() * static_cast<int>(N), static_cast<int>(N));
  const Assignment& a = sharded_ ? local_ : last_assignment;

  auto weights = combine_weights(logits, a, policy_->weight_spec());
  aux_losses(logits, logits_c, a, routed_c, last_assignment);
  last_logits = logits;
  last_weights = weights;

  // Counting sort of the served slots by expert.
  const int W = a.width;
  std::vector<std::int64_t> start(static_cast<std::size_t>(experts_) + 1, 0);
  for (auto e : a.expert)
    if (e >= 0) ++start[static_cast<std::size_t>(e) + 1];
  for (int e = 0; e < experts_; ++e) start[static_cast<std::size_t>(e) + 1] += start[static_cast<std::size_t>(e)];
  const auto S = start.back();
  auto tok_idx = torch::empty({S}, torch::kLong);
  auto slot_idx = torch::empty({S}, torch::kLong);
  {
    auto* tp = tok_idx.data_ptr<std::int64_t>();
    auto* sp = slot_idx.data_ptr<std::int64_t>();
    std::vector<std::int64_t> fill(start.begin(), start.end() - 1);
    for (std::int64_t t = 0; t < N; ++t)
      for (int j = 0; j < W; ++j) {
        const auto slot = t * W + j;
        const auto e = a.expert[static_cast<std::size_t>(slot)];
        if (e < 0) continue;
        const auto pos = fill[static_cast<std::size_t>(e)]++;
        tp[pos] = t;
        sp[pos] = slot;
      }
  }

  std::vector<float>& perf = sharded_ ? local_perf_ : last_perf;
  perf.assign(a.expert.size(), 0.0f);
  if (S == 0) {
    pending_ = is_training();
    return torch::zeros({N, D}, torch::kFloat);
  }
  // Every served expert's rows through one grouped node (grouped_swiglu): it
  // gathers x's rows by tok_idx itself, the experts run one per thread, and
  // backward sums each token's rows straight into x's gradient.
  std::vector<std::int64_t> rows;
  std::vector<torch::Tensor> w13s, w2s;
  for (int e = 0; e < experts_; ++e) {
    const auto n = start[static_cast<std::size_t>(e) + 1] - start[static_cast<std::size_t>(e)];
    if (n == 0) continue;
    const auto i = static_cast<std::size_t>(e);
    rows.push_back(n);
    w13s.push_back(lora_w13.empty() ? w13[i] : adapted(w13[i], lora_w13[i]));
    w2s.push_back(lora_w2.empty() ? w2[i] : adapted(w2[i], lora_w2[i]));
  }
  auto y = grouped_swiglu(x, rows, w13s, w2s, tok_idx);  // (S, D), in slot order of tok_idx
  auto w = weights.reshape({-1}).index_select(0, slot_idx);
  auto out = combine_rows(y * w.unsqueeze(1), tok_idx, N);

  if (is_training()) {
    torch::NoGradGuard ng;
    auto norms = y.detach().norm(2, 1).contiguous();
    const float* np = norms.data_ptr<float>();
    const auto* sp = slot_idx.data_ptr<std::int64_t>();
    for (std::int64_t i = 0; i < S; ++i) perf[static_cast<std::size_t>(sp[i])] = np[i];
    pending_ = true;
  }
  return out;
}

void MoeLayer::observe(const torch::Tensor& per_token_loss) {
  if (!pending_) return;
  pending_ = false;
  const Assignment& a = sharded_ ? local_ : last_assignment;
  std::vector<float>& perf = sharded_ ? local_perf_ : last_perf;
  if (per_token_loss.defined()) {
    auto l = per_token_loss.detach().to(torch::kFloat).contiguous();
    const float* lp = l.data_ptr<float>();
    for (int t = 0; t < a.tokens; ++t)
      for (int j = 0; j < a.width; ++j) {
        const auto s = static_cast<std::size_t>(t) * static_cast<std::size_t>(a.width) + static_cast<std::size_t>(j);
        perf[s] = a.expert[s] >= 0 ? -lp[t] : 0.0f;
      }
  }
  if (sharded_) {
    // The global batch's performance, so every rank's policy takes the same step.
    auto mine = torch::from_blob(perf.data(), {static_cast<std::int64_t>(perf.size())}, torch::kFloat);
    auto all = dp_->all_gather(mine).contiguous();
    last_perf.assign(all.data_ptr<float>(), all.data_ptr<float>() + all.numel());
  }
  policy_->observe(last_assignment, last_perf.data());
}

}  // namespace moesim::torch_backend
