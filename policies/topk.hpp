#pragma once
// Top-k gating (Shazeer 2017, GShard, Mixtral, DeepSeek-V3): softmax or sigmoid
// scores, optional renormalisation, optional group-limited selection.
#include <vector>

#include "policies/capacity.hpp"
#include "policies/policy.hpp"
#include "policies/registry.hpp"
#include "policies/token_choice.hpp"

namespace moesim {

// Selection on (possibly perturbed) logits shared by top-k, noisy top-k and Switch.
struct TopKSelector {
  int experts = 0;
  int k = 1;
  int groups = 1;        // group-limited routing off when 1
  int topk_groups = 1;
  bool group_top2 = false;  // group score: sum of its two best (DeepSeek-V3) instead of max
  // Writes the wanted experts (tokens x k) for `sel` logits into out.expert.
  void select(const float* sel, int tokens, Assignment& out) const;
  void configure_groups(const Knobs& knobs, const std::string& owner);
};

std::vector<KnobSpec> score_knobs();  // score_fn, renormalize
std::vector<KnobSpec> group_knobs();  // n_groups, topk_groups, group_score
WeightSpec score_weight_spec(const Knobs& knobs);

class TopKPolicy : public Policy {
 public:
  TopKPolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<TopKPolicy>(*this); }

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;

 private:
  WeightSpec spec_;
  CapacityConfig cap_;
  TopKSelector sel_;
  TokenChoiceTail tail_;
};

PolicyInfo topk_info();

}  // namespace moesim
