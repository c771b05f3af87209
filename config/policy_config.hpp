#pragma once
// The policy part of every config (simulator and trainer alike): a registry name
// and knob overrides, addressed as policy.name and policy.knobs.<knob>.
#include <string>

#include "policies/knobs.hpp"

namespace moesim {

struct PolicyConfig {
  std::string name = "topk";  // a registry name (`moesim policies` lists them)
  KnobMap knobs;              // overrides, validated by the registry
};

// Builds the policy once to validate name, knobs and shape: a bad knob throws a
// KeyError for policy.knobs.<knob>, a k the policy cannot route one for k_key (the
// config's own name of k), any other refusal one for policy.knobs.
void check_policy(const PolicyConfig& p, int experts, int k, const std::string& k_key);

}  // namespace moesim
