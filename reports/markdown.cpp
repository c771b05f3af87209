#include "reports/markdown.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace moesim {

std::string md_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '\n' || c == '\r' || c == '\t') {
      o += ' ';
      continue;
    }
    if (c == '|' || c == '*' || c == '_' || c == '`' || c == '<' || c == '>' || c == '[' || c == ']') o += '\\';
    o += c;
  }
  return o;
}

std::string fmt_value(double v) {
  if (std::isnan(v)) return "n/a";
  char b[32];
  const double a = std::fabs(v);
  if (a != 0 && (a < 0.001 || a >= 10000))
    std::snprintf(b, sizeof b, "%.3g", v);
  else
    std::snprintf(b, sizeof b, "%.3f", v);
  return b;
}

std::string mean_std(double mean, double std, int n) {
  if (std::isnan(mean)) return "n/a";
  char b[64];
  const double a = std::max(std::fabs(mean), std::fabs(std));
  const bool fixed = a == 0 || (a >= 0.001 && a < 10000);
  if (n > 1)
    std::snprintf(b, sizeof b, fixed ? "%.3f ± %.3f" : "%.3g ± %.2g", mean, std);
  else
    std::snprintf(b, sizeof b, fixed ? "%.3f" : "%.3g", mean);
  return b;
}

}  // namespace moesim
