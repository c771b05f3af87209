// policies/registry: the list of policies is complete and every entry is usable
// as declared; presets resolve in order; accepted_k follows the policies' own
// refusals. The one place that knows which policies exist: the other tests use
// them without checking first.
#include <catch2/catch.hpp>

#include <set>

#include "common/error.hpp"
#include "policies/registry.hpp"

using moesim::policy_info;
using moesim::policy_registry;

TEST_CASE("registry: exactly the documented policies, in `moesim policies` order") {
  std::vector<std::string> names;
  for (const auto& p : policy_registry()) names.push_back(p.name);
  CHECK(names == std::vector<std::string>{"topk", "noisy_topk", "switch", "rdesi", "loss_free", "expert_choice",
                                          "sinkhorn", "balanced", "hash", "random"});
}

TEST_CASE("registry: every policy builds with its defaults, and its declared defaults pass its own checks") {
  for (const auto& info : policy_registry()) {
    CAPTURE(info.name);
    CHECK_FALSE(info.summary.empty());
    std::set<std::string> seen;
    moesim::KnobMap defaults;
    for (const auto& k : info.knobs) {
      CHECK(seen.insert(k.name).second);  // no knob declared twice
      CHECK_FALSE(k.help.empty());
      defaults[k.name] = k.default_value;
    }
    const int k = moesim::accepted_k(info, 8, 2);
    // Spelled out, every default goes through the same validation as a user's value.
    auto p = info.make(8, k, moesim::Knobs(info.name, info.knobs, defaults));
    CHECK(p->name() == info.name);
    CHECK(p->experts() == 8);
    CHECK(p->k() == k);
    CHECK(moesim::make_policy(info.name, 8, k)->knobs().values() == p->knobs().values());
    auto c = p->clone();
    CHECK(c->name() == info.name);
  }
}

TEST_CASE("registry: unknown policy names are refused, listing the known ones") {
  CHECK_THROWS_WITH(policy_info("no_such_policy"),
                    "unknown policy 'no_such_policy' (known: topk, noisy_topk, switch, rdesi, loss_free, "
                    "expert_choice, sinkhorn, balanced, hash, random)");
  CHECK_THROWS_WITH(policy_info(""), Catch::StartsWith("unknown policy ''"));
  CHECK_THROWS_WITH(policy_info("TOPK"), Catch::StartsWith("unknown policy 'TOPK'"));  // case-sensitive
}

TEST_CASE("registry: a preset's values replace the defaults and explicit knobs override the preset") {
  const auto& info = policy_info("rdesi");
  REQUIRE(info.presets.size() >= 2);
  CHECK(info.presets.front().name == "moesim");  // the default preset is the first
  const auto def = moesim::resolve_knobs(info, 2, {});
  CHECK(def.choice("preset") == "moesim");
  const auto ref = moesim::resolve_knobs(info, 2, {{"preset", "reference"}});
  for (const auto& [key, v] : policy_info("rdesi").presets[1].values(2)) {
    CAPTURE(key);
    CHECK(ref.values().at(key) == v);
  }
  const auto mixed = moesim::resolve_knobs(info, 2, {{"preset", "reference"}, {"beta", "0.25"}});
  CHECK(mixed.real("beta") == 0.25);
  CHECK_THROWS_WITH(moesim::resolve_knobs(info, 2, {{"preset", "nope"}}),
                    Catch::Contains("knob 'preset' = 'nope': expected one of {moesim, reference}"));
}

TEST_CASE("registry: preset_knob lists every preset with its source, the first as default") {
  const std::vector<moesim::KnobPreset> presets = {{"x", "source X", nullptr}, {"y", "source Y", nullptr}};
  const auto k = moesim::preset_knob(presets);
  CHECK(k.name == "preset");
  CHECK(k.default_value == "x");
  CHECK(k.choices == std::vector<std::string>{"x", "y"});
  CHECK(k.help == "a named set of knob values (explicit knobs override it): x = source X; y = source Y");
}

TEST_CASE("accepted_k: the wanted k where a policy routes it, 1 for a top-1 policy, never above E") {
  CHECK(moesim::accepted_k(policy_info("topk"), 8, 3) == 3);
  CHECK(moesim::accepted_k(policy_info("switch"), 8, 3) == 1);
  CHECK(moesim::accepted_k(policy_info("topk"), 2, 5) == 2);
  // The refusal it follows is the policy's own, keyed for the config's k.
  try {
    moesim::make_policy("switch", 8, 2);
    FAIL("switch accepted k=2");
  } catch (const moesim::KeyError& e) {
    CHECK(e.key() == moesim::kShapeKey);
  }
}
