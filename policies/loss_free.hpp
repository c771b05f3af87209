#pragma once
// Auxiliary-loss-free load balancing (Wang et al. 2024; DeepSeek-V3): select the
// top-k of s + b, weight by s alone, then after each batch move every bias by
// u * sign(mean load - load_i). The bias steers only selection, never gradients.
#include <vector>

#include "policies/capacity.hpp"
#include "policies/policy.hpp"
#include "policies/registry.hpp"
#include "policies/token_choice.hpp"

namespace moesim {

class LossFreePolicy : public Policy {
 public:
  LossFreePolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<LossFreePolicy>(*this); }
  std::vector<NamedVector> state_vectors() const override { return {{"bias", bias_}}; }
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
  std::vector<double> bias_;
  std::vector<double> demand_;  // selections per expert in the last batch, before capacity
  std::vector<float> s_, fbias_;
  TokenChoiceTail tail_;
};

PolicyInfo loss_free_info();

}  // namespace moesim
