// reports/sweep_data: the report reads what the runs wrote (its means are the
// runs' own metrics) and refuses a runs.csv that disagrees with summary.json.
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
