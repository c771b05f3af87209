#pragma once
// Auxiliary-loss-free load balancing (Wang et al. 2024; DeepSeek-V3; Megatron-Core
// moe_router_enable_expert_bias): select the top-k of s + b (group-limited when
// n_groups > 1, groups scored on s + b as DeepSeek-V3 does), weight by s alone,
// then after each batch move every bias by
//   b_i <- b_i + u * sign(mean_j n_j - n_i)
// with n the batch's requests per expert before capacity (moesim: what the router
// asks for) or the slots served after capacity (Megatron-Core counts its routing
// map after token dropping; the two agree when dropless). The bias steers only
// selection, never gradients.
#include <vector>

#include "policies/capacity.hpp"
#include "policies/policy.hpp"
#include "policies/registry.hpp"
#include "policies/token_choice.hpp"
#include "policies/topk.hpp"

namespace moesim {

class LossFreePolicy : public Policy {
 public:
  LossFreePolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<LossFreePolicy>(*this); }
  std::vector<NamedVector> state_vectors() const override { return {{"bias", bias_}}; }
  // Route scans every logit while it builds the scores, block by block; with
  // random tie-breaking an earlier block would have drawn from the Rng before a
  // later one is refused, so then Policy::route checks everything first.
  bool checks_logits() const override { return sel_.tie == TieBreak::LowIndex; }
  const std::vector<double>& bias() const { return bias_; }

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;
  void do_observe(const Assignment& a, const float* perf) override;
  void save_state(StateWriter& w) const override;
  void load_state(StateReader& r) override;

 private:
  WeightSpec spec_;
  CapacityConfig cap_;
  double rate_;
  bool count_served_;
  std::vector<double> bias_;
  std::vector<double> demand_;  // selections per expert in the last batch, before capacity
  std::vector<float> s_, fbias_;
  TopKSelector sel_;
  TokenChoiceTail tail_;
};

PolicyInfo loss_free_info();

// One token's selection values s_e + b_e (s: softmax, sigmoid or sqrt-softplus of
// z, as `rule` says), 16 experts at a time where E allows: the same operations
// as the scalar formula, so the same bits (tests compare them). Returns whether
// every z was finite.
bool loss_free_scores(const float* z, int E, const float* bias, WeightRule rule, float* out);
// loss_free_scores of `rows` (at most 16) consecutive rows, z and out of stride
// E, bitwise: for a full block of 16 with a softmax rule and E a multiple of 16
// the rows' max and exp-sum folds run once for all 16 (row_max_sum_exp16)
// instead of one latency-bound fold per row.
bool loss_free_scores_rows(const float* z, int rows, int E, const float* bias, WeightRule rule, float* out);

}  // namespace moesim
