#include "common/cpu.hpp"

#include <fstream>
#include <set>
#include <sstream>

namespace moesim {

namespace {

// The value of the first "key : value" line of /proc/cpuinfo with this key.
std::string cpuinfo_field(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string k = line.substr(0, colon);
    while (!k.empty() && (k.back() == ' ' || k.back() == '\t')) k.pop_back();
    if (k != key) continue;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(' '));
    return v;
  }
  return "";
}

}  // namespace

std::string cpu_model() {
  const std::string m = cpuinfo_field("model name");
  return m.empty() ? "unknown CPU" : m;
}

std::string cpu_isa() {
  std::set<std::string> flags;
  std::istringstream f(cpuinfo_field("flags"));
  for (std::string w; f >> w;) flags.insert(w);
  std::string out;
  for (const auto& [flag, name] : {std::pair<const char*, const char*>{"avx2", "AVX2"},
                                  {"avx512f", "AVX-512F"},
                                  {"avx512_bf16", "AVX-512-BF16"},
                                  {"amx_bf16", "AMX-BF16"}})
    if (flags.count(flag)) {
      // Appends, not "a" + b: GCC 12 warns falsely on the temporary (-Wrestrict, PR105651).
      if (!out.empty()) out += ' ';
      out += name;
    }
  if (!flags.count("amx_bf16")) out += out.empty() ? "no AVX2, no AMX" : " (no AMX)";
  return out;
}

}  // namespace moesim
