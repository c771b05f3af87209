// Policy state: save -> load -> continue and clone() -> continue are
// indistinguishable from never stopping; damaged or foreign snapshots are refused.
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <sstream>

#include "helpers.hpp"
#include "policies/registry.hpp"

using namespace testutil;
using moesim::Assignment;
using moesim::Rng;

namespace {

std::string saved(const moesim::Policy& p) {
  std::ostringstream os;
  p.save(os);
  return os.str();
}

std::string state_diff(const moesim::Policy& a, const moesim::Policy& b) {
  const auto sa = a.state_vectors(), sb = b.state_vectors();
  if (sa.size() != sb.size()) return "different number of state vectors";
  for (std::size_t i = 0; i < sa.size(); ++i) {
    if (sa[i].first != sb[i].first) return "state vector names differ: " + sa[i].first + " vs " + sb[i].first;
    if (!same_bits(sa[i].second, sb[i].second)) return "state vector '" + sa[i].first + "' differs";
  }
  return {};
}

// Several routed/observed steps with feedback, so stateful policies have a
// non-trivial state (run with the given policy and Rng).
void warm_up(moesim::Policy& p, const Scenario& s, Rng& rng, int steps) {
  Assignment a;
  for (int step = 0; step < steps; ++step) {
    const Step st = make_step(s, 100 + step);
    p.route(input_of(s, st), rng, a);
    feed(p, st, a);
  }
}

}  // namespace

TEST_CASE("save -> load -> continue and clone -> continue give the same decisions as never stopping") {
  for (const auto& info : moesim::policy_registry()) {
    rc::prop(info.name + ": resumed and cloned runs agree bitwise with the uninterrupted run", [&info] {
      const Scenario s = gen_scenario(info, true, 120, 16);
      const int before = choose(4);
      // Cut between route and observe (the policy must carry what observe needs
      // from the routed batch) or after observe.
      const bool mid_step = choose(2) == 1;
      RC_LOG() << s.describe() << " steps_before=" << before << " mid_step=" << mid_step << '\n';

      auto orig = make(s);
      Rng rng(s.seed);
      Assignment a;
      int step = 0;
      for (; step < before; ++step) {
        const Step st = make_step(s, step);
        orig->route(input_of(s, st), rng, a);
        feed(*orig, st, a);
      }
      Step cut_step;
      if (mid_step) {
        cut_step = make_step(s, step);
        orig->route(input_of(s, cut_step), rng, a);
      }
      const std::string text = saved(*orig);
      auto loaded = make(s);
      std::istringstream is(text);
      loaded->load(is);
      auto cloned = orig->clone();
      RC_ASSERT(saved(*loaded) == text);  // the snapshot is exact
      RC_ASSERT(saved(*cloned) == text);
      if (mid_step) {
        feed(*orig, cut_step, a);
        feed(*loaded, cut_step, a);
        feed(*cloned, cut_step, a);
        ++step;
      }
      {
        const auto d1 = state_diff(*orig, *loaded), d2 = state_diff(*orig, *cloned);
        if (!d1.empty()) RC_FAIL("after load: " + d1);
        if (!d2.empty()) RC_FAIL("after clone: " + d2);
      }
      Rng r_loaded = rng, r_cloned = rng;
      Assignment b, c;
      for (int n = 0; n < 3; ++n, ++step) {
        const Step st = make_step(s, step);
        orig->route(input_of(s, st), rng, a);
        loaded->route(input_of(s, st), r_loaded, b);
        cloned->route(input_of(s, st), r_cloned, c);
        const auto d1 = diff_assignments(a, b), d2 = diff_assignments(a, c);
        if (!d1.empty()) RC_FAIL("loaded run, step " + std::to_string(step) + ": " + d1);
        if (!d2.empty()) RC_FAIL("cloned run, step " + std::to_string(step) + ": " + d2);
        feed(*orig, st, a);
        feed(*loaded, st, b);
        feed(*cloned, st, c);
        RC_ASSERT(state_diff(*orig, *loaded).empty());
        RC_ASSERT(state_diff(*orig, *cloned).empty());
      }
      RC_ASSERT(saved(*orig) == saved(*loaded));
    });
  }
}

TEST_CASE("a clone is independent: advancing the clone leaves the original's state unchanged") {
  for (const auto& info : moesim::policy_registry()) {
    CAPTURE(info.name);
    Scenario s;
    s.policy = info.name;
    s.E = 6;
    s.k = moesim::accepted_k(info, 6, 2);
    s.T = 36;
    s.seed = 99;
    s.logits = make_logits(s.T, s.E, s.seed, kContinuous);
    s.ids = make_ids(s.T, 7);
    auto p = make(s);
    Rng rng(5);
    warm_up(*p, s, rng, 2);
    const std::string before = saved(*p);
    auto c = p->clone();
    Rng r2(6);
    warm_up(*c, s, r2, 3);
    CHECK(saved(*p) == before);
  }
}

TEST_CASE("load() refuses truncated snapshots at every cut point, naming truncation when whole lines are missing") {
  for (const auto& info : moesim::policy_registry()) {
    CAPTURE(info.name);
    Scenario s;
    s.policy = info.name;
    s.E = 5;
    s.k = 1;
    s.T = 20;
    s.seed = 3;
    s.logits = make_logits(s.T, s.E, s.seed, kContinuous);
    s.ids = make_ids(s.T, 4);
    auto p = make(s);
    Rng rng(1);
    warm_up(*p, s, rng, 3);
    const std::string text = saved(*p);
    REQUIRE(text.size() > 4);
    // Every strict prefix except the one lacking only the final newline.
    for (std::size_t cut = 0; cut + 1 < text.size(); ++cut) {
      CAPTURE(cut);
      auto q = make(s);
      std::istringstream is(text.substr(0, cut));
      const bool whole_lines = cut == 0 || text[cut - 1] == '\n';
      if (whole_lines)
        REQUIRE_THROWS_WITH(q->load(is), Catch::Contains("truncated"));
      else
        REQUIRE_THROWS_AS(q->load(is), moesim::Error);
    }
  }
}

TEST_CASE("a failed load() leaves the policy's state untouched") {
  for (const auto& info : moesim::policy_registry()) {
    CAPTURE(info.name);
    Scenario s;
    s.policy = info.name;
    s.E = 4;
    s.k = 1;
    s.T = 16;
    s.seed = 11;
    s.logits = make_logits(s.T, s.E, s.seed, kContinuous);
    s.ids = make_ids(s.T, 12);
    auto donor = make(s);
    Rng r1(1);
    warm_up(*donor, s, r1, 4);
    const std::string text = saved(*donor);
    auto p = make(s);
    Rng r2(2);
    warm_up(*p, s, r2, 1);
    const std::string before = saved(*p);
    // Keep the header, the knobs line and some state lines, dropping at least the
    // last state line and "end" (the snapshot lacking only "end" is the known-bug case below).
    std::vector<std::size_t> line_ends;
    for (std::size_t i = 0; i < text.size(); ++i)
      if (text[i] == '\n') line_ends.push_back(i + 1);
    for (std::size_t keep = 2; keep + 1 < line_ends.size(); ++keep) {
      CAPTURE(keep);
      std::istringstream is(text.substr(0, line_ends[keep - 1]));
      REQUIRE_THROWS_AS(p->load(is), moesim::Error);
      CHECK(saved(*p) == before);
    }
  }
}

TEST_CASE("load() refuses the snapshot of another policy, size, k or knob set") {
  const auto& reg = moesim::policy_registry();
  REQUIRE(!reg.empty());
  for (const auto& info : reg) {
    CAPTURE(info.name);
    const int k = 1;
    auto p = moesim::make_policy(info.name, 4, k);
    const std::string text = saved(*p);
    // Another policy
    for (const auto& other : reg) {
      if (other.name == info.name) continue;
      auto q = moesim::make_policy(other.name, 4, k);
      std::istringstream is(text);
      REQUIRE_THROWS_WITH(q->load(is), Catch::Contains("state is for"));
    }
    // Another E
    {
      auto q = moesim::make_policy(info.name, 6, k);
      std::istringstream is(text);
      REQUIRE_THROWS_WITH(q->load(is), Catch::Contains("state is for"));
    }
    // Another k (Switch routes k = 1 only)
    if (moesim::accepted_k(info, 4, 2) == 2) {
      auto q = moesim::make_policy(info.name, 4, 2);
      std::istringstream is(text);
      REQUIRE_THROWS_WITH(q->load(is), Catch::Contains("state is for"));
    }
    // Another knob set: change the first Real knob with a wide range, or a Bool/Choice.
    for (const auto& spec : info.knobs) {
      std::string v;
      if (spec.type == moesim::KnobType::Bool) v = spec.default_value == "true" ? "false" : "true";
      else if (spec.type == moesim::KnobType::Choice && spec.choices.size() > 1)
        v = spec.choices[0] == spec.default_value ? spec.choices[1] : spec.choices[0];
      else continue;
      auto q = moesim::make_policy(info.name, 4, k, {{spec.name, v}});
      std::istringstream is(text);
      REQUIRE_THROWS_WITH(q->load(is), Catch::Contains("other knobs"));
      break;
    }
  }
}

TEST_CASE("load() refuses a snapshot with a corrupted or non-finite number or a vector of the wrong length") {
  for (const auto& info : moesim::policy_registry()) {
    auto p = moesim::make_policy(info.name, 4, 1);
    if (p->state_vectors().empty()) continue;  // stateless: nothing between knobs and end
    CAPTURE(info.name);
    const std::string text = saved(*p);
    // Third line: the first state line, "key n v1 v2 ...".
    const auto l2 = text.find('\n', text.find('\n') + 1) + 1;
    const auto l3 = text.find('\n', l2);
    const std::string line = text.substr(l2, l3 - l2);
    std::istringstream ls(line);
    std::string key, n;
    ls >> key >> n;
    REQUIRE(std::stol(n) >= 1);
    {
      std::string bad = text.substr(0, l2) + key + " " + n;
      for (long i = 0; i < std::stol(n); ++i) bad += i == 0 ? " zz" : " 0x0p+0";
      bad += text.substr(l3);
      std::istringstream is(bad);
      REQUIRE_THROWS_WITH(p->load(is), Catch::Contains("bad number"));
    }
    for (const char* non_finite : {"nan", "inf", "-inf", "0x1p+2000"}) {  // the last overflows to inf
      std::string bad = text.substr(0, l2) + key + " " + n;
      for (long i = 0; i < std::stol(n); ++i) bad += i == 0 ? std::string(" ") + non_finite : " 0x0p+0";
      bad += text.substr(l3);
      std::istringstream is(bad);
      REQUIRE_THROWS_WITH(p->load(is), Catch::Contains("line 1: '" + key + "': bad number '" + non_finite + "'"));
    }
    {
      std::string bad = text.substr(0, l2) + key + " 1 0x0p+0" + text.substr(l3);
      std::istringstream is(bad);
      if (std::stol(n) != 1) REQUIRE_THROWS_WITH(p->load(is), Catch::Contains("expected " + n));
    }
    {
      std::string bad = text.substr(0, l2) + "nonsense 0" + text.substr(l3);
      std::istringstream is(bad);
      REQUIRE_THROWS_WITH(p->load(is), Catch::Contains("expected '" + key + "'"));
    }
  }
}

// Regression: load_state() once assigned the snapshot before load() saw that
// the closing "end" line was missing.
TEST_CASE("a load() refused for a missing 'end' line leaves the policy's state untouched") {
  bool any_stateful = false;
  for (const auto& info : moesim::policy_registry()) {
    Scenario s;
    s.policy = info.name;
    s.E = 4;
    s.k = 1;
    s.T = 16;
    s.seed = 11;
    s.logits = make_logits(s.T, s.E, s.seed, kContinuous);
    s.ids = make_ids(s.T, 12);
    auto donor = make(s);
    if (donor->state_vectors().empty()) continue;
    any_stateful = true;
    CAPTURE(info.name);
    Rng r1(1);
    warm_up(*donor, s, r1, 4);
    const std::string text = saved(*donor);
    auto p = make(s);
    Rng r2(2);
    warm_up(*p, s, r2, 1);
    const std::string before = saved(*p);
    REQUIRE(text.size() > 4);
    REQUIRE(text.substr(text.size() - 4) == "end\n");
    std::istringstream is(text.substr(0, text.size() - 4));
    REQUIRE_THROWS_WITH(p->load(is), Catch::Contains("truncated"));
    CHECK(saved(*p) == before);
  }
  REQUIRE(any_stateful);
}

TEST_CASE("load() refuses a snapshot with extra lines before 'end'") {
  for (const auto& info : moesim::policy_registry()) {
    CAPTURE(info.name);
    auto p = moesim::make_policy(info.name, 4, 1);
    const std::string text = saved(*p);
    const std::string junk = text.substr(0, text.size() - 4) + "junk 1 0x0p+0\nend\n";
    std::istringstream is(junk);
    REQUIRE_THROWS_AS(p->load(is), moesim::Error);
    CHECK(saved(*p) == text);
  }
}
