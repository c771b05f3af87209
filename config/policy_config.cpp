#include "config/policy_config.hpp"

#include "common/error.hpp"
#include "config/key_table.hpp"
#include "policies/registry.hpp"

namespace moesim {

void check_policy(const PolicyConfig& p, int experts, int k, const std::string& k_key) {
  try {
    make_policy(p.name, experts, k, p.knobs);
  } catch (const KeyError& e) {
    if (e.key() == kShapeKey)
      throw KeyError(k_key, "config key '" + k_key + "' = " + std::to_string(k) + ": " + e.what());
    throw KeyError(std::string(config::kKnobPrefix) + e.key(), std::string("config key 'policy.knobs': ") + e.what());
  } catch (const Error& e) {
    throw KeyError("policy.knobs", std::string("config key 'policy.knobs': ") + e.what());
  }
}

}  // namespace moesim
