#pragma once
// YAML config files as flat key paths, one way for the simulator's scenarios and
// the trainer's configs:
//   * nested maps and dotted keys alike: `world: {lr: 1}` is `world.lr: 1`;
//   * a key set twice in one tree (in either form) is refused, naming both lines;
//   * an unknown key is answered with the closest known one;
//   * a policy map that names the policy (`policy: {name: rdesi, knobs: {...}}`)
//     is a whole policy: its knobs start from the defaults (the "clear" setting);
//   * keys of type list take a YAML list of scalars;
//   * `key.path=value` overrides carry YAML values, flattened the same way.
// Every error is a KeyError naming the file and line (or "command line") and the key.
#include <yaml-cpp/yaml.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "config/key_table.hpp"

namespace moesim::config {

// Where a setting came from.
struct Origin {
  std::string file;  // path as given; empty = the command line
  int line = 0;      // 1-based; 0 = none
  std::string text() const;  // "file:12", "file" or "command line"
};

// One key = value, in the order the source sets them. Key "policy.knobs" with
// value "{}" clears the knob overrides (a named policy block starts afresh).
struct Setting {
  std::string key, value;
  Origin origin;
  bool clears_knobs() const;
};

inline constexpr std::string_view kKnobs = "policy.knobs";
const char* const kCommandLine = "command line";

// A config's keys: its key table, words allowed at the root besides them (a
// scenario's name, seeds, sweep), and the check of one leaf value on its own.
class Schema {
 public:
  using Check = std::function<void(const std::string& key, const std::string& value)>;
  // quoted_numbers: accept "4" for a number (configs stored by earlier versions);
  // user files refuse it, as a quoted number is usually a mistake.
  Schema(std::vector<ConfigKey> keys, std::vector<std::string> root_words, Check check, bool quoted_numbers = false);
  bool quoted_numbers() const { return quoted_numbers_; }
  const ConfigKey* find(std::string_view path) const;
  bool is_knob(std::string_view path) const;  // policy.knobs.<one word>
  bool is_leaf(std::string_view path) const;
  bool is_section(std::string_view path) const;
  // "key 'x': unknown key (did you mean 'y'?)"
  std::string unknown_key(const std::string& path, bool root) const;
  void check(const std::string& key, const std::string& value) const { check_(key, value); }

 private:
  std::vector<ConfigKey> keys_;
  std::vector<std::string> paths_, root_words_;
  Check check_;
  bool quoted_numbers_;
};

[[noreturn]] void fail(const Origin& at, const std::string& key, const std::string& what);
Origin origin_of(const std::string& file, const YAML::Node& n);
const char* kind_of(const YAML::Node& n);
// YAML text to a node; malformed YAML is an Error naming file and line.
YAML::Node parse_yaml(const std::string& text, const std::string& file);

// `key: value` at path (a leaf or a section) into settings. seen: path -> line of
// the keys set so far in this tree.
void flatten(const Schema& schema, const std::string& path, const YAML::Node& key, const YAML::Node& value,
             const std::string& file, std::vector<Setting>& out, std::map<std::string, int>& seen, bool root);
// The body of a map at path ("" = the root); keys in `skip` are left to the caller.
void flatten_map(const Schema& schema, const std::string& path, const YAML::Node& map, const std::string& file,
                 std::vector<Setting>& out, std::map<std::string, int>& seen, bool root,
                 const std::set<std::string>& skip = {});

// A value as a YAML scalar that reads back as the same text: plain when it holds
// only safe characters, else double-quoted.
std::string yaml_scalar(const std::string& v);

// One `key.path=value` override: (key, its YAML value), or an Error for a missing '='
// or malformed YAML.
std::pair<std::string, YAML::Node> split_override(std::string_view arg);

// A config file's settings: read (Error "config file 'F' cannot be read"), parsed,
// the root checked to be a map (`examples` names where example files are), flattened.
std::vector<Setting> file_settings(const Schema& schema, const std::string& path, const std::string& examples);
// The settings of one `key.path=value` override.
std::vector<Setting> override_settings(const Schema& schema, std::string_view arg);

}  // namespace moesim::config
