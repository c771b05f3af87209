// The strict JSON reader under summary.json, manifests and C4 lines.
#include "common/json.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)moesim::parse_json(moesim::fuzz::text(data, size), "fuzz.json");
  } catch (const moesim::Error&) {
  }
  return 0;
}
