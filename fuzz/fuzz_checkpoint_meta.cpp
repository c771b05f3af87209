// The text metadata a checkpoint carries, read the way Trainer::load reads it:
// the stored config (then a policy built from it) and, after a "%%" line, the
// policy state of its first MoE layer.
#include <sstream>

#include "fuzz.hpp"
#include "policies/registry.hpp"
#include "torch_backend/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto in = moesim::fuzz::text(data, size);
  const auto cut = in.find("\n%%\n");
  const std::string config(in.substr(0, cut));
  const std::string state = cut == std::string_view::npos ? "" : std::string(in.substr(cut + 4));
  try {
    const auto cfg = moesim::torch_backend::parse_config_text(config, "checkpoint.pt (config)");
    if (cfg.model.moe_layers.empty() || cfg.model.experts > 4096) return 0;
    auto p = moesim::make_policy(cfg.policy.name, cfg.model.experts, cfg.model.k, cfg.policy.knobs);
    std::istringstream ss(state);
    p->load(ss, "checkpoint.pt (policy of layer 1)");
  } catch (const moesim::Error&) {
  }
  return 0;
}
