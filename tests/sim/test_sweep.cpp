// Sweeps: byte-identical outputs for any thread count, resume after a kill equals
// an uninterrupted sweep, and the shipped scenarios' expected directions hold
// (at reduced size, over several seeds).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "policies/types.hpp"
#include "scenario_helpers.hpp"
#include "sim/scenario.hpp"
#include "common/csv.hpp"
#include "sim/sweep.hpp"
#include "reports/report.hpp"

using namespace moesim;
using moesim::test::TempDir;
namespace fs = std::filesystem;

namespace {

const char* kSmall =
    "name: small\nsteps: 30\nbatch: 128\nexperts: 8\nk: 2\nlog_every: 5\nstream: {clusters: 4, vocab: 50}\n"
    "metrics: {window: 10, dead_window: 10}\nseeds: [3, 1]\n"
    "sweep:\n  policy:\n    - {name: topk, knobs: {dropless: true}}\n    - {name: rdesi, knobs: {beta: 0.5}}\n"
    "    - {name: loss_free, label: lf}\n  world.skill_growth: [0.05, 0.2]\n";

SweepResult sweep_into(const Scenario& sc, const std::string& out, int threads,
                       std::function<void(const RunSpec&)> on_done = {}) {
  SweepOptions o;
  o.out_dir = out;
  o.threads = threads;
  o.progress = false;
  o.on_run_done = std::move(on_done);
  return run_sweep(sc, expand_sweep(sc), o);
}

Scenario small(const TempDir& dir) {
  test::write_text(dir / "small.yaml", kSmall);
  return load_scenario(dir / "small.yaml");
}

// Mean over seeds of a runs.csv metric, per point label.
std::map<std::string, double> mean_by_label(const std::string& out, const std::string& metric) {
  const auto t = read_csv(out + "/runs.csv");
  const int cl = t.column("label"), cm = t.column(metric);
  REQUIRE(cl >= 0);
  REQUIRE(cm >= 0);
  std::map<std::string, std::vector<double>> v;
  for (const auto& r : t.rows) v[r[static_cast<std::size_t>(cl)]].push_back(std::stod(r[static_cast<std::size_t>(cm)]));
  std::map<std::string, double> m;
  for (const auto& [k, xs] : v) m[k] = seed_stats(xs).mean;
  return m;
}

}  // namespace

TEST_CASE("sweep outputs: one row per run, canonical order, replayable", "[sweep]") {
  TempDir dir("sweep-outputs");
  const auto sc = small(dir);
  const auto res = sweep_into(sc, dir / "out", 2);
  CHECK(res.runs == 12);
  CHECK(res.skipped == 0);
  const auto t = read_csv(dir / "out/runs.csv");
  REQUIRE(t.rows.size() == 12);
  CHECK(t.header[0] == "run_id");
  CHECK(t.column("world.skill_growth") >= 0);
  CHECK(t.column("policy.name") >= 0);
  CHECK(t.column("late_gini") >= 0);
  CHECK(t.rows[0][0] == "p000-s3");  // point-major, seeds in listed order
  CHECK(t.rows[1][0] == "p000-s1");
  CHECK(t.rows[11][0] == "p005-s1");
  for (const auto& r : t.rows) CHECK(fs::exists(dir / ("out/runs/" + r[0] + "/timeseries.csv")));
  const std::string summary = test::read_text(dir / "out/summary.json");
  CHECK(summary.find("\"label\": \"lf skill_growth=0.2\"") != std::string::npos);
  CHECK(summary.find("\"late_gini\": {\"mean\": ") != std::string::npos);
  // The resolved scenario reloads to the same sweep.
  const auto again = load_scenario(dir / "out/scenario.resolved.yaml");
  CHECK(expand_sweep(again).size() == 6);
  // A replayed run writes the same time series as the sweep's run.
  const auto points = expand_sweep(sc);
  const auto replay = load_scenario(sc.path, replay_args(sc, points[4], 1));
  Scenario one = replay;
  one.grids.clear();
  one.seeds = {1};
  sweep_into(one, dir / "replay", 1);
  CHECK(test::read_text(dir / "replay/runs/p000-s1/timeseries.csv") == test::read_text(dir / "out/runs/p004-s1/timeseries.csv"));
  CHECK(test::read_text(dir / "replay/runs/p000-s1/metrics.csv") == test::read_text(dir / "out/runs/p004-s1/metrics.csv"));
}

TEST_CASE("same seeds give byte-identical files with 1 and 2 threads", "[sweep]") {
  TempDir dir("sweep-threads");
  const auto sc = small(dir);
  sweep_into(sc, dir / "t1", 1);
  sweep_into(sc, dir / "t2", 2);
  sweep_into(sc, dir / "t3", 3);
  const auto a = test::tree(dir / "t1");
  CHECK(a.size() == 4 + 12 * 3);  // .lock, runs.csv, summary.json, scenario.resolved.yaml; 3 files per run
  CHECK(a == test::tree(dir / "t2"));
  CHECK(a == test::tree(dir / "t3"));
}

TEST_CASE("resume after lost files, stray temp files and a changed run equals an uninterrupted sweep", "[sweep]") {
  TempDir dir("sweep-resume");
  const auto sc = small(dir);
  sweep_into(sc, dir / "clean", 2);
  const auto clean = test::tree(dir / "clean");

  // An interrupted attempt: the callback throws after 5 runs, as a crash would stop it.
  int done = 0;
  CHECK_THROWS_AS(sweep_into(sc, dir / "b", 2,
                             [&](const RunSpec&) {
                               if (++done == 5) throw Error("interrupted");
                             }),
                  Error);
  CHECK_FALSE(fs::exists(dir / "b/runs.csv"));
  // More damage: a finished run loses its marker, another keeps a half-written temp file,
  // a third has only its config (killed mid-run).
  fs::remove(dir / "b/runs/p000-s3/metrics.csv");
  test::write_text(dir / "b/runs/p000-s1/timeseries.csv.tmp", "step,la");
  fs::create_directories(dir / "b/runs/p005-s1");
  test::write_text(dir / "b/runs/p005-s1/config.yaml", "stale");
  test::write_text(dir / "b/runs.csv.tmp", "junk");
  const auto res = sweep_into(sc, dir / "b", 2);
  CHECK(res.skipped >= 3);
  CHECK(res.skipped < 12);
  CHECK(test::tree(dir / "b") == clean);
  // A second resume finds everything done and rewrites the same bytes.
  CHECK(sweep_into(sc, dir / "b", 1).skipped == 12);
  CHECK(test::tree(dir / "b") == clean);
}

TEST_CASE("resume after kill -9 mid-sweep equals an uninterrupted sweep", "[sweep]") {
  TempDir dir("sweep-kill");
  const auto sc = small(dir);
  sweep_into(sc, dir / "clean", 1);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // The child dies hard after its 4th finished run, with the other thread mid-run.
    int n = 0;
    try {
      sweep_into(sc, dir / "k", 2, [&](const RunSpec&) {
        if (++n == 4) ::kill(::getpid(), SIGKILL);
      });
    } catch (...) {
    }
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGKILL);
  CHECK_FALSE(fs::exists(dir / "k/runs.csv"));
  const auto res = sweep_into(sc, dir / "k", 2);
  CHECK(res.skipped >= 4);
  CHECK(test::tree(dir / "k") == test::tree(dir / "clean"));
}

TEST_CASE("a changed config re-runs the stale runs only", "[sweep]") {
  TempDir dir("sweep-change");
  auto sc = small(dir);
  sweep_into(sc, dir / "out", 2);
  apply_override(sc, "sweep.world.skill_growth=[0.05, 0.3]");
  const auto res = sweep_into(sc, dir / "out", 2);
  CHECK(res.skipped == 6);  // the skill_growth=0.05 points are unchanged
  CHECK(read_csv(dir / "out/runs.csv").rows.size() == 12);
}

TEST_CASE("a run that fails (NaN gate scores) leaves the folder's earlier result byte-identical", "[sweep]") {
  TempDir dir("sweep-fail");
  auto sc = small(dir);
  sweep_into(sc, dir / "out", 2);
  const auto before = test::tree(dir / "out");
  // gate.lr = 1e300 overflows the gate to NaN scores in the first steps: every run fails.
  apply_override(sc, "gate.lr=1e300");
  CHECK_THROWS_WITH(sweep_into(sc, dir / "out", 2), Catch::Contains("gate score is NaN at token"));
  CHECK(test::tree(dir / "out") == before);
}

TEST_CASE("seed statistics: mean, sample std, min, max; NaNs skipped", "[sweep]") {
  const auto s = seed_stats({1.0, 2.0, 3.0, std::nan("")});
  CHECK(s.n == 3);
  CHECK(s.mean == 2.0);
  CHECK(s.std == Approx(1.0));
  CHECK(s.min == 1.0);
  CHECK(s.max == 3.0);
}

// The shipped scenarios, smaller (steps, batch) but over 3 seeds: their headline
// directions must hold with margins that a broken policy or world would miss.
TEST_CASE("shipped scenarios: expected directions at reduced size", "[sweep][scenarios]") {
  TempDir dir("sweep-scenarios");
  auto run = [&](const std::string& name, std::vector<std::string> ov) {
    ov.push_back("seeds=[1,2,3]");
    const auto sc = load_scenario(test::source_path("scenarios/" + name + ".yaml"), ov);
    const std::string out = dir / name;
    sweep_into(sc, out, 2);
    return out;
  };
  SECTION("matthew: balancing policies flatten what plain top-k concentrates") {
    const auto out = run("matthew", {"steps=300", "batch=1024"});
    const auto gini = mean_by_label(out, "late_gini");
    const auto perf = mean_by_label(out, "mean_perf");
    CHECK(gini.at("topk-nobal") > 0.45);
    for (const char* p : {"balanced", "expert_choice", "sinkhorn", "loss_free", "random"}) {
      INFO(p);
      CHECK(gini.at(p) < gini.at("topk-nobal") - 0.3);
    }
    CHECK(gini.at("rdesi-g2") < gini.at("topk-nobal") - 0.05);
    CHECK(gini.at("balanced") < 1e-9);
    CHECK(perf.at("random") < perf.at("topk-nobal") - 0.02);
  }
  SECTION("no_balancing: top-k collapses, random does not") {
    const auto out = run("no_balancing", {"steps=400", "batch=1024"});
    const auto gini = mean_by_label(out, "late_gini");
    CHECK(gini.at("topk-k2") > 0.4);
    CHECK(gini.at("topk-k1") > gini.at("topk-k2"));
    CHECK(gini.at("random") < 0.05);
    CHECK(gini.at("topk-k2-frozen-gate") < gini.at("topk-k2") - 0.1);
    // starved is a run metric in runs.csv (metrics/load_metrics.hpp), mean over the 3 seeds.
    CHECK(mean_by_label(out, "starved").at("topk-k2") >= 3.0);
  }
  SECTION("lossfree_vs_aux: loss-free global MaxVio below the aux-loss router at every coefficient") {
    const auto out = run("lossfree_vs_aux", {"steps=300", "batch=2048"});
    const auto mv = mean_by_label(out, "maxvio_global");
    const auto drop = mean_by_label(out, "drop_rate");
    CHECK(mv.at("loss_free-u0.01") < 0.25);
    CHECK(3 * mv.at("loss_free-u0.01") < mv.at("topk-cap1.25"));
    CHECK(3 * mv.at("loss_free-u0.01") < mv.at("load-penalty-g2"));
    CHECK(3 * mv.at("loss_free-u0.01") < mv.at("aux aux_loss=0.01"));
    CHECK(mv.at("loss_free-u0.01") < mv.at("aux-dropless aux_loss=1"));
    // The aux loss does balance when strong enough: the gradient is real.
    CHECK(mv.at("aux-dropless aux_loss=1") < mv.at("aux-dropless aux_loss=0.01") - 0.5);
    CHECK(drop.at("loss_free-u0.01") == 0.0);
  }
  SECTION("capacity: drops fall with the capacity factor; balanced policies drop little at 1.25") {
    const auto out = run("capacity", {"steps=200", "batch=2048"});
    const auto drop = mean_by_label(out, "drop_rate");
    for (const char* p : {"topk", "loss_free", "sinkhorn"}) {
      INFO(p);
      const std::string q = p;
      CHECK(drop.at(q + " capacity_factor=1.0") > drop.at(q + " capacity_factor=1.25"));
      CHECK(drop.at(q + " capacity_factor=1.25") >= drop.at(q + " capacity_factor=2.0"));
    }
    CHECK(drop.at("loss_free capacity_factor=1.25") < 0.04);
    CHECK(drop.at("topk capacity_factor=1.25") > 0.1);
    CHECK(drop.at("expert_choice capacity_factor=1.0") == 0.0);
  }
  SECTION("rdesi_grid: the load penalty gamma balances, beta alone does not") {
    // The file's sweep is a list of two grids: override it whole, with a smaller beta x gamma grid.
    const auto out = run("rdesi_grid", {"steps=300", "batch=1024",
                                        "sweep=[{policy: [{label: rdesi-plain, name: rdesi, knobs: {dropless: true, "
                                        "ucb_c: 0, decay_rate: 1, decay_on: none}}, {label: rdesi-explore-decay, "
                                        "name: rdesi, knobs: {dropless: true, ucb_c: 1, epsilon: 0.02, decay_rate: "
                                        "0.95, decay_on: all_after_ema}}], policy.knobs.beta: [0, 1], policy.knobs.gamma: [0, "
                                        "4]}, {policy: [{label: topk, name: topk, knobs: {dropless: true}}]}]"});
    const auto gini = mean_by_label(out, "late_gini");
    const auto mv = mean_by_label(out, "maxvio_batch");
    for (const char* v : {"rdesi-plain", "rdesi-explore-decay"})
      for (const char* b : {"beta=0", "beta=1"}) {
        const std::string p = std::string(v) + " " + b;
        INFO(p);
        CHECK(gini.at(p + " gamma=4") < gini.at(p + " gamma=0") - 0.1);
        CHECK(mv.at(p + " gamma=4") < 0.7 * mv.at(p + " gamma=0"));
      }
    CHECK(std::fabs(gini.at("rdesi-plain beta=1 gamma=0") - gini.at("topk")) < 0.05);
  }
  SECTION("expert_choice: perfectly balanced where token choice drops or collapses") {
    const auto out = run("expert_choice", {"steps=300", "batch=1024"});
    const auto mv = mean_by_label(out, "maxvio_batch");
    const auto drop = mean_by_label(out, "drop_rate");
    const auto gini = mean_by_label(out, "late_gini");
    CHECK(mv.at("expert_choice-cf1") < 1e-9);
    CHECK(drop.at("expert_choice-cf1") == 0.0);
    CHECK(drop.at("topk-cf1.25") > 0.1);
    CHECK(gini.at("topk-dropless") > 0.4);
  }
}
