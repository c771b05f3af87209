// Reports: report.md with the table and links, PNG + SVG plots, a heatmap for a
// 2-D grid; what the report refuses (inconsistent runs.csv, a plots path that is a
// file) and what it survives (labels with line breaks, quotes in folder names).
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/csv.hpp"
#include "scenario_helpers.hpp"
#include "sim/scenario.hpp"
#include "sim/sweep.hpp"

#include "reports/markdown.hpp"
#include "reports/plotter.hpp"
#include "reports/report.hpp"

using namespace moesim;
using moesim::test::TempDir;
namespace fs = std::filesystem;

namespace {

// scripts/setup.sh installs gnuplot-nox: the plot tests need it and say so.
bool have_gnuplot() { return std::system("gnuplot -e 'set terminal png' > /dev/null 2>&1") == 0; }

std::string make_sweep(const std::string& dir, const std::string& out_name = "out", const std::string& extra = "") {
  test::write_text(dir + "/grid.yaml",
                   "name: grid\ndescription: a 2-D grid plus a reference point\nsteps: 40\nbatch: 128\nexperts: 8\n"
                   "k: 2\nlog_every: 5\nstream: {clusters: 4, vocab: 50}\nmetrics: {window: 10, dead_window: 10}\n"
                   "seeds: [1, 2]\npolicy: {name: rdesi, knobs: {dropless: true}}\n"
                   "sweep:\n  - policy.knobs.beta: [0, 1]\n    policy.knobs.gamma: [0, 0.5, 2]\n"
                   "  - policy: [{name: topk, label: plain-topk}" + extra + "]\n");
  const auto sc = load_scenario(dir + "/grid.yaml");
  SweepOptions o;
  o.out_dir = dir + "/" + out_name;
  o.threads = 2;
  o.progress = false;
  run_sweep(sc, expand_sweep(sc), o);
  return o.out_dir;
}

}  // namespace

TEST_CASE("report: markdown table, plots and heatmap", "[report]") {
  REQUIRE(have_gnuplot());
  TempDir dir("report");
  const auto out = make_sweep(dir.path());
  const auto res = write_report(out);
  CHECK(res.markdown == out + "/report.md");
  const std::string md = test::read_text(res.markdown);
  CHECK(md.find("# Report: grid") != std::string::npos);
  CHECK(md.find("| # | point | policy | Gini (late) | MaxVio batch |") != std::string::npos);
  CHECK(md.find("| 6 | plain-topk | topk |") != std::string::npos);
  CHECK(md.find("beta=1 gamma=0.5") != std::string::npos);
  CHECK(md.find(" ± ") != std::string::npos);
  CHECK(md.find(" run ") != std::string::npos);
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
  for (const auto& e : fs::directory_iterator(out + "/plots")) CHECK(e.path().extension() != ".tmp");
}

TEST_CASE("report: the table's means are the runs' own metrics averaged over seeds", "[report]") {
  TempDir dir("report-means");
  const auto out = make_sweep(dir.path());
  ReportOptions o;
  o.plots = false;
  const std::string md = test::read_text(write_report(out, o).markdown);
  // Point 6 (plain-topk): its two runs' late_gini in runs.csv, averaged here by hand.
  const CsvTable runs = read_csv(out + "/runs.csv");
  const std::size_t c_point = runs.need_column("point"), c_gini = runs.need_column("late_gini");
  std::vector<double> g;
  for (std::size_t r = 0; r < runs.rows.size(); ++r)
    if (runs.number(r, c_point) == 6) g.push_back(runs.number(r, c_gini));
  REQUIRE(g.size() == 2);
  const double mean = (g[0] + g[1]) / 2, sd = std::fabs(g[0] - g[1]) / std::sqrt(2.0);
  CHECK_THAT(md, Catch::Contains("| 6 | plain-topk | topk | " + mean_std(mean, sd, 2) + " |"));
}

TEST_CASE("report without plots, and on a folder that is not a finished sweep", "[report]") {
  TempDir dir("report-noplots");
  const auto out = make_sweep(dir.path());
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
  CHECK_THROWS_WITH(write_report(out), out + ": no runs.csv or summary.json: the sweep has not finished (run the "
                                             "same `moesim sweep` again to resume it)");
  CHECK_THROWS_WITH(write_report(dir / "nowhere"),
                    (dir / "nowhere") + ": no scenario.resolved.yaml: not a folder written by moesim sweep or run");
}

TEST_CASE("report refuses a runs.csv that disagrees with summary.json, naming file and line", "[report]") {
  TempDir dir("report-bad");
  const auto out = make_sweep(dir.path());
  const std::string csv = out + "/runs.csv", original = test::read_text(csv);
  ReportOptions o;
  o.plots = false;
  const CsvTable t = read_csv(csv);
  const std::string first_id = t.rows.at(0).at(t.need_column("run_id"));
  const auto header_end = original.find('\n') + 1, row_end = original.find('\n', header_end) + 1;
  const std::string first_row = original.substr(header_end, row_end - header_end);
  SECTION("a run listed twice") {
    test::write_text(csv, original + first_row);
    CHECK_THROWS_WITH(write_report(out, o), csv + ":" + std::to_string(t.rows.size() + 2) + ": run '" + first_id +
                                                "' listed twice");
  }
  SECTION("a run missing") {
    test::write_text(csv, original.substr(0, original.rfind('\n', original.size() - 2) + 1));
    CHECK_THROWS_WITH(write_report(out, o), csv + ": 1 runs of summary.json are missing");
  }
  SECTION("a metric that is not a number") {
    // The first row again, its late_gini field replaced (fields hold no commas here).
    std::vector<std::string> f;
    const std::string row = first_row.substr(0, first_row.size() - 1);
    for (std::size_t a = 0, b = 0; a <= row.size(); a = b + 1) {
      b = std::min(row.find(',', a), row.size());
      f.push_back(row.substr(a, b - a));
    }
    REQUIRE(f.size() == t.header.size());
    f[t.need_column("late_gini")] = "lots";
    std::string bad;
    for (std::size_t i = 0; i < f.size(); ++i) bad += (i ? "," : "") + f[i];
    test::write_text(csv, original.substr(0, header_end) + bad + "\n" + original.substr(row_end));
    CHECK_THROWS_WITH(write_report(out, o), csv + ":2: column 'late_gini': 'lots' is not a number");
  }
  // Nothing was half-written: the report of the good folder never existed.
  CHECK_FALSE(fs::exists(out + "/report.md"));
}

TEST_CASE("report: a plots path that is a file is refused by name", "[report]") {
  REQUIRE(have_gnuplot());
  TempDir dir("report-plotsfile");
  const auto out = make_sweep(dir.path());
  test::write_text(out + "/plots", "not a folder");
  CHECK_THROWS_WITH(write_report(out), Catch::Contains(out + "/plots"));
  CHECK_FALSE(fs::exists(out + "/report.md"));
}

TEST_CASE("report: a label with a line break and a folder with a quote still make every plot", "[report]") {
  REQUIRE(have_gnuplot());
  TempDir dir("report-odd");
  const auto out = make_sweep(dir.path(), "it's a sweep", ", {name: loss_free, label: \"two\\nlines | x\"}");
  const auto res = write_report(out);
  CHECK(res.warnings.empty());
  CHECK(res.plots == 7);
  const std::string md = test::read_text(res.markdown);
  CHECK_THAT(md, Catch::Contains("| 7 | two lines \\| x | loss\\_free |"));
}

TEST_CASE("markdown: escapes table and emphasis characters; numbers at three decimals", "[report]") {
  CHECK(md_escape("a|b_c*d\ne") == "a\\|b\\_c\\*d e");
  CHECK(fmt_value(0.12345) == "0.123");
  CHECK(fmt_value(12345.0) == "1.23e+04");
  CHECK(fmt_value(std::nan("")) == "n/a");
  CHECK(mean_std(1.0, 0.5, 3) == "1.000 ± 0.500");
  CHECK(mean_std(1.0, 0.0, 1) == "1.000");
}

TEST_CASE("plotter: gnuplot strings quote quotes; panels and images split evenly", "[report]") {
  CHECK(gq("it's") == "'it''s'");
  CHECK(gq("a\nb") == "'a b'");
  CHECK(data_file("x'.dat") == "'data/x''.dat'");
  int rows = 0, cols = 0;
  panel_layout(5, rows, cols);
  CHECK((rows == 2 && cols == 3));
  panel_layout(1, rows, cols);
  CHECK((rows == 1 && cols == 1));
  CHECK(per_image(17, 16) == 9);  // two images of 9 and 8, not 16 and 1
  CHECK(per_image(16, 16) == 16);
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
