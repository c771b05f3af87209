// reports/report, figures: report.md with the table and links, PNG + SVG plots,
// a heatmap for a 2-D grid; a plots path that is a file is refused; labels with
// line breaks and folders with quotes still make every plot.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "common/csv.hpp"
#include "report_helpers.hpp"
#include "sim/scenario.hpp"
#include "sim/sweep.hpp"

#include "reports/markdown.hpp"
#include "reports/report.hpp"

using namespace moesim;
using moesim::test::TempDir;
using moesim::test::have_gnuplot;
using moesim::test::make_sweep;
namespace fs = std::filesystem;

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
