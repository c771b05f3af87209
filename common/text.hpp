#pragma once
// Numbers and words as text, one way everywhere: strict parsers that refuse any
// junk, the two number formats moesim writes, and the small word helpers the
// command line and the config errors share.
#include <string>
#include <string_view>
#include <vector>

namespace moesim {

// Strict parsers: the whole text must be the number, with at most one leading '+'
// ("+-5", " 5", "5x", "" are refused). Return false on any junk.
bool parse_real(std::string_view s, double& out);
bool parse_int(std::string_view s, long& out);
bool parse_uint64(std::string_view s, unsigned long long& out);
bool parse_bool(std::string_view s, bool& out);  // true/false, 1/0, yes/no, on/off

// The shortest text that reads back as exactly v (0.001, not 0.0010000000000000002;
// 10, not 1e+01): config values, knob values, state files.
std::string format_real(double v);
// Data files (CSV, JSON): 9 significant digits (every float distinct, plenty for
// doubles in reports), no locale, -0 as 0, nan and inf spelled out.
std::string format_number(double v);

std::string join(const std::vector<std::string>& words, std::string_view sep);
// Closest candidate within a small edit distance (a swapped pair is one typo), or
// one with the same last dotted component; "" when none.
std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates);
// Quotes a word for a POSIX shell when it needs it.
std::string shell_quote(std::string_view s);
// Seconds as m:ss or h:mm:ss; "?" when unknown.
std::string clock_text(double seconds);

}  // namespace moesim
