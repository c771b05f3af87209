// traces/manifest.json, as a resumed `moesim train` reads it.
#include "fuzz.hpp"
#include "trace/trace.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)moesim::parse_trace_manifest(moesim::fuzz::text(data, size), "manifest.json");
  } catch (const moesim::Error&) {
  }
  return 0;
}
