#include "policies/registry.hpp"

#include <algorithm>

#include "policies/balanced.hpp"
#include "policies/expert_choice.hpp"
#include "policies/hash.hpp"
#include "policies/loss_free.hpp"
#include "policies/noisy_topk.hpp"
#include "policies/random.hpp"
#include "policies/rdesi.hpp"
#include "policies/sinkhorn.hpp"
#include "policies/switch.hpp"
#include "policies/topk.hpp"

namespace moesim {

const std::vector<PolicyInfo>& policy_registry() {
  // An explicit list, in the order `moesim policies` prints: static self-registration
  // is silently dropped by the linker from static libraries, a list cannot be.
  static const std::vector<PolicyInfo> all = {
      topk_info(),          noisy_topk_info(), switch_info(), rdesi_info(), loss_free_info(),
      expert_choice_info(), sinkhorn_info(),   balanced_info(), hash_info(), random_info(),
  };
  return all;
}

const PolicyInfo& policy_info(std::string_view name) {
  for (const auto& p : policy_registry())
    if (p.name == name) return p;
  std::string known;
  for (const auto& p : policy_registry()) known += (known.empty() ? "" : ", ") + p.name;
  throw Error("unknown policy '" + std::string(name) + "' (known: " + known + ")");
}

KnobSpec preset_knob(const std::vector<KnobPreset>& presets) {
  std::vector<std::string> names;
  std::string help = "a named set of knob values (explicit knobs override it):";
  for (const auto& p : presets) {
    names.push_back(p.name);
    help += " " + p.name + " = " + p.source + ";";
  }
  help.pop_back();
  return choice_knob("preset", names.front(), names, help);
}

Knobs resolve_knobs(const PolicyInfo& info, int k, const KnobMap& overrides) {
  if (info.presets.empty()) return Knobs(info.name, info.knobs, overrides);
  auto it = overrides.find("preset");
  const std::string chosen = it != overrides.end() ? it->second : info.presets.front().name;
  KnobMap merged;
  for (const auto& p : info.presets)
    if (p.name == chosen) merged = p.values(k);
  // An unknown preset name stays in the map: the knob check names the choices.
  for (const auto& [key, v] : overrides) merged[key] = v;
  merged["preset"] = chosen;
  return Knobs(info.name, info.knobs, merged);
}

std::unique_ptr<Policy> make_policy(std::string_view name, int experts, int k, const KnobMap& overrides) {
  const auto& info = policy_info(name);
  return info.make(experts, k, resolve_knobs(info, k, overrides));
}

int accepted_k(const PolicyInfo& info, int experts, int wanted) {
  for (int k = std::min(wanted, experts); k > 1; --k) {
    try {
      info.make(experts, k, resolve_knobs(info, k, {}));
      return k;
    } catch (const KeyError& e) {
      if (e.key() != kShapeKey) throw;
    }
  }
  return 1;
}

}  // namespace moesim
