// policies/knobs: typed knob specs, resolution of defaults and overrides, refusals
// keyed by the knob. A spec list written here, independent of any policy.
#include <catch2/catch.hpp>

#include "common/error.hpp"
#include "policies/knobs.hpp"

using moesim::KeyError;
using moesim::KnobMap;
using moesim::Knobs;
using moesim::KnobSpec;

namespace {

const std::vector<KnobSpec>& specs() {
  static const std::vector<KnobSpec> s = {
      moesim::real_knob("rate", 0.5, "a rate", 0.0, 1.0),
      moesim::int_knob("count", 3, "a count", 1, 10),
      moesim::bool_knob("on", false, "a switch"),
      moesim::choice_knob("mode", "a", {"a", "b"}, "a mode"),
  };
  return s;
}

// The key and message of the KeyError that resolving `overrides` throws.
std::pair<std::string, std::string> refusal(const KnobMap& overrides) {
  try {
    Knobs("owner", specs(), overrides);
  } catch (const KeyError& e) {
    return {e.key(), e.what()};
  }
  return {"", "accepted"};
}

}  // namespace

TEST_CASE("knobs: defaults, then overrides, read back typed") {
  const Knobs d("owner", specs(), {});
  CHECK(d.real("rate") == 0.5);
  CHECK(d.integer("count") == 3);
  CHECK_FALSE(d.flag("on"));
  CHECK(d.choice("mode") == "a");
  CHECK(d.values().size() == 4);
  const Knobs o("owner", specs(), {{"rate", "1"}, {"count", "10"}, {"on", "true"}, {"mode", "b"}});
  CHECK(o.real("rate") == 1.0);
  CHECK(o.integer("count") == 10);
  CHECK(o.flag("on"));
  CHECK(o.choice("mode") == "b");
  CHECK(o.values().at("rate") == "1");  // the text as given, which state files record
}

TEST_CASE("knobs: every refusal is a KeyError keyed by the knob, naming owner and value") {
  CHECK(refusal({{"rate", "1.5"}}) ==
        std::pair<std::string, std::string>{"rate", "owner: knob 'rate' = '1.5': out of range [0, 1]"});
  CHECK(refusal({{"rate", "nan"}}).second == "owner: knob 'rate' = 'nan': expected a real number");
  CHECK(refusal({{"rate", "+-5"}}).second == "owner: knob 'rate' = '+-5': expected a real number");
  CHECK(refusal({{"count", "0"}}).second == "owner: knob 'count' = '0': out of range [1, 10]");
  CHECK(refusal({{"count", "2.0"}}).second == "owner: knob 'count' = '2.0': expected an integer");
  CHECK(refusal({{"on", "yes please"}}).second == "owner: knob 'on' = 'yes please': expected true or false");
  CHECK(refusal({{"mode", "c"}}).second == "owner: knob 'mode' = 'c': expected one of {a, b}");
  CHECK(refusal({{"mood", "a"}}) ==
        std::pair<std::string, std::string>{"mood", "owner: unknown knob 'mood' (knobs: rate, count, on, mode)"});
}

TEST_CASE("knobs: reading a knob that was never declared is an internal error, not a default") {
  const Knobs d("owner", specs(), {});
  CHECK_THROWS_WITH(d.real("missing"), "owner: internal: knob 'missing' not declared");
}

TEST_CASE("fail_knob: a KeyError for the knob, in the knobs' message format") {
  try {
    moesim::fail_knob("topk", "n_groups", "must divide E=6");
    FAIL("fail_knob returned");
  } catch (const KeyError& e) {
    CHECK(e.key() == "n_groups");
    CHECK(std::string(e.what()) == "topk: knob 'n_groups' must divide E=6");
  }
}
