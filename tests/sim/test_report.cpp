// Reports: report.md with the table and links, PNG + SVG plots (when gnuplot is
// there), a heatmap for a 2-D grid, and the late-share helpers by hand.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <string>

#include "policies/types.hpp"
#include "scenario_helpers.hpp"
#include "sim/scenario.hpp"
#include "sim/sweep.hpp"

#include "reports/report.hpp"

using namespace moesim;
using moesim::test::TempDir;
namespace fs = std::filesystem;

namespace {

bool have_gnuplot() { return std::system("gnuplot -e 'set terminal png' > /dev/null 2>&1") == 0; }

std::string make_sweep(const TempDir& dir) {
  test::write_text(dir / "grid.yaml",
                   "name: grid\ndescription: a 2-D grid plus a reference point\nsteps: 40\nbatch: 128\nexperts: 8\n"
                   "k: 2\nlog_every: 5\nstream: {clusters: 4, vocab: 50}\nmetrics: {window: 10, dead_window: 10}\n"
                   "seeds: [1, 2]\npolicy: {name: rdesi, knobs: {dropless: true}}\n"
                   "sweep:\n  - policy.knobs.beta: [0, 1]\n    policy.knobs.gamma: [0, 0.5, 2]\n"
                   "  - policy: [{name: topk, label: plain-topk}]\n");
  const auto sc = load_scenario(dir / "grid.yaml");
  SweepOptions o;
  o.out_dir = dir / "out";
  o.threads = 2;
  o.progress = false;
  run_sweep(sc, expand_sweep(sc), o);
  return o.out_dir;
}

}  // namespace

TEST_CASE("report: markdown table, plots and heatmap", "[report]") {
  TempDir dir("report");
  const auto out = make_sweep(dir);
  const auto res = write_report(out);
  CHECK(res.markdown == out + "/report.md");
  const std::string md = test::read_text(res.markdown);
  CHECK(md.find("# Report: grid") != std::string::npos);
  CHECK(md.find("| # | point | policy | Gini (late) | MaxVio batch |") != std::string::npos);
  CHECK(md.find("| 6 | plain-topk | topk |") != std::string::npos);
  CHECK(md.find("beta=1 gamma=0.5") != std::string::npos);
  CHECK(md.find(" ± ") != std::string::npos);
  CHECK(md.find("moesim run ") != std::string::npos);
  if (!have_gnuplot()) {
    WARN("gnuplot not installed: only the tables are checked");
    CHECK(res.plots == 0);
    CHECK_FALSE(res.warnings.empty());
    return;
  }
  CHECK(res.warnings.empty());
  for (const char* name : {"load_shares", "gini", "maxvio", "load_cv", "reputation", "heatmap_g0", "final_metrics"}) {
    INFO(name);
    const std::string png = out + "/plots/" + name + ".png";
    REQUIRE(fs::exists(png));
    CHECK(fs::file_size(png) > 2000);
    CHECK(test::read_text(png).substr(1, 3) == "PNG");
    CHECK(test::read_text(out + "/plots/" + name + ".svg").find("<svg") != std::string::npos);
    CHECK(fs::exists(out + "/plots/" + name + ".gp"));
    CHECK(md.find(std::string("(plots/") + name + ".png)") != std::string::npos);
  }
  CHECK(res.plots == 7);
  for (const auto& e : fs::directory_iterator(out + "/plots"))
    CHECK(e.path().extension() != ".tmp");
}

TEST_CASE("report without plots, and on a folder that is not a finished sweep", "[report]") {
  TempDir dir("report-noplots");
  const auto out = make_sweep(dir);
  ReportOptions o;
  o.plots = false;
  const auto res = write_report(out, o);
  CHECK(res.plots == 0);
  CHECK(fs::exists(out + "/report.md"));
  CHECK_FALSE(fs::exists(out + "/plots"));
  o.plots = true;
  o.gnuplot = "/nonexistent/gnuplot";
  const auto res2 = write_report(out, o);
  CHECK(res2.plots == 0);
  REQUIRE(res2.warnings.size() == 1);
  CHECK(res2.warnings[0].find("plots skipped") != std::string::npos);
  fs::remove(out + "/runs.csv");
  CHECK_THROWS_WITH(write_report(out), out + ": no runs.csv: the sweep has not finished (run the same `moesim sweep` "
                                             "again to resume it)");
  CHECK_THROWS_WITH(write_report(dir / "nowhere"),
                    (dir / "nowhere") + ": no scenario.resolved.yaml: not a folder written by moesim sweep or run");
}

TEST_CASE("late load shares and starved experts by hand", "[report]") {
  TempDir dir("report-shares");
  // Two layers, steps 0..3 logged; the late window is the last 2 steps (steps 2, 3).
  test::write_text(dir / "ts.csv",
                   "step,layer,gini,share_0,share_1,share_2,share_3\n"
                   "0,0,0,0.25,0.25,0.25,0.25\n0,1,0,0.25,0.25,0.25,0.25\n"
                   "2,0,0,0.5,0.5,0,0\n2,1,0,0.7,0.3,0,0\n"
                   "3,0,0,0.6,0.38,0.02,0\n3,1,0,0.6,0.38,0.02,0\n");
  SimConfig cfg;
  cfg.steps = 4;
  cfg.metrics.window = 2;
  const auto s = late_load_shares(dir / "ts.csv", cfg);
  REQUIRE(s.size() == 4);
  CHECK(s[0] == Approx((0.6 + 0.6) / 2));
  CHECK(s[1] == Approx((0.4 + 0.38) / 2));
  CHECK(s[2] == Approx(0.01));
  CHECK(s[3] == 0.0);
  // Fair share 0.25: below 0.025 is starved.
  CHECK(starved_experts(s) == 2);
}



TEST_CASE("training report: tables each run's final perplexity and tail means, hand-computed") {
  TempDir dir("train-report");
  const std::string root = dir.path() + "/runs";
  // Two runs, one MoE layer (L1) of 2 experts. Run "a": 3 logged steps.
  fs::create_directories(root + "/a");
  fs::create_directories(root + "/b");
  moesim::test::write_text(root + "/a/train_log.csv",
             "step,tokens,ce,L1_load0,L1_load1,L1_maxvio,L1_gini,L1_drop\n"
             "10,100,5.0,3,1,0.5,0.25,0.02\n"
             "20,200,4.0,2,2,0.0,0.00,0.00\n"
             "30,300,3.0,1,3,0.5,0.25,0.04\n");
  moesim::test::write_text(root + "/a/eval_log.csv", "step,tokens,val_loss,val_ppl\n20,200,4.6,99.5\n30,300,4.5,90.0\n");
  moesim::test::write_text(root + "/b/train_log.csv",
             "step,tokens,ce,L1_load0,L1_load1,L1_maxvio,L1_gini,L1_drop\n10,100,6.0,2,2,0.0,0.0,0.0\n");
  REQUIRE(is_training_folder(root));
  REQUIRE_FALSE(is_training_folder(dir.path()));
  ReportOptions opt;
  opt.plots = false;
  const auto res = write_training_report(root, opt);
  const std::string md = moesim::test::read_text(res.markdown);
  // a: last eval ppl 90.0; tail means over its 3 rows: ce (5+4+3)/3 = 4.000,
  // MaxVio (0.5+0+0.5)/3 = 0.33, Gini (0.25+0+0.25)/3 = 0.167, drop 100*(0.02+0+0.04)/3 = 2.00%.
  CHECK_THAT(md, Catch::Contains("| a | 30 | 300 | 90.0 | 4.000 | 0.33 | 0.167 | 2.00% |"));
  // b: no eval log, one row.
  CHECK_THAT(md, Catch::Contains("| b | 10 | 100 | – | 6.000 | 0.00 | 0.000 | 0.00% |"));
  // Runs appear in name order.
  CHECK(md.find("| a |") < md.find("| b |"));
}

TEST_CASE("training report: a folder without train_log.csv is refused by name") {
  TempDir dir("train-report-empty");
  REQUIRE_THROWS_WITH(write_training_report(dir.path()), Catch::Contains("no train_log.csv"));
}
