// reports/training_report: the table of training runs, hand-computed from logs written here.
#include <catch2/catch.hpp>

#include <filesystem>

#include "reports/report.hpp"
#include "scenario_helpers.hpp"

using namespace moesim;
using moesim::test::TempDir;
namespace fs = std::filesystem;

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
