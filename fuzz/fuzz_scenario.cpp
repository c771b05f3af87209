// Scenario YAML plus key.path=value overrides (after a "%%" line), then every
// sweep point expanded and validated, as `moesim sweep` reads them.
#include "fuzz.hpp"
#include "sim/scenario.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const auto [yaml, overrides] = moesim::fuzz::with_overrides(moesim::fuzz::text(data, size));
  try {
    const auto sc = moesim::parse_scenario(yaml, "fuzz.yaml", overrides);
    // Bounded: a grid's size is the product of its axes, which the input controls.
    std::size_t points = 1;
    for (const auto& g : sc.grids) {
      std::size_t n = 1;
      for (const auto& axis : g) n *= axis.items.size();
      points += n;
    }
    if (points <= 4096) (void)moesim::expand_sweep(sc);
  } catch (const moesim::Error&) {
  }
  return 0;
}
