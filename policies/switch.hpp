#pragma once
// Switch Transformer routing (Fedus et al. 2021): top-1, the combine weight is
// the expert's softmax probability (no renormalisation), capacity-limited, with
// optional multiplicative input jitter during training.
#include <vector>

#include "policies/capacity.hpp"
#include "policies/policy.hpp"
#include "policies/registry.hpp"
#include "policies/select.hpp"
#include "policies/token_choice.hpp"

namespace moesim {

class SwitchPolicy : public Policy {
 public:
  SwitchPolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return with_drop_weights({WeightRule::SoftmaxGather, false}, cap_); }
  bool reads_gate_input() const override { return jitter_ > 0.0; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<SwitchPolicy>(*this); }

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;
  bool checks_logits() const override { return jitter_ <= 0.0 && tie_ == TieBreak::LowIndex; }

 private:
  double jitter_;
  CapacityConfig cap_;
  TieBreak tie_;
  std::vector<float> jittered_;
  TokenChoiceTail tail_;
};

PolicyInfo switch_info();

}  // namespace moesim
