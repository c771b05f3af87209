// Training config YAML plus overrides (after a "%%" line), resolved and validated,
// as `moesim train --config` reads them.
#include "fuzz.hpp"
#include "torch_backend/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto [yaml, overrides] = moesim::fuzz::with_overrides(moesim::fuzz::text(data, size));
  try {
    auto cfg = moesim::torch_backend::parse_config_text(yaml, "fuzz.yaml");
    moesim::torch_backend::apply_overrides(cfg, overrides);
    moesim::torch_backend::validate(cfg);
    // What a checkpoint stores is read back the same way and must give the same config.
    const auto again = moesim::torch_backend::parse_config_text(moesim::torch_backend::dump_config(cfg), "dump");
    if (moesim::torch_backend::config_fields(again) != moesim::torch_backend::config_fields(cfg)) __builtin_trap();
  } catch (const moesim::Error&) {
  }
  return 0;
}
