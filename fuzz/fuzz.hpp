#pragma once
// What every fuzz target shares: the input as text, and the one rule of moesim's
// parsers under fuzzing — refuse bad input with moesim::Error (a clear message),
// never crash, hang, overflow or throw anything else. Anything but Error escapes
// the target and libFuzzer reports it as a crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/error.hpp"

namespace moesim::fuzz {

inline std::string_view text(const std::uint8_t* data, std::size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Splits "main text\n%%\nline\nline" into the text before the first "\n%%\n" and
// the lines after it (the command-line overrides of a config target).
inline std::pair<std::string, std::vector<std::string>> with_overrides(std::string_view in) {
  const auto cut = in.find("\n%%\n");
  if (cut == std::string_view::npos) return {std::string(in), {}};
  std::vector<std::string> lines;
  std::string_view rest = in.substr(cut + 4);
  while (!rest.empty()) {
    const auto nl = rest.find('\n');
    lines.emplace_back(rest.substr(0, nl));
    if (nl == std::string_view::npos) break;
    rest.remove_prefix(nl + 1);
  }
  return {std::string(in.substr(0, cut)), lines};
}

}  // namespace moesim::fuzz
