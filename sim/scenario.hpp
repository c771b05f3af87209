#pragma once
// Scenario files (YAML) and Hydra-style command-line overrides.
//
// A scenario is a map. Its config keys are SimConfig's key paths (sim/config.hpp),
// written nested (`world: {skill_growth: 0.1}`) or dotted (`world.skill_growth: 0.1`).
// Besides them:
//   name, description   text (name defaults to the file's stem)
//   seeds: [1, 2, 3]    every sweep point runs once per seed (default: [seed])
//   sweep:              a grid, or a list of grids whose points are concatenated.
//                       A grid maps an axis to a list of values; its points are the
//                       cartesian product of its axes (first axis varies slowest).
//                       An axis is a key (`policy.knobs.beta: [0.1, 0.5]`), or a
//                       section (`policy`, `world`, ...) whose values are maps of
//                       that section's keys. Such a map may also carry
//                         label: the point's name in tables and plots
//                         set:   more keys relative to the scenario root, for
//                                what a variant needs elsewhere (switch: {k: 1}).
// A policy map that names the policy (`policy: {name: rdesi, knobs: {...}}`), in
// the file, a sweep value or an override, is a whole policy: its knobs start from
// the defaults; `policy.name=X` alone keeps the knobs set so far.
//
// Within a point, section axes apply first, then key axes, each in file order.
// Command-line overrides `key.path=value` apply after the file; the value is YAML
// (`sweep.policy.knobs.beta=[0.1,0.2]`, `seeds=[1,2]`, `policy={name: topk}`).
// Every error is one line naming the file and line (or the command line) and the key.
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/text.hpp"
#include "config/flatten.hpp"
#include "sim/config.hpp"

namespace moesim {

using Origin = config::Origin;

using KeyValues = std::vector<std::pair<std::string, std::string>>;

// One value of a sweep axis.
struct SweepItem {
  std::string label;
  KeyValues sets;             // absolute key paths and values, in application order
  bool whole_policy = false;  // names a policy: knobs restart from the defaults first
  Origin origin;
};

struct SweepAxis {
  std::string key;            // "policy.knobs.beta" (values) or a section, "policy" (maps)
  bool section = false;
  std::vector<SweepItem> items;
  Origin origin;
};

using SweepGrid = std::vector<SweepAxis>;

struct Scenario {
  std::string path;  // the file, as given
  std::string name, description;
  SimConfig base;
  std::vector<std::uint64_t> seeds;  // empty: [base.seed]
  std::vector<SweepGrid> grids;      // empty: one point, the base config
  std::map<std::string, Origin> origins;  // base config key -> where it was last set
  std::vector<std::string> overrides;     // config overrides from the command line, in order
  std::vector<std::string> override_keys; // their key paths (a swept key may not be overridden)

  std::vector<std::uint64_t> run_seeds() const;
};

// One point of the sweep: the base config with its axis values applied.
struct SweepPoint {
  int index = 0;
  int grid = 0;
  std::string label;                   // unique within the sweep
  std::vector<const SweepItem*> items; // one per axis of its grid, in axis order
  SimConfig config;                    // seed still the base seed
};

// Reads, resolves and checks a scenario file, then applies the overrides.
Scenario load_scenario(const std::string& path, const std::vector<std::string>& overrides = {});
// Parses a scenario from text; `file` names it in messages.
Scenario parse_scenario(const std::string& text, const std::string& file,
                        const std::vector<std::string>& overrides = {});
// Applies one `key.path=value` override.
void apply_override(Scenario& sc, std::string_view arg);

// Every point in canonical order, each validated (errors name the sweep value).
// Fails when a command-line override touches a swept key or two points share a label.
std::vector<SweepPoint> expand_sweep(const Scenario& sc);
// The base config as one point (for `moesim run`), validated.
SweepPoint base_point(const Scenario& sc);

// Keys the sweep sets (columns of runs.csv), in axis order.
std::vector<std::string> swept_keys(const Scenario& sc);
// A config value by key path; a knob not set reads as the policy's default, "" when
// the policy has no such knob.
std::string config_value(const SimConfig& cfg, std::string_view key);

// The resolved config as a scenario file (nested sections), loadable as is.
std::string config_yaml(const SimConfig& cfg);
// The whole resolved scenario (config, seeds, sweep), loadable as is.
std::string scenario_yaml(const Scenario& sc);

// The arguments after `moesim run SCENARIO` that replay one run of a point exactly.
std::vector<std::string> replay_args(const Scenario& sc, const SweepPoint& p, std::uint64_t seed);
// The whole replay command line of one run (out_dir: its --out, "" for none).
std::string replay_command(const Scenario& sc, const SweepPoint& p, std::uint64_t seed, const std::string& program,
                           const std::string& out_dir);

}  // namespace moesim
