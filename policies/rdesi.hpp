#pragma once
// RD-ESI, reputation-driven expert selection with incentives (seeds 000/001,
// reference kaiqiancui/GT-MoE src/rd_esi/router.py, the router its model uses).
// Selection score of expert i for a token x of batch t:
//   Score_i(x,t) = g_i(x) + beta*R_i(t) - gamma*L_i(t) + c*sqrt(ln(N+1) / (N_i + eps))
// top-k on the score; combine weights = softmax over the selected scores (or over
// their gate logits). After the batch, with perf_i the mean performance over the
// slots expert i served (0 when it served none and idle_perf = zero):
//   decay_on all_before_ema (router.py):  R <- d*R,  then R <- alpha*perf + (1-alpha)*R
//   decay_on idle (reputation_scorer.py): R <- alpha*perf + (1-alpha)*R, then d*R for idle
//                                         experts (the same as mitigation_strategies.py's
//                                         idle-only decay: for an idle expert both are
//                                         products, so their order is immaterial)
//   decay_on all_after_ema:               R <- alpha*perf + (1-alpha)*R, then d*R for all
//   L <- a*n + (1-a)*L, n = the batch's requests per expert before capacity, raw
//        (router.py: a count of order T*k/E, which swamps the logits) or divided by
//        the capacity in force (the fair share T*k/E when dropless; moesim)
//   N_i += slots of i, N += slots: served slots (moesim) or every routed slot
//        (router.py: bincount of the chosen experts, N += T*k)
// Presets: `reference` sets every one of these to router.py's semantics, `moesim`
// (the default) keeps capacity-normalised load, capacity 1.25 and served counts.
#include <vector>

#include "policies/capacity.hpp"
#include "policies/policy.hpp"
#include "policies/registry.hpp"
#include "policies/select.hpp"
#include "policies/token_choice.hpp"

namespace moesim {

class RdesiPolicy : public Policy {
 public:
  RdesiPolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return with_drop_weights({WeightRule::SoftmaxSelected, true}, cap_); }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<RdesiPolicy>(*this); }
  std::vector<NamedVector> state_vectors() const override;

  const std::vector<double>* reputation() const override { return &R_; }
  const std::vector<double>& load() const { return L_; }
  const std::vector<double>& counts() const { return N_i_; }
  double total() const { return N_; }
  // The per-expert part of the score (beta*R - gamma*L + bonus) the next batch will see.
  std::vector<double> score_bias() const;

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;
  bool checks_logits() const override { return noise_ <= 0.0 && epsilon_ <= 0.0 && tie_ == TieBreak::LowIndex; }
  void do_observe(const Assignment& a, const float* perf) override;
  void save_state(StateWriter& w) const override;
  void load_state(StateReader& r) override;

 private:
  void route_rows(const RouteInput& in, Rng& rng, Assignment& out, float* slots);
  enum class Decay { None, Idle, AllBeforeEma, AllAfterEma };
  double beta_, gamma_, alpha_, ucb_c_, ucb_eps_, decay_rate_, load_alpha_, epsilon_, noise_;
  Decay decay_on_;
  bool idle_perf_zero_, load_by_capacity_, weights_on_scores_, count_routed_;
  TieBreak tie_;
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
