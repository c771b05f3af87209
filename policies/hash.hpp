#pragma once
// Hash routing (Roller et al. 2021, "Hash Layers"): a token's experts are a
// fixed function of its token id, independent of the gate; the gate only
// supplies the combine weights.
#include <cstdint>
#include <vector>

#include "policies/capacity.hpp"
#include "policies/policy.hpp"
#include "policies/registry.hpp"
#include "policies/token_choice.hpp"

namespace moesim {

class HashPolicy : public Policy {
 public:
  HashPolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<HashPolicy>(*this); }

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;

 private:
  WeightSpec spec_;
  CapacityConfig cap_;
  std::vector<std::uint64_t> slot_seed_;  // one per slot j, derived from the salt
  std::vector<char> used_;
  TokenChoiceTail tail_;
};

PolicyInfo hash_info();

}  // namespace moesim
