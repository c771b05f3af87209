// CSV reader (the report's runs.csv and timeseries.csv): parsed, then every field
// read as a number the way the report does.
#include "common/csv.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto t = moesim::parse_csv(moesim::fuzz::text(data, size), "fuzz.csv");
    if (t.lines.size() != t.rows.size()) __builtin_trap();
    for (std::size_t r = 0; r < t.rows.size(); ++r) {
      if (t.rows[r].size() != t.header.size()) __builtin_trap();
      for (std::size_t c = 0; c < t.header.size(); ++c) {
        try {
          (void)t.number(r, c);
        } catch (const moesim::Error&) {
        }
      }
    }
  } catch (const moesim::Error&) {
  }
  return 0;
}
