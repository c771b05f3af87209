#include "common/text.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace moesim {

namespace {

// One optional '+', then what from_chars accepts, to the end of the text.
template <class T, class... Opt>
bool parse_number(std::string_view s, T& out, Opt... opt) {
  if (s.empty()) return false;
  const char* b = s.data();
  const char* e = b + s.size();
  if (*b == '+') {
    ++b;
    if (b == e || *b == '-' || *b == '+') return false;
  }
  auto [p, ec] = std::from_chars(b, e, out, opt...);
  return ec == std::errc() && p == e;
}

}  // namespace

bool parse_real(std::string_view s, double& out) { return parse_number(s, out); }
bool parse_int(std::string_view s, long& out) { return parse_number(s, out); }
bool parse_uint64(std::string_view s, unsigned long long& out) {
  return !s.empty() && s[0] != '-' && parse_number(s, out);
}

bool parse_bool(std::string_view s, bool& out) {
  if (s == "true" || s == "1" || s == "yes" || s == "on") return out = true, true;
  if (s == "false" || s == "0" || s == "no" || s == "off") return out = false, true;
  return false;
}

std::string format_real(double v) {
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, v);
  return std::string(buf, res.ptr);
}

std::string format_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0.0) return "0";  // also -0
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 9);
  return std::string(buf, r.ptr);
}

std::string join(const std::vector<std::string>& words, std::string_view sep) {
  std::string s;
  for (const auto& w : words) {
    if (!s.empty()) s += sep;
    s += w;
  }
  return s;
}

std::string did_you_mean(std::string_view word, const std::vector<std::string>& candidates) {
  auto dist = [](std::string_view a, std::string_view b) {
    // Optimal string alignment distance: a swapped pair is one typo.
    std::vector<std::vector<int>> d(a.size() + 1, std::vector<int>(b.size() + 1));
    for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = static_cast<int>(i);
    for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = static_cast<int>(j);
    for (std::size_t i = 1; i <= a.size(); ++i)
      for (std::size_t j = 1; j <= b.size(); ++j) {
        d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] != b[j - 1])});
        if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
          d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    return d[a.size()][b.size()];
  };
  // Long words are compared only with candidates of a similar length: the distance
  // table is quadratic, and a 50 KB key must not take seconds to be refused.
  const int limit = word.size() < 4 ? 1 : word.size() < 10 ? 2 : 3;
  std::string best;
  int best_d = limit + 1;
  for (const auto& c : candidates) {  // first of equals wins: candidates come in a fixed order
    const auto gap = word.size() > c.size() ? word.size() - c.size() : c.size() - word.size();
    if (gap > static_cast<std::size_t>(limit)) continue;
    const int d = dist(word, c);
    if (d < best_d) best_d = d, best = c;
  }
  if (!best.empty()) return best;
  // Right name, wrong section: `stream.skill_growth` -> `world.skill_growth`.
  const auto dot = word.rfind('.');
  const auto tail = word.substr(dot == std::string_view::npos ? 0 : dot + 1);
  for (const auto& c : candidates) {
    const auto cd = c.rfind('.');
    if (cd != std::string::npos && std::string_view(c).substr(cd + 1) == tail) return c;
  }
  return "";
}

std::string shell_quote(std::string_view s) {
  bool safe = !s.empty();
  for (char c : s)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || std::string_view("_-.,/=:+@%").find(c) != std::string_view::npos))
      safe = false;
  if (safe) return std::string(s);
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string clock_text(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const auto t = static_cast<long>(s + 0.5);
  char b[32];
  if (t >= 3600)
    std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    std::snprintf(b, sizeof b, "%ld:%02ld", t / 60, t % 60);
  return b;
}

}  // namespace moesim
