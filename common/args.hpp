#pragma once
// The command line of a subcommand, parsed one way for all of them: --help,
// options with a value (`--out DIR` and `--out=DIR` alike), switches, the
// key.path=value overrides and positional words. Errors name the command and
// the option.
#include <map>
#include <string>
#include <vector>

namespace moesim {

bool wants_help(const std::vector<std::string>& args);

struct ArgSpec {
  std::vector<std::string> options;   // take a value: "--out"
  std::vector<std::string> switches;  // take none: "--quiet"
  std::map<std::string, std::string> aliases;  // "-o" -> "--out"
  int max_positional = 0;             // words that are neither options nor overrides
};

struct ParsedArgs {
  std::map<std::string, std::string> values;  // option -> value; switch -> "1"
  std::vector<std::string> overrides;         // key.path=value, in order
  std::vector<std::string> positional;

  bool has(const std::string& name) const { return values.count(name) > 0; }
  std::string get(const std::string& name, const std::string& def = "") const;
  // A whole-number option in [lo, hi] (def when absent); Error naming the option otherwise.
  long whole(const std::string& name, long def, long lo, long hi) const;
  double real(const std::string& name, double def) const;
};

ParsedArgs parse_args(const std::vector<std::string>& args, const ArgSpec& spec, const std::string& command);

}  // namespace moesim
