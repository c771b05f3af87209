// SimConfig key paths: listing, setting, round trip, and every kind of bad input.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include "policies/types.hpp"
#include "sim/config.hpp"

using namespace moesim;

namespace {

std::string error_of(SimConfig& c, const std::string& key, const std::string& value) {
  try {
    set_field(c, key, value);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string validate_error(const SimConfig& c) {
  try {
    validate(c);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST_CASE("every key is listed once, and the listing rebuilds the config exactly", "[config]") {
  SimConfig c;
  c.seed = 18446744073709551615ULL;
  c.world.skill_growth = 0.1;
  c.stream.drift = 1.0 / 3.0;
  c.policy.name = "rdesi";
  c.policy.knobs["beta"] = "0.5";
  const auto fields = config_fields(c);
  std::set<std::string> keys;
  for (const auto& [k, v] : fields) CHECK(keys.insert(k).second);
  for (const auto& k : config_keys())
    if (k.key != "policy.knobs.<knob>") CHECK(keys.count(k.key) == 1);
  CHECK(keys.count("policy.knobs.beta") == 1);
  SimConfig back;
  for (const auto& [k, v] : fields) set_field(back, k, v);
  CHECK(config_fields(back) == fields);
  CHECK(back.stream.drift == c.stream.drift);  // shortest text still reads back exactly
  CHECK(back.seed == c.seed);
}

TEST_CASE("set_field parses into the named field", "[config]") {
  SimConfig c;
  set_field(c, "world.skill_growth", "0.1");
  CHECK(c.world.skill_growth == 0.1);
  set_field(c, "steps", "+250");
  CHECK(c.steps == 250);
  set_field(c, "world.decay_scope", "expert");
  CHECK(c.world.decay_scope == "expert");
  set_field(c, "policy.name", "loss_free");
  set_field(c, "policy.knobs.bias_rate", "0.01");
  CHECK(c.policy.knobs.at("bias_rate") == "0.01");
  set_field(c, "metrics.window", "20");
  CHECK(c.metrics.window == 20);
  set_field(c, "gate.baseline_rate", "1");
  CHECK(c.gate.baseline_rate == 1.0);
}

TEST_CASE("bad keys and values throw Error naming the key", "[config]") {
  SimConfig c;
  const auto unknown = error_of(c, "world.skill_grow", "0.1");
  CHECK(unknown.find("'world.skill_grow'") != std::string::npos);
  CHECK(unknown.find("world.skill_growth") != std::string::npos);  // suggests the section's keys
  CHECK(error_of(c, "nonsense", "1").find("'nonsense'") != std::string::npos);
  CHECK(error_of(c, "steps", "ten").find("'steps'") != std::string::npos);
  CHECK(error_of(c, "steps", "1.5").find("'steps'") != std::string::npos);
  CHECK(error_of(c, "experts", "0").find("out of range") != std::string::npos);
  CHECK(error_of(c, "world.skill_growth", "nan").find("'world.skill_growth'") != std::string::npos);
  CHECK(error_of(c, "world.skill_growth", "-1").find("out of range") != std::string::npos);
  CHECK(error_of(c, "gate.baseline_rate", "0").find("(0, 1]") != std::string::npos);
  CHECK(error_of(c, "stream.burst_prob", "1.5").find("'stream.burst_prob'") != std::string::npos);
  CHECK(error_of(c, "world.decay_scope", "all").find("pair, expert") != std::string::npos);
  CHECK(error_of(c, "seed", "-1").find("'seed'") != std::string::npos);
  CHECK(error_of(c, "policy.knobs.", "1").find("policy.knobs") != std::string::npos);
  CHECK(error_of(c, "policy.name", "").find("'policy.name'") != std::string::npos);
  // A failed set leaves the field as it was.
  CHECK(c.steps == SimConfig{}.steps);
}

TEST_CASE("validate checks what single fields cannot", "[config]") {
  SimConfig c;
  CHECK(validate_error(c).empty());
  c.k = 65;
  CHECK(validate_error(c).find("'k'") != std::string::npos);
  c = SimConfig{};
  c.stream.hot_token = 8000;  // 8 clusters * 1000 tokens
  CHECK(validate_error(c).find("'stream.hot_token'") != std::string::npos);
  c = SimConfig{};
  c.world.skill_floor = 2.0;
  CHECK(validate_error(c).find("'world.skill_floor'") != std::string::npos);
  c = SimConfig{};
  c.policy.name = "no_such_policy";
  CHECK(validate_error(c).find("'policy.name'") != std::string::npos);
  c = SimConfig{};
  c.policy.knobs.emplace("no_such_knob", "1");
  CHECK(validate_error(c).find("no_such_knob") != std::string::npos);
  c = SimConfig{};
  c.policy.knobs.emplace("capacity_factor", "-1");
  CHECK(validate_error(c).find("capacity_factor") != std::string::npos);
  c = SimConfig{};
  c.batch = 0;  // a hand-built struct gets the single-field checks too
  CHECK(validate_error(c).find("'batch'") != std::string::npos);
  c = SimConfig{};
  c.stream.vocab = 1 << 30;
  CHECK(validate_error(c).find("'stream.vocab'") != std::string::npos);
}

TEST_CASE("example: a scenario as key=value overrides", "[config][example]") {
  // What the YAML loader does: every scalar leaf becomes set_field(path, text).
  SimConfig c;
  for (const auto& [k, v] : std::initializer_list<std::pair<const char*, const char*>>{
           {"seed", "7"}, {"steps", "200"}, {"experts", "16"}, {"k", "2"},
           {"stream.clusters", "4"}, {"world.skill_growth", "0.2"},
           {"policy.name", "topk"}, {"policy.knobs.dropless", "true"}})
    set_field(c, k, v);
  validate(c);
  CHECK(c.experts == 16);
  CHECK(c.policy.knobs.at("dropless") == "true");
}

TEST_CASE("config warnings: windows that overlap name the metrics they leave undefined", "[config]") {
  SimConfig c;
  c.steps = 150;
  c.metrics.window = 100;
  const auto w = config_warnings(c);
  REQUIRE(w.size() == 1);
  CHECK(w[0] == "steps = 150 < 2 * metrics.window = 200: the early and late windows overlap, so rank_persistence, "
                "rgr_slope and rgr_corr are undefined (NaN)");
  c.steps = 200;  // the windows just touch: [0, 100) and [100, 200)
  CHECK(config_warnings(c).empty());
}
