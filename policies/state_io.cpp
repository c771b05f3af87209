#include "policies/state_io.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>

#include "common/text.hpp"
#include "policies/types.hpp"

namespace moesim {

static std::string hex(double v) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%a", v);
  return buf;
}

void StateWriter::put(const std::string& key, const std::vector<double>& v) {
  os_ << key << ' ' << v.size();
  for (double x : v) os_ << ' ' << hex(x);
  os_ << '\n';
}
void StateWriter::put(const std::string& key, double v) { os_ << key << " 1 " << hex(v) << '\n'; }
void StateWriter::put(const std::string& key, std::int64_t v) { os_ << key << " 1 " << v << '\n'; }

void StateReader::fail(const std::string& why) const {
  throw Error(source_ + ": line " + std::to_string(line_no_) + ": " + why);
}

std::vector<std::string> StateReader::line(const std::string& key) {
  std::string text;
  ++line_no_;
  if (!std::getline(is_, text)) fail("truncated state: expected '" + key + "'");
  std::istringstream ss(text);
  std::vector<std::string> toks;
  std::string t;
  while (ss >> t) toks.push_back(t);
  if (toks.empty() || toks[0] != key)
    fail("expected '" + key + "', found '" + (toks.empty() ? "" : toks[0]) + "'");
  if (toks.size() < 2) fail("'" + key + "' has no length");
  long n = 0;
  if (!parse_int(toks[1], n) || n < 0 || static_cast<std::size_t>(n) != toks.size() - 2)
    fail("'" + key + "' declares " + toks[1] + " values, has " + std::to_string(toks.size() - 2));
  return {toks.begin() + 2, toks.end()};
}

std::vector<double> StateReader::get_vec(const std::string& key, std::size_t expected_size) {
  auto toks = line(key);
  if (toks.size() != expected_size)
    fail("'" + key + "' has " + std::to_string(toks.size()) + " values, expected " +
         std::to_string(expected_size));
  std::vector<double> v;
  v.reserve(toks.size());
  for (const auto& t : toks) {
    // strtod: the hex floats of StateWriter; the whole token, finite.
    char* end = nullptr;
    const double x = std::strtod(t.c_str(), &end);
    if (*end != '\0' || !std::isfinite(x)) fail("'" + key + "': bad number '" + t + "'");
    v.push_back(x);
  }
  return v;
}

double StateReader::get_real(const std::string& key) { return get_vec(key, 1)[0]; }
std::int64_t StateReader::get_int(const std::string& key) {
  const auto toks = line(key);
  long v = 0;
  if (toks.size() != 1) fail("'" + key + "' has " + std::to_string(toks.size()) + " values, expected 1");
  if (!parse_int(toks[0], v)) fail("'" + key + "': bad integer '" + toks[0] + "'");
  return v;
}

}  // namespace moesim
