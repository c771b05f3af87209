#pragma once
// Expert-choice routing (Zhou et al. 2022, flaxformer): every expert picks its
// top-C tokens by gate probability, so load is balanced by construction while a
// token may get any number of experts, including none.
#include <cstdint>
#include <vector>

#include "policies/policy.hpp"
#include "policies/registry.hpp"

namespace moesim {

class ExpertChoicePolicy : public Policy {
 public:
  ExpertChoicePolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<ExpertChoicePolicy>(*this); }

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;

 private:
  WeightSpec spec_;
  double factor_;
  long min_capacity_;
  std::vector<double> score_;        // experts x tokens: one contiguous column per expert
  std::vector<std::int32_t> order_;  // scratch token indices for the per-expert selection
  std::vector<char> chosen_;         // tokens x experts
};

PolicyInfo expert_choice_info();

}  // namespace moesim
