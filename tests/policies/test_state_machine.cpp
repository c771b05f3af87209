// Stateful property (RapidCheck state machine), per policy: any sequence of
// route, observe, save -> load and clone on one policy decides exactly as a
// reference copy of it that never stops. The reference is the model; the
// policy that keeps being saved, reloaded and cloned is the system under test.
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>
#include <rapidcheck/state.h>

#include <sstream>

#include "helpers.hpp"
#include "policies/registry.hpp"

using namespace testutil;
using moesim::Assignment;
using moesim::Rng;

namespace {

// A policy, the Rng it routes with and its last assignment; copies are deep, so
// RapidCheck can copy the model between commands.
struct Router {
  std::unique_ptr<moesim::Policy> policy;
  Rng rng{0};
  Assignment last;
  bool routed = false;

  Router() = default;
  Router(std::unique_ptr<moesim::Policy> p, std::uint64_t seed) : policy(std::move(p)), rng(seed) {}
  Router(const Router& o) : policy(o.policy->clone()), rng(o.rng), last(o.last), routed(o.routed) {}
  Router& operator=(const Router& o) {
    if (this != &o) *this = Router(o);
    return *this;
  }
  Router(Router&&) = default;
  Router& operator=(Router&&) = default;
};

struct Machine {
  Scenario shape;  // policy, E, k, T, knobs and the input style
};

std::string saved(const moesim::Policy& p) {
  std::ostringstream os;
  p.save(os);
  return os.str();
}

using Cmd = rc::state::Command<Router, Router>;

// Route batch `step` (fresh logits and ids); both must choose alike.
struct Route : Cmd {
  const Machine* m;
  int step = *rc::gen::inRange(1, 1000);
  explicit Route(const Machine* machine) : m(machine) {}
  void apply(Router& ref) const override {
    const Step st = make_step(m->shape, step);
    ref.policy->route(input_of(m->shape, st), ref.rng, ref.last);
    ref.routed = true;
  }
  void run(const Router& ref0, Router& sut) const override {
    Router ref = ref0;
    apply(ref);
    const Step st = make_step(m->shape, step);
    sut.policy->route(input_of(m->shape, st), sut.rng, sut.last);
    sut.routed = true;
    RC_ASSERT(diff_assignments(sut.last, ref.last) == "");
  }
  void show(std::ostream& os) const override { os << "route(step " << step << ")"; }
};

// Feedback on the last assignment (sometimes none); both states must agree.
struct Observe : Cmd {
  const Machine* m;
  int step = *rc::gen::inRange(1, 1000);
  explicit Observe(const Machine* machine) : m(machine) {}
  void checkPreconditions(const Router& ref) const override { RC_PRE(ref.routed); }
  void apply(Router& ref) const override { feed(*ref.policy, make_step(m->shape, step), ref.last); }
  void run(const Router& ref0, Router& sut) const override {
    Router ref = ref0;
    apply(ref);
    feed(*sut.policy, make_step(m->shape, step), sut.last);
    RC_ASSERT(saved(*sut.policy) == saved(*ref.policy));
  }
  void show(std::ostream& os) const override { os << "observe(step " << step << ")"; }
};

// The system under test is replaced by a fresh policy loaded from its snapshot.
struct SaveLoad : Cmd {
  const Machine* m;
  explicit SaveLoad(const Machine* machine) : m(machine) {}
  void apply(Router&) const override {}
  void run(const Router&, Router& sut) const override {
    const std::string text = saved(*sut.policy);
    auto fresh = make(m->shape);
    std::istringstream is(text);
    fresh->load(is, "state machine");
    RC_ASSERT(saved(*fresh) == text);
    sut.policy = std::move(fresh);
  }
  void show(std::ostream& os) const override { os << "save+load"; }
};

// The system under test continues as its clone; the original is dropped.
struct CloneSwap : Cmd {
  const Machine* m;
  explicit CloneSwap(const Machine* machine) : m(machine) {}
  void apply(Router&) const override {}
  void run(const Router&, Router& sut) const override {
    auto c = sut.policy->clone();
    RC_ASSERT(saved(*c) == saved(*sut.policy));
    sut.policy = std::move(c);
  }
  void show(std::ostream& os) const override { os << "clone"; }
};

// Generates one of the four commands for the machine's shape.
auto commands(const Machine* m) {
  return [m](const Router&) {
    return rc::gen::oneOf(rc::gen::exec([m] { return std::shared_ptr<const Cmd>(std::make_shared<Route>(m)); }),
                          rc::gen::exec([m] { return std::shared_ptr<const Cmd>(std::make_shared<Observe>(m)); }),
                          rc::gen::exec([m] { return std::shared_ptr<const Cmd>(std::make_shared<SaveLoad>(m)); }),
                          rc::gen::exec([m] { return std::shared_ptr<const Cmd>(std::make_shared<CloneSwap>(m)); }));
  };
}

}  // namespace

TEST_CASE("state machine: route/observe/save+load/clone in any order decides as never stopping, every policy") {
  for (const auto& info : moesim::policy_registry()) {
    std::vector<moesim::KnobMap> variants = {{}};
    for (std::size_t i = 1; i < info.presets.size(); ++i) variants.push_back({{"preset", info.presets[i].name}});
    for (const auto& knobs : variants) {
      CAPTURE(info.name);
      const std::string name = "state machine: " + info.name + (knobs.empty() ? "" : " preset=" + knobs.at("preset"));
      rc::prop(name, [&info, &knobs] {
        Machine m;
        m.shape.policy = info.name;
        m.shape.E = *rc::gen::inRange(2, 9);
        m.shape.k = moesim::accepted_k(info, m.shape.E, *rc::gen::inRange(1, m.shape.E + 1));
        m.shape.T = m.shape.E * *rc::gen::inRange(1, 6);  // a multiple of E (balanced)
        m.shape.knobs = knobs;
        m.shape.style = kContinuous;
        m.shape.seed = *rc::gen::arbitrary<std::uint64_t>();
        const std::uint64_t rng_seed = *rc::gen::arbitrary<std::uint64_t>();
        Router ref(make(m.shape), rng_seed), sut(make(m.shape), rng_seed);
        rc::state::check(ref, sut, commands(&m));
      });
    }
  }
}
