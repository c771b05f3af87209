#pragma once
// The registry: every policy by name, with its knobs, defaults and a summary.
// Both the simulator and the LibTorch layer build policies only through here.
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "policies/knobs.hpp"
#include "policies/policy.hpp"

namespace moesim {

struct PolicyInfo {
  std::string name;
  std::string summary;
  std::vector<KnobSpec> knobs;
  std::function<std::unique_ptr<Policy>(int experts, int k, const Knobs& knobs)> make;
  bool top1_only = false;  // routes exactly one expert per token (Switch): k must be 1
};

const std::vector<PolicyInfo>& policy_registry();
const PolicyInfo& policy_info(std::string_view name);  // throws Error listing known names
std::unique_ptr<Policy> make_policy(std::string_view name, int experts, int k,
                                    const KnobMap& overrides = {});

}  // namespace moesim
