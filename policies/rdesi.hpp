#pragma once
// RD-ESI, reputation-driven expert selection with incentives (seeds 000/001,
// reference kaiqiancui/GT-MoE src/rd_esi/). Selection score of expert i:
//   Score_i(x,t) = g_i(x) + beta*R_i(t) - gamma*L_i(t) + c*sqrt(ln(N+1) / (N_i + eps))
// R: EMA of served performance, L: EMA of per-batch demand (optionally divided by
// capacity), N_i / N: cumulative served slots. Top-k on the score; combine
// weights = softmax over the selected scores (or over the selected logits).
#include <vector>

#include "policies/capacity.hpp"
#include "policies/policy.hpp"
#include "policies/registry.hpp"
#include "policies/token_choice.hpp"

namespace moesim {

class RdesiPolicy : public Policy {
 public:
  RdesiPolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return {WeightRule::SoftmaxSelected, true}; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<RdesiPolicy>(*this); }
  std::vector<NamedVector> state_vectors() const override;

  const std::vector<double>& reputation() const { return R_; }
  const std::vector<double>& load() const { return L_; }
  const std::vector<double>& counts() const { return N_i_; }
  double total() const { return N_; }
  // The per-expert part of the score (beta*R - gamma*L + bonus) the next batch will see.
  std::vector<double> score_bias() const;

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;
  void do_observe(const Assignment& a, const float* perf) override;
  void save_state(StateWriter& w) const override;
  void load_state(StateReader& r) override;

 private:
  enum class Decay { None, Idle, All };
  double beta_, gamma_, alpha_, ucb_c_, ucb_eps_, decay_rate_, load_alpha_, epsilon_, noise_;
  Decay decay_on_;
  bool idle_perf_zero_, load_by_capacity_, weights_on_scores_;
  CapacityConfig cap_;

  std::vector<double> R_, L_, N_i_;
  double N_ = 0.0;
  // Demand of the last routed batch (before capacity): what the load EMA measures.
  std::vector<double> demand_;
  std::int64_t last_capacity_ = 0;
  int last_tokens_ = 0;

  std::vector<float> bias_, scores_;
  std::vector<std::int32_t> perm_;
  TokenChoiceTail tail_;
};

PolicyInfo rdesi_info();

}  // namespace moesim
