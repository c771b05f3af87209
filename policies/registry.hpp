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

// A named set of knob values reproducing one implementation's conventions
// (e.g. rdesi "reference": GT-MoE's router). The knob `preset` selects one; its
// values replace the defaults and explicit knobs still override them. Values may
// depend on k: Megatron-Core's own rules do (sigmoid weights are renormalised
// only when k > 1).
struct KnobPreset {
  std::string name;
  std::string source;  // what it reproduces, one line
  std::function<KnobMap(int k)> values;
};

using PolicyFactory = std::function<std::unique_ptr<Policy>(int experts, int k, const Knobs& knobs)>;

struct PolicyInfo {
  PolicyInfo(std::string name_, std::string summary_, std::vector<KnobSpec> knobs_, PolicyFactory make_)
      : name(std::move(name_)), summary(std::move(summary_)), knobs(std::move(knobs_)), make(std::move(make_)) {}
  std::string name;
  std::string summary;
  std::vector<KnobSpec> knobs;
  PolicyFactory make;
  std::vector<KnobPreset> presets;  // the first is the default; empty: no `preset` knob
};

// The `preset` choice knob for a preset list (default: the first).
KnobSpec preset_knob(const std::vector<KnobPreset>& presets);

const std::vector<PolicyInfo>& policy_registry();
const PolicyInfo& policy_info(std::string_view name);  // throws Error listing known names
// Defaults, then the chosen preset's values, then the overrides; validated.
Knobs resolve_knobs(const PolicyInfo& info, int k, const KnobMap& overrides);
std::unique_ptr<Policy> make_policy(std::string_view name, int experts, int k,
                                    const KnobMap& overrides = {});
// The largest k <= wanted that the policy routes with `experts` experts and default
// knobs, found by building it: the policy's own refusal is the only rule (Switch: 1).
int accepted_k(const PolicyInfo& info, int experts, int wanted);

}  // namespace moesim
