#pragma once
// A strict JSON reader for one C4 line: validates the whole object and returns
// its top-level "text" string, decoded to UTF-8. No JSON library is needed for
// that, and a strict parser is what lets the loader count malformed lines.
#include <string>
#include <string_view>

namespace moesim::torch_backend {

// On success returns true and sets text. On failure returns false and sets
// why to a short reason ("invalid JSON at column 17: ...", "no \"text\" field").
bool parse_c4_line(std::string_view line, std::string& text, std::string& why);

}  // namespace moesim::torch_backend
