// One JSON line of a C4 shard: a document's text, or a reason to skip the line.
// Accepted text is valid UTF-8 without NUL.
#include "fuzz.hpp"
#include "torch_backend/c4_loader.hpp"

namespace {

bool valid_utf8(const std::string& s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const int n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size() || c == 0) return false;
    for (int j = 1; j < n; ++j)
      if ((static_cast<unsigned char>(s[i + j]) >> 6) != 2) return false;
    i += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string text, why;
  if (moesim::torch_backend::parse_c4_line(moesim::fuzz::text(data, size), text, why)) {
    if (!valid_utf8(text)) __builtin_trap();
  } else if (why.empty()) {
    __builtin_trap();  // a refusal always says why
  }
  return 0;
}
