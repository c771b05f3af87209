#include "common/args.hpp"

#include <algorithm>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moesim {

bool wants_help(const std::vector<std::string>& args) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") return true;
  return false;
}

std::string ParsedArgs::get(const std::string& name, const std::string& def) const {
  auto it = values.find(name);
  return it == values.end() ? def : it->second;
}

long ParsedArgs::whole(const std::string& name, long def, long lo, long hi) const {
  auto it = values.find(name);
  if (it == values.end()) return def;
  long v = 0;
  if (!parse_int(it->second, v) || v < lo || v > hi)
    throw Error(name + ": expected a whole number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "], got '" +
                it->second + "'");
  return v;
}

double ParsedArgs::real(const std::string& name, double def) const {
  auto it = values.find(name);
  if (it == values.end()) return def;
  double v = 0;
  if (!parse_real(it->second, v)) throw Error(name + ": expected a number, got '" + it->second + "'");
  return v;
}

ParsedArgs parse_args(const std::vector<std::string>& args, const ArgSpec& spec, const std::string& command) {
  ParsedArgs out;
  auto listed = [](const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i];
    if (auto al = spec.aliases.find(a); al != spec.aliases.end()) a = al->second;
    if (!a.empty() && a[0] == '-') {
      const auto eq = a.find('=');
      const std::string name = a.substr(0, eq);
      if (listed(spec.options, name)) {
        std::string value;
        if (eq != std::string::npos) {
          value = a.substr(eq + 1);
        } else {
          if (i + 1 >= args.size()) throw Error(command + ": " + name + " needs a value");
          value = args[++i];
        }
        if (value.empty()) throw Error(command + ": " + name + " needs a non-empty value");
        out.values[name] = value;
      } else if (listed(spec.switches, a)) {
        out.values.insert_or_assign(a, std::string(1, '1'));  // GCC 12 warns falsely (-Wrestrict) on = "1"
      } else {
        std::vector<std::string> known = spec.options;
        known.insert(known.end(), spec.switches.begin(), spec.switches.end());
        const auto hint = did_you_mean(name, known);
        throw Error(command + ": unknown option '" + args[i] + "'" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)") +
                    " (see --help)");
      }
    } else if (a.find('=') != std::string::npos) {
      out.overrides.push_back(a);
    } else if (static_cast<int>(out.positional.size()) < spec.max_positional) {
      out.positional.push_back(a);
    } else {
      throw Error(command + ": unexpected argument '" + a + "' (expected an option or key.path=value" +
                  (out.positional.empty() ? "" : "; already given: '" + join(out.positional, "', '") + "'") + ")");
    }
  }
  return out;
}

}  // namespace moesim
