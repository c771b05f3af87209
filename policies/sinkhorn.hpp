#pragma once
// Sinkhorn routing (Megatron-Core's "sinkhorn" load balancing, after BASE
// layers / Clark et al. 2022): select top-k on the Sinkhorn-balanced
// exp(logits), weight by the score rule on the original logits. At evaluation
// (RouteInput::training false) eval_mode topk selects on the plain logits, as
// Megatron-Core does; eval_mode sinkhorn balances there too.
#include <vector>

#include "policies/capacity.hpp"
#include "policies/policy.hpp"
#include "policies/registry.hpp"
#include "policies/select.hpp"
#include "policies/token_choice.hpp"

namespace moesim {

class SinkhornPolicy : public Policy {
 public:
  SinkhornPolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<SinkhornPolicy>(*this); }

  // The last balanced batch: rounds run, and the worst column's relative error
  // |sum_t P[t][e] / (T/E) - 1| when they stopped (for benchmarks and logs).
  struct Stats {
    long rounds = 0;
    double deviation = 0.0;
  };
  const Stats& last_stats() const { return stats_; }

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;

 private:
  // Widest logit spread within a row for which the linear-domain iteration runs.
  // (exp(-80) is still a normal float, so no column of the float matrix underflows.)
  static constexpr double kLinearSpread = 80.0;
  void balance(const float* logits, int T);
  void balance_linear(const float* logits, int T);
  void balance_log(const float* logits, int T);

  WeightSpec spec_;
  CapacityConfig cap_;
  long iterations_;
  double tol_;
  bool eval_topk_;
  TieBreak tie_;
  std::vector<double> row_, col_;  // row scaling; log of the column scaling
  std::vector<double> colscale_, colmax_, colsum_;  // scratch
  std::vector<float> kexp_;                         // exp(z - rowmax), tokens x experts
  std::vector<float> fcol_;                                // log v in float, the selection bias
  TokenChoiceTail tail_;
  Stats stats_;
};

PolicyInfo sinkhorn_info();

}  // namespace moesim
