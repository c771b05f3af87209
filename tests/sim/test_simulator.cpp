// Whole runs: byte-identical outputs, seed independence across layers, the
// time-series layout, every registered policy, and the Matthew effect.
#include <catch2/catch.hpp>

#include <cmath>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "policies/registry.hpp"
#include "common/csv.hpp"
#include "sim/simulator.hpp"

using namespace moesim;

namespace {

SimConfig tiny() {
  SimConfig c;
  c.steps = 60;
  c.batch = 256;
  c.experts = 8;
  c.k = 2;
  c.log_every = 7;
  c.stream.clusters = 4;
  c.stream.vocab = 100;
  c.stream.dim = 8;
  c.stream.drift = 0.05;
  c.stream.burst_prob = 0.05;
  c.stream.hot_fraction = 0.05;
  c.gate.noise = 0.1;
  c.metrics.window = 10;
  c.metrics.dead_window = 10;
  return c;
}

struct Output {
  std::string timeseries, metrics;
  RunResult result;
};

Output run(const SimConfig& c) {
  Output o;
  std::ostringstream ts, ms;
  o.result = run_simulation(c, &ts);
  write_metrics_csv(ms, o.result);
  o.timeseries = ts.str();
  o.metrics = ms.str();
  return o;
}

double get(const RunResult& r, const std::string& name) {
  for (const auto& [n, v] : r.flat())
    if (n == name) return v;
  FAIL("no metric " << name);
  return 0;
}

bool registered(const std::string& name) {
  for (const auto& p : policy_registry())
    if (p.name == name) return true;
  return false;
}

}  // namespace

TEST_CASE("same seed, same bytes; another seed, other bytes", "[simulator][determinism]") {
  auto c = tiny();
  c.layers = 2;
  c.policy.name = "rdesi";
  c.policy.knobs["epsilon"] = "0.05";  // the policy's own randomness too
  c.policy.knobs["score_noise"] = "0.1";
  const auto a = run(c), b = run(c);
  CHECK(a.timeseries == b.timeseries);
  CHECK(a.metrics == b.metrics);
  c.seed = 2;
  const auto d = run(c);
  CHECK(d.timeseries != a.timeseries);
  CHECK(d.metrics != a.metrics);
  // A Simulator runs from a fresh state every time.
  Simulator sim(tiny());
  std::string r1, r2;  // as text: rows hold NaN, which never compares equal
  sim.run({[&](const std::vector<double>& r) {
             for (double x : r) r1 += format_number(x) + ",";
           },
           {}});
  sim.run({[&](const std::vector<double>& r) {
             for (double x : r) r2 += format_number(x) + ",";
           },
           {}});
  CHECK(r1.size() > 100);
  CHECK(r1 == r2);
}

TEST_CASE("runs on parallel threads give the bytes of sequential runs", "[simulator][determinism]") {
  // What a parallel sweep does: independent runs at once, each single-threaded.
  std::vector<SimConfig> cfgs(4, tiny());
  for (std::size_t i = 0; i < cfgs.size(); ++i) {
    cfgs[i].seed = 10 + i % 2;  // two pairs of identical runs
    cfgs[i].policy.name = i < 2 ? "topk" : "rdesi";
  }
  std::vector<Output> parallel(cfgs.size());
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < cfgs.size(); ++i) threads.emplace_back([&, i] { parallel[i] = run(cfgs[i]); });
  for (auto& t : threads) t.join();
  for (std::size_t i = 0; i < cfgs.size(); ++i) {
    const auto seq = run(cfgs[i]);
    CHECK(parallel[i].timeseries == seq.timeseries);
    CHECK(parallel[i].metrics == seq.metrics);
  }
}

TEST_CASE("adding a layer leaves layer 0 untouched (seeds derived by name)", "[simulator][seeds]") {
  auto c = tiny();
  const auto one = run(c);
  c.layers = 3;
  const auto three = run(c);
  for (const auto& name : one.result.metric_names) {
    const double x = get(one.result, "layer0." + name), y = get(three.result, "layer0." + name);
    if (std::isnan(x)) {
      CHECK(std::isnan(y));
    } else {
      CHECK(x == y);
    }
  }
  // Layers have their own gates and worlds: layer 1 routes differently.
  CHECK(get(three.result, "layer1.gini") != get(three.result, "layer0.gini"));
  // The mean is the mean over layers.
  double g = 0;
  for (int l = 0; l < 3; ++l) g += get(three.result, "layer" + std::to_string(l) + ".gini");
  CHECK(get(three.result, "gini") == Approx(g / 3));
}

TEST_CASE("time-series layout: columns, sampled steps, shares", "[simulator]") {
  auto c = tiny();
  c.layers = 2;
  c.policy.name = "rdesi";
  Simulator sim(c);
  REQUIRE(sim.has_reputation());
  const auto& cols = sim.timeseries_columns();
  CHECK(cols.size() == 19 + 2 * 8u);
  CHECK(cols[0] == "step");
  CHECK(cols[19] == "share_0");
  CHECK(cols[27] == "rep_0");
  std::vector<std::vector<double>> rows;
  std::vector<std::int64_t> progress;
  const auto r = sim.run({[&](const std::vector<double>& row) { rows.push_back(row); },
                          [&](std::int64_t done, std::int64_t total) {
                            CHECK(total == 60);
                            progress.push_back(done);
                          }});
  // Steps 0, 7, ..., 56 and the last, 59: 10 steps x 2 layers.
  REQUIRE(rows.size() == 20);
  CHECK(rows[0][0] == 0);
  CHECK(rows[1][0] == 0);
  CHECK(rows[1][1] == 1);
  CHECK(rows[2][0] == 7);
  CHECK(rows[19][0] == 59);
  for (const auto& row : rows) {
    REQUIRE(row.size() == cols.size());
    double s = 0;
    for (int e = 0; e < 8; ++e) s += row[19 + e];
    CHECK(s == Approx(1.0));
    CHECK_FALSE(std::isnan(row[15]));  // rep_mean
  }
  CHECK(progress.size() == 60);
  CHECK(progress.back() == 60);
  CHECK(r.routings == 60LL * 2 * 256 * 2);
  // Stateless policy: no rep_ columns, rep statistics are nan.
  Simulator plain(tiny());
  CHECK_FALSE(plain.has_reputation());
  CHECK(plain.timeseries_columns().size() == 19 + 8u);
  std::ostringstream ts;
  run_simulation(tiny(), &ts);
  std::string header;
  std::getline(std::istringstream(ts.str()), header);
  CHECK(header.rfind("step,layer,load_cv,gini,entropy,maxvio,maxvio_global,drop_rate", 0) == 0);
  CHECK(ts.str().find(",nan,") != std::string::npos);
}

TEST_CASE("every registered policy runs through the simulator", "[simulator][policies]") {
  for (const auto& p : policy_registry()) {
    INFO("policy " << p.name);
    auto c = tiny();
    c.steps = 15;
    c.policy.name = p.name;
    c.k = accepted_k(p, c.experts, c.k);
    const auto o = run(c);
    CHECK(get(o.result, "mean_perf") > 0.0);
    CHECK(get(o.result, "drop_rate") >= 0.0);
    CHECK(get(o.result, "drop_rate") <= 1.0);
    CHECK(get(o.result, "gini") >= 0.0);
    CHECK(get(o.result, "entropy") <= 1.0 + 1e-12);
  }
}

TEST_CASE("Matthew effect: learning by doing concentrates top-k, balancing prevents it", "[simulator][matthew]") {
  // Strong learning by doing with forgetting, a learning gate, dropless routing
  // so load can concentrate freely.
  SimConfig c;
  c.steps = 500;
  c.batch = 1024;
  c.experts = 16;
  c.world.skill_growth = 0.2;
  c.world.idle_decay = 0.01;
  c.policy.name = "topk";
  c.policy.knobs["dropless"] = "true";
  std::vector<std::vector<double>> rows;
  Simulator sim(c);
  const auto topk = sim.run({[&](const std::vector<double>& r) { rows.push_back(r); }, {}});
  auto frozen_cfg = c;
  frozen_cfg.gate.lr = 0.0;  // same world and stream, no feedback into routing
  const auto frozen = Simulator(frozen_cfg).run();
  const double g_topk = get(topk, "late_gini"), g_frozen = get(frozen, "late_gini");
  INFO("late Gini: topk " << g_topk << ", frozen gate " << g_frozen);
  CHECK(g_topk > 0.45);
  CHECK(g_topk > g_frozen + 0.15);            // the feedback loop, not the geometry, concentrates
  CHECK(get(topk, "rgr_slope") > 0.1);         // early leaders gain share
  CHECK(get(frozen, "rgr_slope") == Approx(0.0).margin(0.05));
  CHECK(rows.back()[3] > rows.front()[3] + 0.1);  // Gini rises over the run
  if (registered("loss_free")) {
    auto lf = c;
    lf.policy.name = "loss_free";
    const auto bal = Simulator(lf).run();
    const double g_bal = get(bal, "late_gini");
    INFO("late Gini: loss_free " << g_bal);
    CHECK(g_bal < 0.1);
    CHECK(g_bal < g_topk - 0.3);
    CHECK(get(bal, "rgr_slope") < -0.5);  // shares equalise
    CHECK(get(bal, "late_maxvio") < get(topk, "late_maxvio"));
  }
}

TEST_CASE("simulator rejects a bad config with the key in the message", "[simulator]") {
  auto c = tiny();
  c.k = 9;
  try {
    Simulator s(c);
    FAIL("no error");
  } catch (const Error& e) {
    CHECK(std::string(e.what()).find("'k'") != std::string::npos);
  }
}

