#pragma once
// Uniform random routing: the no-learning baseline. Every token gets k distinct
// experts uniformly at random, drawn from the Rng passed to route() only.
#include <cstdint>
#include <vector>

#include "policies/capacity.hpp"
#include "policies/policy.hpp"
#include "policies/registry.hpp"
#include "policies/token_choice.hpp"

namespace moesim {

class RandomPolicy : public Policy {
 public:
  RandomPolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<RandomPolicy>(*this); }

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;

 private:
  WeightSpec spec_;
  CapacityConfig cap_;
  std::vector<std::int32_t> perm_, swap_;
  TokenChoiceTail tail_;
};

PolicyInfo random_info();

}  // namespace moesim
