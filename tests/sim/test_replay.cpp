// Replay (sim/replay.hpp): recorded logits through any policy, as if routed directly.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <sstream>

#include "common/files.hpp"
#include "common/npy.hpp"
#include "metrics/load_metrics.hpp"
#include "policies/registry.hpp"
#include "policies/rng.hpp"
#include "scenario_helpers.hpp"
#include "sim/replay.hpp"
#include "sim/scenario.hpp"
#include "sim/simulator.hpp"
#include "trace/trace.hpp"

using namespace moesim;
using moesim::test::TempDir;

namespace {

constexpr int kT = 48, kE = 8, kSteps = 6;

// Skewed logits (expert 0 favoured) and per-expert performance with some NaN
// (experts the "recording" saw serve nothing), two layers.
void write_trace(const std::string& dir) {
  TraceWriter w(dir);
  Rng rng(42);
  for (long step = 1; step <= kSteps; ++step) {
    std::vector<std::int64_t> ids(kT);
    for (int t = 0; t < kT; ++t) ids[t] = static_cast<std::int64_t>(rng.next_u64() % 1000);
    w.record_tokens(step * 10, ids.data(), kT);
    for (int layer : {0, 2}) {
      std::vector<float> z(static_cast<std::size_t>(kT) * kE);
      for (std::size_t i = 0; i < z.size(); ++i)
        z[i] = static_cast<float>(rng.uniform() * 2.0 - 1.0) + (i % kE == 0 ? 0.8f : 0.0f);
      w.record_logits(layer, step * 10, z.data(), kT, kE);
      Assignment a;
      a.reset(kT, kE, 1);
      for (int t = 0; t < kT; ++t) a.requested[t] = a.expert[t] = (t + static_cast<int>(step)) % (kE - 2);
      std::vector<float> perf(kT);
      for (int t = 0; t < kT; ++t) perf[t] = static_cast<float>(rng.uniform());
      w.record_routing(layer, step * 10, a, perf.data());
    }
    w.commit();
  }
}

bool same(const std::vector<double>& a, const std::vector<double>& b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(a[i] == b[i] || (std::isnan(a[i]) && std::isnan(b[i])))) return false;
  return true;
}

// The replay loop written out directly: read each step's arrays with the NPY
// reader, route, observe the recorded mean performance (unserved experts: the
// mean of the served ones), accumulate the metrics.
std::vector<double> route_directly(const std::string& dir, int layer, int li, const SimConfig& c) {
  auto policy = make_policy(c.policy.name, kE, c.k, c.policy.knobs);
  Rng rng(derive_seed(derive_seed(c.seed, "layer." + std::to_string(li)), "policy"));
  LayerMetrics m(kE, 1, kSteps, c.metrics);
  Assignment a;
  for (int s = 0; s < kSteps; ++s) {
    const std::string stem = dir + "/layer" + std::to_string(layer) + "_step" + std::to_string((s + 1) * 10);
    const auto z = read_npy(stem + ".npy").as_float();
    const auto ids = read_npy(dir + "/tokens_step" + std::to_string((s + 1) * 10) + ".npy").as_int64();
    const auto ep = read_npy(stem + "_perf.npy").as_float();
    RouteInput in{z.data(), kT, kE, ids.data(), nullptr, nullptr, 0};
    policy->route(in, rng, a);
    double sum = 0;
    int n = 0;
    for (float v : ep)
      if (!std::isnan(v)) sum += v, ++n;
    std::vector<float> perf(a.expert.size(), 0.0f);
    for (std::size_t i = 0; i < a.expert.size(); ++i)
      if (a.expert[i] >= 0) {
        const float v = ep[static_cast<std::size_t>(a.expert[i])];
        perf[i] = std::isnan(v) ? static_cast<float>(sum / n) : v;
      }
    policy->observe(a, perf.data());
    m.add_batch(s, a, nullptr, perf.data());
    m.add_saturation(router_saturation(z.data(), kT, kE));  // log_every = 1: every step is logged
  }
  return m.finish(policy->reputation(), std::numeric_limits<double>::quiet_NaN());
}

}  // namespace

TEST_CASE("replay: every policy on recorded logits equals routing the same logits directly", "[replay]") {
  TempDir d("replay-direct");
  write_trace(d / "t");
  for (const auto& info : policy_registry()) {
    SimConfig c;
    c.stream.kind = "replay";
    c.stream.trace = d / "t";
    c.policy.name = info.name;
    c.k = accepted_k(info, kE, 2);
    c.log_every = 1;
    c.metrics.window = 2;
    c.metrics.dead_window = 2;
    const Simulator sim(c);
    CHECK(sim.config().experts == kE);
    CHECK(sim.config().batch == kT);
    CHECK(sim.config().layers == 2);
    CHECK(sim.config().steps == kSteps);
    const RunResult r = sim.run();
    INFO("policy " << info.name);
    CHECK(same(r.layers[0], route_directly(d / "t", 0, 0, sim.config())));
    CHECK(same(r.layers[1], route_directly(d / "t", 2, 1, sim.config())));
  }
}

TEST_CASE("replay: steps cap the recorded ones, layers select, and the unserved-expert rule is a choice", "[replay]") {
  TempDir d("replay-knobs");
  write_trace(d / "t");
  SimConfig c;
  c.stream.kind = "replay";
  c.stream.trace = d / "t";
  c.stream.layers = "2";
  c.steps = 4;
  c.policy.name = "rdesi";
  c.policy.knobs = {{"beta", "2"}, {"gamma", "0"}};
  resolve_replay(c);
  CHECK(c.layers == 1);
  CHECK(c.steps == 4);
  // Experts 6 and 7 never serve in the recording: zero vs layer mean changes
  // their reputation, hence RD-ESI's routing; top-k has no state and does not care.
  auto rep_mean = [&](const std::string& rule, const std::string& policy) {
    SimConfig x = c;
    x.stream.unserved_perf = rule;
    x.policy.name = policy;
    if (policy != "rdesi") x.policy.knobs.clear();
    const auto r = Simulator(x).run();
    std::vector<double> loads;  // the load metrics (mean_perf differs by construction)
    for (const char* m : {"maxvio_batch", "maxvio_global", "gini", "load_cv_batch", "idle_batch"})
      for (std::size_t i = 0; i < r.metric_names.size(); ++i)
        if (r.metric_names[i] == m) loads.push_back(r.mean[i]);
    return loads;
  };
  CHECK_FALSE(same(rep_mean("zero", "rdesi"), rep_mean("layer_mean", "rdesi")));
  CHECK(same(rep_mean("zero", "topk"), rep_mean("layer_mean", "topk")));
  c.stream.layers = "5";
  CHECK_THROWS_WITH(resolve_replay(c), Catch::Contains("no layer 5 recorded"));
}

TEST_CASE("replay: a scenario sweeps policies over one trace; bad traces name the file", "[replay]") {
  TempDir d("replay-scenario");
  write_trace(d / "t");
  const std::string yaml = "name: r\nstream: {kind: replay, trace: '" + (d / "t") +
                           "'}\nsteps: 1000\nsweep:\n  - policy.name: [topk, loss_free]\n";
  const Scenario sc = parse_scenario(yaml, d / "r.yaml", {});
  const auto points = expand_sweep(sc);
  REQUIRE(points.size() == 2);
  CHECK(points[0].config.experts == kE);
  CHECK(points[0].config.steps == kSteps);  // capped at the recorded steps
  const auto missing = "name: r\nstream: {kind: replay, trace: '" + (d / "nope") + "'}\n";
  CHECK_THROWS_WITH(expand_sweep(parse_scenario(missing, d / "r.yaml", {})),
                    Catch::Contains(d / "nope" + ": no such trace"));
  // NaN in a step file: the run fails naming file, step, token, expert.
  std::vector<float> z(static_cast<std::size_t>(kT) * kE, 0.5f);
  z[5 * kE + 3] = std::numeric_limits<float>::quiet_NaN();
  write_file_atomic(d / "t/layer2_step30.npy", npy_bytes(z.data(), {kT, kE}));
  SimConfig c;
  c.stream.kind = "replay";
  c.stream.trace = d / "t";
  CHECK_THROWS_WITH(Simulator(c).run(), d / "t/layer2_step30.npy" + ": NaN logit at step 30, token 5, expert 3");
}
