// The confirmation loop end to end: training records routing, the simulator
// replays it exactly, and `confirm` compares runs on one set of metrics.
#include <catch2/catch.hpp>

#include <cmath>

#include "common/csv.hpp"
#include "common/npy.hpp"
#include "confirm/confirm.hpp"
#include "helpers.hpp"
#include "metrics/load_metrics.hpp"
#include "policies/registry.hpp"
#include "sim/simulator.hpp"
#include "torch_backend/trainer.hpp"

using namespace moesim;
using namespace moesim::torch_backend;
using namespace moesim::tb_test;

namespace {

// Trains a tiny run recording every step; returns its folder.
std::string train_recorded(const TempDir& d, const std::string& name, const std::string& policy,
                           const std::map<std::string, std::string>& knobs = {}, double aux = 0.01, long seed = 3) {
  auto cfg = tiny_config(policy);
  for (const auto& [k, v] : knobs) cfg.policy.knobs[k] = v;
  cfg.seed = static_cast<std::uint64_t>(seed);
  cfg.moe.aux_loss_coef = aux;
  cfg.train.steps = 12;
  cfg.train.eval_every = 0;
  cfg.train.eval_batches = 1;
  cfg.train.trace_every = 1;
  cfg.train.out_dir = d / name;
  const auto stream = random_stream(4000, cfg.tokenizer.vocab, 11);
  Trainer t(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
  t.run();
  return d / name;
}

SimConfig replay_of(const std::string& run, const std::string& policy, const KnobMap& knobs) {
  SimConfig c;
  c.stream.kind = "replay";
  c.stream.trace = run + "/traces";
  c.policy.name = policy;
  c.policy.knobs = knobs;
  c.log_every = 1;
  c.metrics.window = 4;
  c.metrics.dead_window = 4;
  return c;
}

}  // namespace

TEST_CASE("replay of a recorded top-k run reproduces its choices and the log's per-step metrics", "[torch][replay]") {
  TempDir d;
  const auto run = train_recorded(d, "topk", "topk");
  const CsvTable log = read_csv(run + "/train_log.csv");
  REQUIRE(log.rows.size() == 12);
  // The recorded choices are what top-k picks on the recorded logits.
  auto policy = make_policy("topk", 4, 2);
  Rng rng(1);
  Assignment a;
  for (int s = 1; s <= 12; ++s) {
    const std::string stem = run + "/traces/layer1_step" + std::to_string(s);
    const auto z = read_npy(stem + ".npy").as_float();
    const int T = static_cast<int>(z.size() / 4);
    policy->route({z.data(), T, 4}, rng, a);
    const auto choice = read_npy(stem + "_choice.npy").as_int64();
    CHECK(std::equal(choice.begin(), choice.end(), a.requested.begin()));
    // The recorded served counts are the log's loads of that step.
    const auto counts = read_npy(stem + "_counts.npy").as_int64();
    for (int e = 0; e < 4; ++e) CHECK(counts[e] == static_cast<std::int64_t>(log.number(s - 1, log.need_column("L1_load" + std::to_string(e)))));
  }
  // The replay's per-step metrics equal the training log's (one metrics library).
  Simulator sim(replay_of(run, "topk", {}));
  const auto& cols = sim.timeseries_columns();
  auto col = [&](const char* n) { return static_cast<std::size_t>(std::find(cols.begin(), cols.end(), n) - cols.begin()); };
  std::vector<std::vector<double>> rows;
  RunHooks hooks;
  hooks.on_row = [&](const std::vector<double>& r) { rows.push_back(r); };
  sim.run(hooks);
  REQUIRE(rows.size() == 12);
  for (std::size_t s = 0; s < 12; ++s) {
    CHECK(rows[s][col("maxvio")] == Approx(log.number(s, log.need_column("L1_maxvio"))).epsilon(1e-7));
    CHECK(rows[s][col("gini")] == Approx(log.number(s, log.need_column("L1_gini"))).epsilon(1e-7));
    CHECK(rows[s][col("load_cv")] == Approx(log.number(s, log.need_column("L1_cv"))).epsilon(1e-7));
    CHECK(rows[s][col("drop_rate")] == Approx(log.number(s, log.need_column("L1_drop"))).margin(1e-9));
  }
}

TEST_CASE("replay of a recorded RD-ESI run carries its state: the final reputation matches training", "[torch][replay]") {
  TempDir d;
  const KnobMap knobs = {{"beta", "1"}, {"gamma", "0.5"}};
  const auto run = train_recorded(d, "rdesi", "rdesi", {knobs.begin(), knobs.end()});
  const CsvTable log = read_csv(run + "/train_log.csv");
  const RunResult r = Simulator(replay_of(run, "rdesi", knobs)).run();
  auto metric = [&](const char* n) {
    for (std::size_t i = 0; i < r.metric_names.size(); ++i)
      if (r.metric_names[i] == n) return r.mean[i];
    return std::nan("");
  };
  const std::size_t last = log.rows.size() - 1;
  // The recording keeps each expert's mean performance in float; the policy's
  // own mean is a double, so the reputations agree to float precision.
  CHECK(metric("rep_mean") == Approx(log.number(last, log.need_column("L1_reputation_mean"))).epsilon(1e-5));
  CHECK(metric("rep_min") == Approx(log.number(last, log.need_column("L1_reputation_min"))).epsilon(1e-5));
  CHECK(metric("rep_max") == Approx(log.number(last, log.need_column("L1_reputation_max"))).epsilon(1e-5));
}

TEST_CASE("confirm on tiny training runs writes its tables and plots, real metrics from the log", "[torch][confirm]") {
  TempDir d;
  const std::vector<std::string> runs = {train_recorded(d, "topk_aux", "topk"),
                                         train_recorded(d, "topk_nobal", "topk", {{"dropless", "true"}}, 0.0),
                                         train_recorded(d, "loss_free", "loss_free", {}, 0.0),
                                         train_recorded(d, "topk_aux_seed2", "topk", {}, 0.01, 4)};
  ConfirmConfig cfg;
  cfg.window = 4;
  cfg.gate_lr = {0.1, 0.3};
  cfg.skill_growth = {0.0};
  cfg.clusters = {4};
  cfg.init_scale = {1.0};
  cfg.aux_scale = {1.0};
  cfg.threads = 1;
  const ConfirmResult res = confirm_runs(runs, cfg, nullptr);
  REQUIRE(res.groups.size() == 3);  // the two top-k + aux runs differ only by seed
  CHECK(res.groups[0].runs.size() == 2);
  CHECK(res.reference == "topk_aux");
  CHECK(res.calibration.size() == 2);
  // Real late batch MaxVio = mean of the log's own L1_maxvio over the last 4 steps, per run, then over the group.
  double expected = 0;
  for (const auto& run : {runs[0], runs[3]}) {
    const CsvTable log = read_csv(run + "/train_log.csv");
    for (std::size_t s = 8; s < 12; ++s) expected += log.number(s, log.need_column("L1_maxvio")) / 8.0;
  }
  const auto& names = confirm_metrics();
  const auto m = static_cast<std::size_t>(std::find(names.begin(), names.end(), "late_maxvio_batch") - names.begin());
  CHECK(res.groups[0].mean.real[m] == Approx(expected).epsilon(1e-7));
  for (const auto& a : res.agreement) CHECK(a.n == 3);
  REQUIRE(res.claims.size() >= 2);
  CHECK(res.claims[0].tested);
  CHECK(res.claims[1].tested);
  std::vector<std::string> warnings;
  write_confirm(res, d / "out", true, "gnuplot", warnings);
  CHECK(warnings.empty());
  for (const char* f : {"metrics.csv", "agreement.csv", "claims.csv", "calibration.csv", "prediction.csv",
                        "summary.json", "confirm.md", "plots/metric_bars.png", "plots/load_shares.png"})
    CHECK(fs::exists(d / ("out/" + std::string(f))));
  const CsvTable mc = read_csv(d / "out/metrics.csv");
  CHECK(mc.rows.size() == 3 * 4);  // real, replay, sim, real_spread per group
  CHECK(read_csv(d / "out/prediction.csv").rows.size() == 2 * names.size());  // the reference is held out
  // Same result on 2 threads (runs and grid points are independent jobs).
  ConfirmConfig two = cfg;
  two.threads = 2;
  const ConfirmResult again = confirm_runs(runs, two, nullptr);
  for (std::size_t g = 0; g < res.groups.size(); ++g) {
    CHECK(again.groups[g].mean.real == res.groups[g].mean.real);
    CHECK(again.groups[g].mean.replay == res.groups[g].mean.replay);
    CHECK(again.groups[g].mean.sim == res.groups[g].mean.sim);
  }
  // Fewer than two runs are refused.
  CHECK_THAT(error_of([&] { confirm_runs({runs[0]}, cfg, nullptr); }), Catch::Contains("at least two"));
}
