// Scenario files: malformed inputs and their one-line errors, overrides, sweep
// expansion, the resolved file and the replay command.
#include <catch2/catch.hpp>

#include <string>
#include <utility>
#include <vector>

#include "policies/types.hpp"
#include "scenario_helpers.hpp"
#include "sim/scenario.hpp"

using namespace moesim;
using moesim::test::TempDir;

namespace {

// The error of loading `text` as a file, with the file's path replaced by "F".
std::string load_error(const TempDir& dir, const std::string& text, const std::vector<std::string>& overrides = {}) {
  const std::string path = dir / "s.yaml";
  test::write_text(path, text);
  try {
    const auto sc = load_scenario(path, overrides);
    expand_sweep(sc);
  } catch (const Error& e) {
    std::string m = e.what();
    for (auto p = m.find(path); p != std::string::npos; p = m.find(path)) m.replace(p, path.size(), "F");
    return m;
  }
  return "(no error)";
}

std::vector<std::pair<std::string, std::string>> fields_of(const SimConfig& c) { return config_fields(c); }

}  // namespace

TEST_CASE("malformed scenarios fail with one line naming file, line and key", "[scenario]") {
  TempDir dir("scenario-errors");
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"world: {skil_growth: 0.1}\n", "F:1: key 'world.skil_growth': unknown key (did you mean 'world.skill_growth'?)"},
      {"steps: 10\nworld:\n  skill_growth: abc\n",
       "F:3: key 'world.skill_growth' = 'abc': expected a finite real number"},
      {"experts: \"16\"\n", "F:1: key 'experts' = \"16\": expected a number, got a quoted string"},
      {"steps: 10\nsweep: {steps: [1, 2\n", "F:3: malformed YAML: end of sequence flow not found"},
      {"steps: 1\n\tk: 2\n", "F:2: malformed YAML: illegal tab when looking for indentation"},
      {"stream.skill_growth: 1\n", "F:1: key 'stream.skill_growth': unknown key (did you mean 'world.skill_growth'?)"},
      {"world:\n  idle_decay: 2\n", "F:2: key 'world.idle_decay' = '2': out of range [0, 1]"},
      {"policy: {name: rdsi}\n",
       "F:1: key 'policy.name' = 'rdsi': unknown policy (did you mean 'rdesi'? known: topk, noisy_topk, switch, "
       "rdesi, loss_free, expert_choice, sinkhorn, balanced, hash, random)"},
      {"steps: 10\nsteps: 20\n", "F:2: key 'steps': set twice in one map"},
      {"world: {skill_growth: 1}\nworld.skill_growth: 2\n",
       "F:2: key 'world.skill_growth': set twice (first at line 1)"},
      {"seeds: [1, 2, 1]\n", "F:1: key 'seeds': seed 1 listed twice"},
      {"seeds: 3\n", "F:1: key 'seeds': expected a non-empty list of seeds, e.g. [1, 2, 3], got a value"},
      {"seeds: [1, -2]\n", "F:1: key 'seeds': expected an unsigned integer, got '-2'"},
      {"sweep: {world.foo: [1]}\n", "F:1: sweep key 'world.foo': unknown key"},
      {"sweep:\n  steps: []\n", "F:2: key 'sweep.steps': expected a non-empty list of values, got an empty list"},
      {"sweep: {policy: [topk]}\n", "F:1: key 'sweep.policy': expected a map of policy.* keys, got a value"},
      {"sweep: {seed: [1, 2]}\n", "F:1: key 'sweep.seed': list the seeds under 'seeds:' instead"},
      {"sweep:\n  policy:\n    - {name: topk}\n    - {name: switch}\n",
       "F:4: sweep point 1 'switch': key 'k' = 2: switch: routes exactly one expert per token: set k=1 (topk routes k > 1)"},
      {"policy:\n  name: rdesi\n  knobs:\n    betta: 1\n",
       "F:4: key 'policy.knobs.betta': policy 'rdesi' has no knob 'betta' (did you mean 'beta'? knobs: preset, beta, "
       "gamma, alpha, ucb_c, ucb_eps, decay_rate, decay_on, idle_perf, load_ema_alpha, load_normalize, count_slots, "
       "epsilon, score_noise, weights_over, initial_reputation, tie_break, capacity_factor, min_capacity, dropless, "
       "drop_policy, drop_order, drop_priority, drop_weights, capacity_rounding, pad_to_capacity)"},
      {"policy: {name: rdesi, knobs: {beta: x}}\n",
       "F:1: key 'policy.knobs.beta': rdesi: knob 'beta' = 'x': expected a real number"},
      {"policy:\n  name: topk\n  knobs:\n    capacity_factor: -1\n",
       "F:4: key 'policy.knobs': topk: knob 'capacity_factor' = -1: must be > 0 outside dropless mode"},
      {"k: 5\nexperts: 4\n", "F:1: key 'k' = 5: must not exceed experts = 4"},
      {"- 1\n- 2\n", "F:1: expected a map of keys at the top level, got a list"},
      {"", "F: empty scenario: expected a map of keys"},
      {"world: 3\n", "F:1: key 'world': expected a map of world.* keys, got a value"},
      {"steps: [1]\n", "F:1: key 'steps': expected a single value, got a list"},
      {"steps:\n", "F:1: key 'steps': missing value"},
      {"sweep: {policy: [{label: a, name: topk}, {label: a, name: rdesi}]}\n",
       "F:1: key 'sweep.policy': two values labelled 'a'"},
      {"sweep: [{policy: [{name: topk}]}, {policy.name: [topk]}]\n",
       "F:1: sweep points 0 and 1 are both labelled 'topk'; give the sweep values distinct labels"},
      {"sweep: {policy: [{name: topk, label: [1]}]}\n", "F:1: key 'sweep.policy': 'label' expects a non-empty name"},
      {"sweep: {policy: [{label: x}]}\n", "F:1: key 'sweep.policy': a sweep value that sets nothing"},
      {"description: [1]\n", "F:1: key 'description': expected text, got a list"},
      {"a: &x 1\nb: *y\n", "F:2: malformed YAML: the referenced anchor is not defined"},
  };
  REQUIRE(cases.size() >= 15);
  for (const auto& [text, expected] : cases) {
    INFO("scenario:\n" << text);
    const std::string got = load_error(dir, text);
    CHECK(got == expected);
    CHECK(got.find('\n') == std::string::npos);
  }
}

TEST_CASE("a missing scenario file is one line naming it", "[scenario]") {
  try {
    load_scenario("/nonexistent/x.yaml");
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()) == "/nonexistent/x.yaml: cannot read the scenario file");
  }
}

TEST_CASE("command-line overrides", "[scenario]") {
  TempDir dir("scenario-overrides");
  const std::string base =
      "steps: 10\npolicy: {name: rdesi, knobs: {beta: 0.5, gamma: 0.2}}\nseeds: [1, 2]\n"
      "sweep:\n  world.skill_growth: [0.1, 0.2]\n";
  test::write_text(dir / "s.yaml", base);

  SECTION("keys, seeds, whole policies and sweep axes") {
    const auto sc = load_scenario(dir / "s.yaml", {"world.idle_decay=0.25", "seeds=[7, 8, 9]", "batch=64",
                                                   "sweep.policy.knobs.beta=[0.1, 0.3]", "name=renamed"});
    CHECK(sc.base.world.idle_decay == 0.25);
    CHECK(sc.base.batch == 64);
    CHECK(sc.seeds == std::vector<std::uint64_t>{7, 8, 9});
    CHECK(sc.name == "renamed");
    REQUIRE(sc.grids.size() == 1);
    REQUIRE(sc.grids[0].size() == 2);
    CHECK(sc.grids[0][1].key == "policy.knobs.beta");
    const auto points = expand_sweep(sc);
    REQUIRE(points.size() == 4);
    CHECK(points[1].label == "skill_growth=0.1 beta=0.3");
    CHECK(points[1].config.policy.knobs.at("beta") == "0.3");
    CHECK(points[1].config.policy.knobs.at("gamma") == "0.2");
    CHECK(points[3].config.world.skill_growth == 0.2);
  }
  SECTION("a named policy block replaces the knobs; policy.name alone keeps them") {
    auto sc = load_scenario(dir / "s.yaml", {"policy={name: topk, knobs: {dropless: true}}"});
    CHECK(sc.base.policy.name == "topk");
    CHECK(sc.base.policy.knobs == KnobMap{{"dropless", "true"}});
    sc = load_scenario(dir / "s.yaml", {"policy.name=topk"});
    CHECK(sc.base.policy.knobs.count("beta") == 1);
    sc = load_scenario(dir / "s.yaml", {"policy.knobs={}"});
    CHECK(sc.base.policy.knobs.empty());
  }
  SECTION("dropping axes and the whole sweep") {
    auto sc = load_scenario(dir / "s.yaml", {"sweep.world.skill_growth=[]"});
    CHECK(sc.grids.empty());
    CHECK(expand_sweep(sc).size() == 1);
    sc = load_scenario(dir / "s.yaml", {"sweep=null"});
    CHECK(sc.grids.empty());
  }
  SECTION("bad overrides") {
    const std::vector<std::pair<std::vector<std::string>, std::string>> bad = {
        {{"steps"}, "command line: override 'steps': expected key.path=value"},
        {{"=3"}, "command line: override '=3': expected key.path=value"},
        {{"world.skil_growth=1"}, "command line: key 'world.skil_growth': unknown key (did you mean 'world.skill_growth'?)"},
        {{"steps=[1,2]"}, "command line: key 'steps': a list is only valid as sweep.steps=[...] or seeds=[...]"},
        {{"steps=x"}, "command line: key 'steps' = 'x': expected an integer"},
        {{"seeds=[a]"}, "command line: key 'seeds': expected an unsigned integer, got 'a'"},
        {{"steps={a: [}"}, "command line: key 'steps': malformed YAML value '{a: [}': illegal flow end"},
        {{"world.skill_growth=0.3"},
         "command line: key 'world.skill_growth': swept by sweep.world.skill_growth (F:5); override the sweep "
         "instead, e.g. sweep.world.skill_growth=[...]"},
    };
    for (const auto& [ov, expected] : bad) {
      INFO(ov.front());
      CHECK(load_error(dir, base, ov) == expected);
    }
  }
}

TEST_CASE("sweep expansion: grid order, section axes first, set, list of grids", "[scenario]") {
  const auto sc = parse_scenario(
      "k: 2\npolicy: {name: rdesi}\nsweep:\n"
      "  - policy.knobs.gamma: [0, 1]\n"
      "    policy:\n"
      "      - {name: rdesi, knobs: {beta: 2}}\n"
      "      - {name: switch, label: sw, set: {k: 1}}\n"
      "  - {world.idle_decay: [0.5]}\n",
      "inline.yaml");
  SECTION("points") {
    // gamma does not exist for switch: the point names the failing value.
    CHECK_THROWS_WITH(expand_sweep(sc), "inline.yaml:7: sweep point 1 'gamma=0 sw': key 'policy.knobs.gamma': policy "
                                        "'switch' has no knob 'gamma' (knobs: jitter_eps, tie_break, capacity_factor, "
                                        "min_capacity, dropless, drop_policy, drop_order, drop_priority, "
                                        "drop_weights, capacity_rounding, pad_to_capacity)");
  }
  SECTION("valid grid") {
    const auto ok = parse_scenario(
        "k: 2\nsweep:\n  - policy.knobs.capacity_factor: [1, 2]\n    policy:\n"
        "      - {name: rdesi, knobs: {beta: 2}}\n      - {name: switch, label: sw, set: {k: 1}}\n"
        "  - {world.idle_decay: [0.5]}\n",
        "inline.yaml");
    const auto points = expand_sweep(ok);
    REQUIRE(points.size() == 5);
    CHECK(points[0].label == "capacity_factor=1 rdesi(beta=2)");
    CHECK(points[1].label == "capacity_factor=1 sw");
    CHECK(points[1].config.k == 1);
    CHECK(points[1].config.policy.knobs.at("capacity_factor") == "1");  // key axes apply after the section axis
    CHECK(points[2].config.policy.knobs.at("beta") == "2");
    CHECK(points[4].grid == 1);
    CHECK(points[4].config.world.idle_decay == 0.5);
    CHECK(points[4].config.k == 2);
    CHECK(swept_keys(ok) == std::vector<std::string>{"policy.knobs.capacity_factor", "policy.name",
                                                       "policy.knobs.beta", "k", "world.idle_decay"});
    CHECK(config_value(points[0].config, "policy.knobs.gamma") == "0.1");  // a default
    CHECK(config_value(points[1].config, "policy.knobs.gamma") == "");     // switch has none
  }
}

TEST_CASE("the resolved scenario reloads to the same points and seeds", "[scenario]") {
  for (const char* name : {"matthew", "no_balancing", "lossfree_vs_aux", "capacity", "rdesi_grid", "expert_choice"}) {
    INFO(name);
    const auto sc = load_scenario(test::source_path(std::string("scenarios/") + name + ".yaml"), {"steps=50"});
    const auto points = expand_sweep(sc);
    const auto again = parse_scenario(scenario_yaml(sc), "resolved.yaml");
    const auto points2 = expand_sweep(again);
    CHECK(again.name == sc.name);
    CHECK(again.run_seeds() == sc.run_seeds());
    REQUIRE(points2.size() == points.size());
    for (std::size_t i = 0; i < points.size(); ++i) {
      CHECK(points2[i].label == points[i].label);
      CHECK(fields_of(points2[i].config) == fields_of(points[i].config));
    }
    CHECK(fields_of(parse_scenario(config_yaml(sc.base), "c.yaml").base) == fields_of(sc.base));
  }
}

TEST_CASE("the replay arguments rebuild each point's config exactly", "[scenario]") {
  const std::string path = test::source_path("scenarios/matthew.yaml");
  const auto sc = load_scenario(path, {"steps=40"});
  for (const auto& p : expand_sweep(sc)) {
    INFO(p.label);
    const auto replay = load_scenario(path, replay_args(sc, p, 7));
    auto expected = p.config;
    expected.seed = 7;
    CHECK(fields_of(base_point(replay).config) == fields_of(expected));
  }
}

TEST_CASE("shell quoting and suggestions", "[scenario]") {
  CHECK(shell_quote("policy.name=topk") == "policy.name=topk");
  CHECK(shell_quote("policy.knobs={}") == "'policy.knobs={}'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(did_you_mean("gama", {"beta", "gamma"}) == "gamma");
  CHECK(did_you_mean("zzzzzz", {"beta", "gamma"}).empty());
}
