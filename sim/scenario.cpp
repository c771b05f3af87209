#include "sim/scenario.hpp"


#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <charconv>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "config/flatten.hpp"
#include "policies/registry.hpp"
#include "policies/types.hpp"
#include "sim/replay.hpp"

namespace moesim {

namespace {

using config::fail;
using config::kCommandLine;
using config::kind_of;
using config::kKnobs;
using config::origin_of;
using config::Setting;

constexpr std::string_view kKnobPrefix = config::kKnobPrefix;

bool is_clear(const std::pair<std::string, std::string>& kv) { return kv.first == kKnobs; }

[[noreturn]] void fail(const Origin& at, const std::string& what) { throw Error(at.text() + ": " + what); }

bool quoted(const YAML::Node& n) { return n.Tag() == "!"; }

// A leaf value checked alone: the policy name against the registry, every other
// key by its setter on a scratch config.
void check_leaf(const std::string& path, const std::string& value) {
  if (path == "policy.name") {
    std::vector<std::string> names;
    for (const auto& p : policy_registry()) names.push_back(p.name);
    if (std::find(names.begin(), names.end(), value) == names.end()) {
      const auto hint = did_you_mean(value, names);
      throw KeyError("policy.name", "key 'policy.name' = '" + value + "': unknown policy (" +
                                        (hint.empty() ? "" : "did you mean '" + hint + "'? ") + "known: " +
                                        join(names, ", ") + ")");
    }
  }
  SimConfig scratch;
  set_field(scratch, path, value);
}

const config::Schema& schema() {
  static const config::Schema s(config_keys(), {"name", "description", "seeds", "sweep"}, check_leaf);
  return s;
}

void flatten(const std::string& path, const YAML::Node& key, const YAML::Node& value, const std::string& file,
             std::vector<Setting>& out, std::map<std::string, int>& seen, bool root) {
  config::flatten(schema(), path, key, value, file, out, seen, root);
}

void flatten_map(const std::string& path, const YAML::Node& map, const std::string& file, std::vector<Setting>& out,
                 std::map<std::string, int>& seen, bool root, const std::set<std::string>& skip = {}) {
  config::flatten_map(schema(), path, map, file, out, seen, root, skip);
}

void apply_setting(SimConfig& cfg, const std::string& key, const std::string& value) {
  if (key == kKnobs) {
    cfg.policy.knobs.clear();
    return;
  }
  set_field(cfg, key, value);
}

std::vector<std::uint64_t> parse_seeds(const YAML::Node& n, const Origin& at) {
  if (!n.IsSequence() || n.size() == 0)
    fail(at, "key 'seeds': expected a non-empty list of seeds, e.g. [1, 2, 3], got " +
                 std::string(n.IsSequence() ? "an empty list" : kind_of(n)));
  std::vector<std::uint64_t> out;
  for (const auto& s : n) {
    const Origin sat = s.Mark().line >= 0 ? Origin{at.file, s.Mark().line + 1} : at;
    std::uint64_t x = 0;
    const std::string t = s.IsScalar() ? s.Scalar() : "";
    auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), x);
    if (!s.IsScalar() || quoted(s) || t.empty() || ec != std::errc() || p != t.data() + t.size())
      fail(sat, "key 'seeds': expected an unsigned integer, got " +
                    (s.IsScalar() ? "'" + t + "'" : std::string(kind_of(s))));
    if (std::find(out.begin(), out.end(), x) != out.end())
      fail(sat, "key 'seeds': seed " + t + " listed twice");
    out.push_back(x);
  }
  return out;
}

std::string short_key(const std::string& key) {
  const auto dot = key.rfind('.');
  return dot == std::string::npos ? key : key.substr(dot + 1);
}

// A sweep value's default label: "rdesi(beta=0.5)" for a policy, else "k=v,k=v".
std::string auto_label(const std::string& section, const KeyValues& sets) {
  std::string name, inner;
  for (const auto& kv : sets) {
    if (is_clear(kv)) continue;
    if (section == "policy" && kv.first == "policy.name") {
      name = kv.second;
      continue;
    }
    std::string k = kv.first;
    if (section == "policy" && k.rfind(kKnobPrefix, 0) == 0)
      k = k.substr(kKnobPrefix.size());
    else if (k.rfind(section + ".", 0) == 0)
      k = k.substr(section.size() + 1);
    inner += (inner.empty() ? "" : ",") + k + "=" + kv.second;
  }
  if (name.empty()) return inner;
  return inner.empty() ? name : name + "(" + inner + ")";
}

SweepAxis parse_axis(const std::string& key, const YAML::Node& knode, const YAML::Node& values,
                     const std::string& file) {
  const Origin at = origin_of(file, knode);
  SweepAxis axis;
  axis.key = key;
  axis.origin = at;
  if (key == "seed") fail(at, "key 'sweep.seed': list the seeds under 'seeds:' instead");
  const bool leaf = schema().is_leaf(key);
  if (!leaf && !schema().is_section(key)) fail(at, "sweep " + schema().unknown_key(key, false));
  axis.section = !leaf;
  if (!values.IsSequence() || values.size() == 0)
    fail(at, "key 'sweep." + key + "': expected a non-empty list of values, got " +
                 std::string(values.IsSequence() ? "an empty list" : kind_of(values)));
  std::set<std::string> labels;
  for (const auto& v : values) {
    SweepItem item;
    item.origin = v.Mark().line >= 0 ? origin_of(file, v) : at;
    std::vector<Setting> out;
    std::map<std::string, int> seen;
    if (leaf) {
      if (v.IsMap() || v.IsSequence())
        fail(item.origin, "key 'sweep." + key + "': expected a value for '" + key + "', got " + kind_of(v));
      flatten(key, knode, v, file, out, seen, false);
      out.back().origin = item.origin;
      item.label = v.Scalar();
    } else {
      if (!v.IsMap())
        fail(item.origin, "key 'sweep." + key + "': expected a map of " + key + ".* keys, got " + kind_of(v));
      const YAML::Node label = v["label"], extra = v["set"];
      flatten_map(key, v, file, out, seen, false, {"label", "set"});
      if (extra.IsDefined() && !extra.IsNull()) {
        if (!extra.IsMap())
          fail(origin_of(file, extra), "key 'sweep." + key + "': 'set' expects a map of keys from the root, got " +
                                           kind_of(extra));
        flatten_map("", extra, file, out, seen, true);
      }
      if (label.IsDefined()) {
        if (!label.IsScalar() || label.Scalar().empty())
          fail(origin_of(file, label), "key 'sweep." + key + "': 'label' expects a non-empty name");
        item.label = label.Scalar();
      }
    }
    for (const auto& s : out) {
      if (s.key == "seed") fail(s.origin, "key 'seed' in a sweep value: list the seeds under 'seeds:' instead");
      item.sets.emplace_back(s.key, s.value);
    }
    if (item.sets.empty()) fail(item.origin, "key 'sweep." + key + "': a sweep value that sets nothing");
    if (item.label.empty()) item.label = auto_label(key, item.sets);
    if (!labels.insert(item.label).second)
      fail(item.origin, "key 'sweep." + key + "': two values labelled '" + item.label + "'");
    axis.items.push_back(std::move(item));
  }
  return axis;
}

SweepGrid parse_grid(const YAML::Node& g, const std::string& file, const Origin& at) {
  if (!g.IsMap()) fail(at, "key 'sweep': expected a map of axes (key: [values]) or a list of such maps, got " +
                               std::string(kind_of(g)));
  SweepGrid grid;
  for (auto it = g.begin(); it != g.end(); ++it) {
    if (!it->first.IsScalar() || it->first.Scalar().empty())
      fail(origin_of(file, it->first), "key under 'sweep': expected a key path");
    const std::string key = it->first.Scalar();
    for (const auto& a : grid)
      if (a.key == key) fail(origin_of(file, it->first), "key 'sweep." + key + "': axis listed twice");
    grid.push_back(parse_axis(key, it->first, it->second, file));
  }
  if (grid.empty()) fail(at, "key 'sweep': a grid with no axes");
  return grid;
}

std::vector<SweepGrid> parse_sweep(const YAML::Node& n, const std::string& file, const Origin& at) {
  std::vector<SweepGrid> grids;
  if (n.IsNull()) return grids;
  if (n.IsSequence()) {
    for (const auto& g : n) grids.push_back(parse_grid(g, file, g.Mark().line >= 0 ? origin_of(file, g) : at));
    return grids;
  }
  grids.push_back(parse_grid(n, file, at));
  return grids;
}

std::string need_scalar_text(const YAML::Node& v, const std::string& key, const Origin& at) {
  if (!v.IsScalar()) fail(at, "key '" + key + "': expected text, got " + kind_of(v));
  return v.Scalar();
}

void apply_config_entry(Scenario& sc, const std::string& path, const YAML::Node& key, const YAML::Node& value,
                        const std::string& file, std::map<std::string, int>& seen) {
  std::vector<Setting> out;
  flatten(path, key, value, file, out, seen, true);
  for (const auto& s : out) {
    apply_setting(sc.base, s.key, s.value);
    if (s.key == kKnobs) {
      for (auto it = sc.origins.begin(); it != sc.origins.end();)
        it = it->first.rfind(kKnobPrefix, 0) == 0 ? sc.origins.erase(it) : std::next(it);
    }
    sc.origins[s.key] = s.origin;
  }
}

// Knobs against their policy, a replay's shape from its trace, then validate();
// `where` maps a key to its origin.
template <class Where>
void check_config(SimConfig& cfg, const Where& where, const std::string& context) {
  const PolicyInfo& info = policy_info(cfg.policy.name);
  for (const auto& [k, v] : cfg.policy.knobs) {
    const std::string key = std::string(kKnobPrefix) + k;
    std::vector<std::string> names;
    for (const auto& s : info.knobs) names.push_back(s.name);
    if (std::find(names.begin(), names.end(), k) == names.end()) {
      const auto hint = did_you_mean(k, names);
      fail(where(key), context + "key '" + key + "': policy '" + info.name + "' has no knob '" + k + "' (" +
                           (hint.empty() ? "" : "did you mean '" + hint + "'? ") + "knobs: " + join(names, ", ") +
                           ")");
    }
    try {
      Knobs(info.name, info.knobs, {{k, v}});
    } catch (const Error& e) {
      fail(where(key), context + "key '" + key + "': " + e.what());
    }
  }
  try {
    resolve_replay(cfg);
    validate(cfg);
  } catch (const KeyError& e) {
    std::string m = e.what();
    if (m.rfind("config key", 0) == 0) m.erase(0, 7);
    fail(where(e.key()), context + m);
  }
}

}  // namespace

std::vector<std::uint64_t> Scenario::run_seeds() const {
  return seeds.empty() ? std::vector<std::uint64_t>{base.seed} : seeds;
}

Scenario parse_scenario(const std::string& text, const std::string& file, const std::vector<std::string>& overrides) {
  const YAML::Node root = config::parse_yaml(text, file);
  Scenario sc;
  sc.path = file;
  sc.name = std::filesystem::path(file).stem().string();
  if (!root.IsMap()) {
    if (root.IsNull()) fail({file, 0}, "empty scenario: expected a map of keys");
    fail(origin_of(file, root), "expected a map of keys at the top level, got " + std::string(kind_of(root)));
  }
  std::map<std::string, int> seen;
  std::set<std::string> specials;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const Origin at = origin_of(file, it->first);
    if (!it->first.IsScalar() || it->first.Scalar().empty()) fail(at, "top-level key: expected a name");
    const std::string k = it->first.Scalar();
    if (!specials.insert(k).second) fail(at, "key '" + k + "': set twice in one map");
    if (k == "name") {
      sc.name = need_scalar_text(it->second, k, at);
      if (sc.name.empty() || sc.name.find_first_of("/\\\n") != std::string::npos)
        fail(at, "key 'name': expected a non-empty name without slashes");
    } else if (k == "description") {
      sc.description = it->second.IsNull() ? "" : need_scalar_text(it->second, k, at);
    } else if (k == "seeds") {
      sc.seeds = parse_seeds(it->second, at);
    } else if (k == "sweep") {
      sc.grids = parse_sweep(it->second, file, at);
    } else {
      apply_config_entry(sc, k, it->first, it->second, file, seen);
    }
  }
  for (const auto& o : overrides) apply_override(sc, o);
  return sc;
}

Scenario load_scenario(const std::string& path, const std::vector<std::string>& overrides) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot read the scenario file");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": cannot read the scenario file");
  return parse_scenario(ss.str(), path, overrides);
}

void apply_override(Scenario& sc, std::string_view arg) {
  const Origin at{"", 0};
  const auto [key, value] = config::split_override(arg);
  YAML::Node knode(key);
  if (key == "name" || key == "description") {
    const std::string v = value.IsNull() ? "" : need_scalar_text(value, key, at);
    if (key == "name" && (v.empty() || v.find_first_of("/\\\n") != std::string::npos))
      fail(at, "key 'name': expected a non-empty name without slashes");
    (key == "name" ? sc.name : sc.description) = v;
  } else if (key == "seeds") {
    sc.seeds = parse_seeds(value, at);
  } else if (key == "sweep") {
    sc.grids = parse_sweep(value, "", at);
  } else if (key.rfind("sweep.", 0) == 0) {
    const std::string axis = key.substr(6);
    if (sc.grids.size() > 1)
      fail(at, "key '" + key + "': the sweep is a list of " + std::to_string(sc.grids.size()) +
                   " grids; override it whole with sweep=[...]");
    if (sc.grids.empty()) sc.grids.emplace_back();
    auto& grid = sc.grids.front();
    auto it = std::find_if(grid.begin(), grid.end(), [&](const SweepAxis& a) { return a.key == axis; });
    if (value.IsNull() || (value.IsSequence() && value.size() == 0)) {
      if (it != grid.end()) grid.erase(it);  // `sweep.x=[]` drops an axis
    } else {
      auto parsed = parse_axis(axis, knode, value, "");
      if (it != grid.end())
        *it = std::move(parsed);
      else
        grid.push_back(std::move(parsed));
    }
    if (grid.empty()) sc.grids.clear();
  } else {
    if (value.IsSequence())
      fail(at, "key '" + key + "': a list is only valid as sweep." + key + "=[...] or seeds=[...]");
    std::map<std::string, int> seen;
    apply_config_entry(sc, key, knode, value, "", seen);
    sc.overrides.emplace_back(arg);
    sc.override_keys.push_back(key);
  }
}

std::vector<std::string> swept_keys(const Scenario& sc) {
  std::vector<std::string> keys;
  for (const auto& grid : sc.grids)
    for (const auto& axis : grid)
      for (const auto& item : axis.items)
        for (const auto& kv : item.sets)
          if (!is_clear(kv) && std::find(keys.begin(), keys.end(), kv.first) == keys.end()) keys.push_back(kv.first);
  return keys;
}

std::string config_value(const SimConfig& cfg, std::string_view key) {
  if (schema().is_knob(key)) {
    const auto knob = key.substr(kKnobPrefix.size());
    if (auto it = cfg.policy.knobs.find(knob); it != cfg.policy.knobs.end()) return it->second;
    for (const auto& s : policy_info(cfg.policy.name).knobs)
      if (s.name == knob) return s.default_value;
    return "";
  }
  for (const auto& [k, v] : config_fields(cfg))
    if (k == key) return v;
  return "";
}

SweepPoint base_point(const Scenario& sc) {
  SweepPoint p;
  p.label = sc.base.policy.name;
  p.config = sc.base;
  auto where = [&](const std::string& key) {
    auto it = sc.origins.find(key);
    if (it == sc.origins.end() && key.rfind("policy", 0) == 0) it = sc.origins.find("policy.name");
    return it != sc.origins.end() ? it->second : Origin{sc.path, 0};
  };
  check_config(p.config, where, "");
  return p;
}

std::vector<SweepPoint> expand_sweep(const Scenario& sc) {
  if (sc.grids.empty()) return {base_point(sc)};
  // A plain override of a swept key would be silently undone by the sweep.
  for (const auto& grid : sc.grids)
    for (const auto& axis : grid)
      for (const auto& item : axis.items)
        for (const auto& kv : item.sets)
          for (const auto& ok : sc.override_keys) {
            const auto& sk = kv.first;
            const bool related = ok == sk || sk.rfind(ok + ".", 0) == 0 || ok.rfind(sk + ".", 0) == 0;
            if (related)
              throw Error(std::string(kCommandLine) + ": key '" + ok + "': swept by sweep." + axis.key + " (" +
                          item.origin.text() + "); override the sweep instead, e.g. sweep." + axis.key + "=[...]");
          }
  std::vector<SweepPoint> points;
  std::map<std::string, int> labels;
  for (std::size_t g = 0; g < sc.grids.size(); ++g) {
    const auto& grid = sc.grids[g];
    std::vector<std::size_t> idx(grid.size(), 0);
    for (;;) {
      SweepPoint p;
      p.index = static_cast<int>(points.size());
      p.grid = static_cast<int>(g);
      p.config = sc.base;
      for (std::size_t a = 0; a < grid.size(); ++a) p.items.push_back(&grid[a].items[idx[a]]);
      std::string label;
      for (std::size_t a = 0; a < grid.size(); ++a)
        label += (label.empty() ? "" : " ") +
                 (grid[a].section || grid[a].key == "policy.name" ? p.items[a]->label
                                                                   : short_key(grid[a].key) + "=" + p.items[a]->label);
      p.label = label;
      for (int pass = 0; pass < 2; ++pass)  // section axes, then key axes
        for (std::size_t a = 0; a < grid.size(); ++a)
          if (grid[a].section == (pass == 0))
            for (const auto& [k, v] : p.items[a]->sets) apply_setting(p.config, k, v);
      const std::string context = "sweep point " + std::to_string(p.index) + " '" + p.label + "': ";
      auto where = [&](const std::string& key) {
        for (auto it = p.items.rbegin(); it != p.items.rend(); ++it)
          for (const auto& kv : (*it)->sets)
            if (kv.first == key || (key.rfind("policy", 0) == 0 && kv.first.rfind("policy", 0) == 0))
              return (*it)->origin;
        auto o = sc.origins.find(key);
        return o != sc.origins.end() ? o->second : p.items.front()->origin;
      };
      check_config(p.config, where, context);
      if (auto [it, fresh] = labels.emplace(p.label, p.index); !fresh)
        fail(p.items.front()->origin, "sweep points " + std::to_string(it->second) + " and " +
                                          std::to_string(p.index) + " are both labelled '" + p.label +
                                          "'; give the sweep values distinct labels");
      points.push_back(std::move(p));
      std::size_t a = grid.size();
      while (a > 0 && ++idx[a - 1] == grid[a - 1].items.size()) idx[--a] = 0;
      if (a == 0) break;
    }
  }
  return points;
}

using config::yaml_scalar;

std::string config_yaml(const SimConfig& cfg) {
  std::ostringstream os;
  std::string section;
  std::vector<std::pair<std::string, std::string>> knobs;
  auto fields = config_fields(cfg);
  auto emit_knobs = [&] {
    if (knobs.empty()) {
      os << "  knobs: {}\n";
      return;
    }
    os << "  knobs:\n";
    for (const auto& [k, v] : knobs) os << "    " << k.substr(kKnobPrefix.size()) << ": " << yaml_scalar(v) << "\n";
  };
  for (const auto& kv : fields)
    if (kv.first.rfind(kKnobPrefix, 0) == 0) knobs.push_back(kv);
  for (const auto& [k, v] : fields) {
    if (k.rfind(kKnobPrefix, 0) == 0) continue;
    const auto dot = k.find('.');
    const std::string sec = dot == std::string::npos ? "" : k.substr(0, dot);
    if (sec != section) {
      if (section == "policy") emit_knobs();
      section = sec;
      if (!sec.empty()) os << sec << ":\n";
    }
    os << (sec.empty() ? "" : "  ") << (sec.empty() ? k : k.substr(dot + 1)) << ": " << yaml_scalar(v) << "\n";
  }
  if (section == "policy") emit_knobs();
  return os.str();
}

std::string scenario_yaml(const Scenario& sc) {
  std::ostringstream os;
  os << "# The fully resolved scenario (file + command-line overrides); `moesim sweep` and\n"
        "# `moesim run` load it as is.\n";
  os << "name: " << yaml_scalar(sc.name) << "\n";
  if (!sc.description.empty()) os << "description: " << yaml_scalar(sc.description) << "\n";
  os << "seeds: [";
  const auto seeds = sc.run_seeds();
  for (std::size_t i = 0; i < seeds.size(); ++i) os << (i ? ", " : "") << seeds[i];
  os << "]\n" << config_yaml(sc.base);
  if (sc.grids.empty()) return os.str();
  os << "sweep:\n";
  for (const auto& grid : sc.grids) {
    bool first_axis = true;
    for (const auto& axis : grid) {
      os << (first_axis ? "  - " : "    ") << axis.key << ":\n";
      first_axis = false;
      for (const auto& item : axis.items) {
        if (!axis.section) {
          os << "      - " << yaml_scalar(item.sets.front().second) << "\n";
          continue;
        }
        // Absolute keys under `set`, in application order, reproduce the value exactly.
        os << "      - {label: " << yaml_scalar(item.label) << ", set: {";
        for (std::size_t i = 0; i < item.sets.size(); ++i)
          os << (i ? ", " : "") << item.sets[i].first << ": "
             << (is_clear(item.sets[i]) ? std::string("{}") : yaml_scalar(item.sets[i].second));
        os << "}}\n";
      }
    }
  }
  return os.str();
}

std::vector<std::string> replay_args(const Scenario& sc, const SweepPoint& p, std::uint64_t seed) {
  std::vector<std::string> args{"seed=" + std::to_string(seed)};
  for (const auto& o : sc.overrides) args.push_back(o);
  if (sc.grids.empty()) return args;
  // A reference, never `cond ? SweepGrid{} : grid`: that copies the whole grid per
  // point, which made planning quadratic in the grid's size.
  const SweepGrid& grid = sc.grids[static_cast<std::size_t>(p.grid)];
  for (int pass = 0; pass < 2; ++pass) {
    for (std::size_t a = 0; a < p.items.size() && a < grid.size(); ++a)
      if (grid[a].section == (pass == 0))
        for (const auto& kv : p.items[a]->sets)
          args.push_back(kv.first + "=" + (is_clear(kv) ? std::string("{}") : yaml_scalar(kv.second)));
  }
  return args;
}

std::string replay_command(const Scenario& sc, const SweepPoint& p, std::uint64_t seed, const std::string& program,
                           const std::string& out_dir) {
  // Appends piecewise: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string temporaries.
  std::string cmd = program;
  cmd += " run ";
  cmd += shell_quote(sc.path);
  for (const auto& a : replay_args(sc, p, seed)) {
    cmd += ' ';
    cmd += shell_quote(a);
  }
  if (!out_dir.empty()) {
    cmd += " --out ";
    cmd += shell_quote(out_dir);
  }
  return cmd;
}

}  // namespace moesim
