#include "config/flatten.hpp"

#include <algorithm>
#include <cctype>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"

namespace moesim::config {

std::string Origin::text() const {
  if (file.empty()) return kCommandLine;
  return line > 0 ? file + ":" + std::to_string(line) : file;
}

bool Setting::clears_knobs() const { return key == kKnobs; }

Schema::Schema(std::vector<ConfigKey> keys, std::vector<std::string> root_words, Check check, bool quoted_numbers)
    : keys_(std::move(keys)), root_words_(std::move(root_words)), check_(std::move(check)), quoted_numbers_(quoted_numbers) {
  for (const auto& k : keys_) {
    if (k.key == std::string(kKnobPrefix) + "<knob>") continue;
    paths_.push_back(k.key);
    for (auto dot = k.key.find('.'); dot != std::string::npos; dot = k.key.find('.', dot + 1))
      paths_.push_back(k.key.substr(0, dot));
  }
  paths_.emplace_back(kKnobs);
  std::sort(paths_.begin(), paths_.end());
  paths_.erase(std::unique(paths_.begin(), paths_.end()), paths_.end());
}

const ConfigKey* Schema::find(std::string_view path) const {
  for (const auto& k : keys_)
    if (k.key == path) return &k;
  return nullptr;
}

bool Schema::is_knob(std::string_view p) const {
  if (p.substr(0, kKnobPrefix.size()) != kKnobPrefix) return false;
  const auto rest = p.substr(kKnobPrefix.size());
  return !rest.empty() && rest.find('.') == std::string_view::npos && rest != "<knob>";
}

bool Schema::is_leaf(std::string_view p) const { return is_knob(p) || (p != "policy.knobs.<knob>" && find(p)); }

bool Schema::is_section(std::string_view p) const {
  if (p.empty()) return false;
  if (p == kKnobs) return true;
  for (const auto& k : keys_)
    if (k.key.size() > p.size() && k.key.compare(0, p.size(), p) == 0 && k.key[p.size()] == '.') return true;
  return false;
}

std::string Schema::unknown_key(const std::string& path, bool root) const {
  auto cands = paths_;
  if (root) cands.insert(cands.end(), root_words_.begin(), root_words_.end());
  const auto hint = did_you_mean(path, cands);
  return "key '" + path + "': unknown key" + (hint.empty() ? "" : " (did you mean '" + hint + "'?)");
}

void fail(const Origin& at, const std::string& key, const std::string& what) {
  throw KeyError(key, at.text() + ": " + what);
}

Origin origin_of(const std::string& file, const YAML::Node& n) {
  // yaml-cpp marks are 0-based; a node made up by the parser has line -1.
  return {file, n.Mark().line >= 0 ? n.Mark().line + 1 : 0};
}

const char* kind_of(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Map: return "a map";
    case YAML::NodeType::Sequence: return "a list";
    case YAML::NodeType::Scalar: return "a value";
    default: return "nothing";
  }
}

YAML::Node parse_yaml(const std::string& text, const std::string& file) {
  try {
    return YAML::Load(text);
  } catch (const YAML::Exception& e) {
    const int line = e.mark.line >= 0 ? e.mark.line + 1 : 0;
    throw Error(Origin{file, line}.text() + ": malformed YAML: " + e.msg);
  }
}

namespace {

bool quoted(const YAML::Node& n) { return n.Tag() == "!"; }

// Strips the "config " set_field puts in front, so every message reads "key '...'".
std::string key_message(const Error& e) {
  std::string m = e.what();
  if (m.rfind("config key", 0) == 0) m.erase(0, 7);
  return m;
}

// The text a leaf's setter reads: a scalar, or a list of scalars joined by commas.
std::string leaf_text(const Schema& schema, const std::string& path, const YAML::Node& v, const Origin& at) {
  if (!v.IsDefined() || v.IsNull()) fail(at, path, "key '" + path + "': missing value");
  const ConfigKey* info = schema.find(path);
  if (info && info->type == "list" && v.IsSequence()) {
    std::string joined;
    for (const auto& item : v) {
      if (!item.IsScalar()) fail(at, path, "key '" + path + "': a list of values only, got " + kind_of(item) + " in it");
      joined += (joined.empty() ? "" : ",") + item.Scalar();
    }
    return joined;
  }
  if (!v.IsScalar()) fail(at, path, "key '" + path + "': expected a single value, got " + kind_of(v));
  if (info && (info->type == "int" || info->type == "real" || info->type == "seed") && quoted(v) &&
      !schema.quoted_numbers())
    fail(at, path, "key '" + path + "' = \"" + v.Scalar() + "\": expected a number, got a quoted string");
  return v.Scalar();
}

}  // namespace

void flatten(const Schema& schema, const std::string& path, const YAML::Node& key, const YAML::Node& value,
             const std::string& file, std::vector<Setting>& out, std::map<std::string, int>& seen, bool root) {
  const Origin at = origin_of(file, key);
  if (schema.is_leaf(path)) {
    const Origin vat = value.IsDefined() && !value.IsNull() ? origin_of(file, value) : at;
    const std::string text = leaf_text(schema, path, value, vat);
    if (!schema.is_knob(path)) {  // knobs are checked against their policy once the config is whole
      try {
        schema.check(path, text);
      } catch (const Error& e) {
        fail(vat, path, key_message(e));
      }
    }
    if (auto it = seen.find(path); it != seen.end())
      fail(at, path, "key '" + path + "': set twice (first at line " + std::to_string(it->second) + ")");
    seen[path] = at.line;
    out.push_back({path, text, at});
    return;
  }
  if (!schema.is_section(path)) fail(at, path, schema.unknown_key(path, root));
  if (value.IsNull()) return;  // `world:` with nothing under it
  if (!value.IsMap())
    fail(at, path, "key '" + path + "': expected a map of " + path + ".* keys, got " + kind_of(value));
  flatten_map(schema, path, value, file, out, seen, false);
}

void flatten_map(const Schema& schema, const std::string& path, const YAML::Node& map, const std::string& file,
                 std::vector<Setting>& out, std::map<std::string, int>& seen, bool root,
                 const std::set<std::string>& skip) {
  std::set<std::string> local;
  bool named_policy = false, empty = true;
  for (auto it = map.begin(); it != map.end(); ++it) {
    if (!it->first.IsScalar() || it->first.Scalar().empty())
      fail(origin_of(file, it->first), path, "key under '" + path + "': expected a name");
    const std::string& k = it->first.Scalar();
    const std::string full = path.empty() ? k : path + "." + k;
    if (!local.insert(k).second) fail(origin_of(file, it->first), full, "key '" + full + "': set twice in one map");
    if (skip.count(k)) continue;
    empty = false;
    named_policy = named_policy || (path == "policy" && k == "name");
  }
  // A named policy block, or an empty knobs map, restarts the knobs from the defaults.
  if (named_policy || (path == kKnobs && empty)) out.push_back({std::string(kKnobs), "{}", origin_of(file, map)});
  // The name first, so a named block's knobs follow it whatever the order in the file.
  for (int pass = 0; pass < 2; ++pass)
    for (auto it = map.begin(); it != map.end(); ++it) {
      const std::string& k = it->first.Scalar();
      if (skip.count(k) || (pass == 0) != (named_policy && k == "name")) continue;
      flatten(schema, path.empty() ? k : path + "." + k, it->first, it->second, file, out, seen, root);
    }
}

std::string yaml_scalar(const std::string& v) {
  static const std::set<std::string> reserved = {"null", "Null", "NULL", "~", ""};
  bool plain = !reserved.count(v);
  for (char c : v)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '+' || c == '-')) plain = false;
  if (plain) return v;
  std::string q = "\"";
  for (char c : v) {
    if (c == '"' || c == '\\') q += '\\';
    if (c == '\n') {
      q += "\\n";
      continue;
    }
    q += c;
  }
  return q + "\"";
}


std::pair<std::string, YAML::Node> split_override(std::string_view arg) {
  const Origin at{"", 0};
  const auto eq = arg.find('=');
  if (eq == std::string_view::npos || eq == 0)
    throw Error(at.text() + ": override '" + std::string(arg) + "': expected key.path=value");
  const std::string key(arg.substr(0, eq));
  const std::string text(arg.substr(eq + 1));
  try {
    return {key, YAML::Load(text)};
  } catch (const YAML::Exception& e) {
    fail(at, key, "key '" + key + "': malformed YAML value '" + text + "': " + e.msg);
  }
}

std::vector<Setting> file_settings(const Schema& schema, const std::string& path, const std::string& examples) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error&) {
    throw Error("config file '" + path + "' cannot be read");
  }
  const auto root = parse_yaml(text, path);
  if (root.IsNull()) throw Error(path + ": empty config: expected a map of keys (" + examples + " has examples)");
  if (!root.IsMap()) throw Error(origin_of(path, root).text() + ": the top level must be a map of keys, got " + kind_of(root));
  std::vector<Setting> settings;
  std::map<std::string, int> seen;
  flatten_map(schema, "", root, path, settings, seen, true);
  return settings;
}

std::vector<Setting> override_settings(const Schema& schema, std::string_view arg) {
  const auto [key, value] = split_override(arg);
  std::vector<Setting> settings;
  std::map<std::string, int> seen;
  flatten(schema, key, YAML::Node(key), value, "", settings, seen, true);
  return settings;
}

}  // namespace moesim::config
