#pragma once
// Noisy top-k gating (Shazeer et al. 2017; DeepSpeed's RSample/Jitter; Tutel):
// select on logits perturbed by Gaussian or Gumbel noise, or on logits of a
// multiplicatively jittered gate input x*U(1-eps, 1+eps) when the input is given.
#include <vector>

#include "policies/capacity.hpp"
#include "policies/noise.hpp"
#include "policies/policy.hpp"
#include "policies/registry.hpp"
#include "policies/token_choice.hpp"
#include "policies/topk.hpp"

namespace moesim {

// Logits of the jittered gate input: z' = (x * u) W^T, u ~ U(1-eps, 1+eps) per
// element. Throws Error when `in` carries no gate input or weights.
void jittered_logits(const RouteInput& in, double eps, Rng& rng, const std::string& owner,
                     std::vector<float>& out);

class NoisyTopKPolicy : public Policy {
 public:
  NoisyTopKPolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  bool reads_gate_input() const override { return jitter_ > 0.0; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<NoisyTopKPolicy>(*this); }

 protected:
  // Without jitter the pass that adds the noise checks the logits.
  bool checks_logits() const override { return jitter_ <= 0.0; }
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;

 private:
  enum class Noise { Gaussian, Gumbel, None };
  Noise noise_;
  double std_, jitter_;
  bool weights_noisy_;
  WeightSpec spec_;
  CapacityConfig cap_;
  TopKSelector sel_;
  std::vector<float> jittered_, noisy_;
  NormalFiller normal_;
  TokenChoiceTail tail_;
};

PolicyInfo noisy_topk_info();

}  // namespace moesim
