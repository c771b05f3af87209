#include "policies/registry.hpp"

#include "policies/all.hpp"

namespace moesim {

const std::vector<PolicyInfo>& policy_registry() {
  // An explicit list: static self-registration is silently dropped by the linker
  // from static libraries, an explicit list cannot be.
  static const std::vector<PolicyInfo> all = {
      MOESIM_POLICY_INFOS
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

std::unique_ptr<Policy> make_policy(std::string_view name, int experts, int k, const KnobMap& overrides) {
  const auto& info = policy_info(name);
  return info.make(experts, k, Knobs(info.name, info.knobs, overrides));
}

}  // namespace moesim
