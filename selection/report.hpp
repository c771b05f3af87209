#pragma once
// The experiment's table: eval/eval.json of several pipeline folders, grouped
// into arms (method; for the router also aggregate, trash ratio and warm-up
// epoch; share kept; training mode) with mean, sample standard deviation and
// count over the seeds of each arm (a metric's mean and spread over the seeds
// that have it: null in eval.json, e.g. the base's with eval.base=false, is left out).
#include <string>
#include <vector>

namespace moesim::selection {

struct ArmRow {
  std::string arm;                  // "router sum r=0.125 epoch 2", "random", ...
  int seeds = 0;
  std::vector<double> mean, sd;     // per metric of report_metrics()
};

const std::vector<std::string>& report_metrics();
// Error naming the file when an eval.json is missing or lacks a metric.
std::vector<ArmRow> collect_arms(const std::vector<std::string>& out_dirs);
// select_report.csv and select_report.md in dir (atomically).
void write_report(const std::vector<ArmRow>& rows, const std::string& dir);
// `moesim select report OUT... --out DIR`.
int select_report_command(const std::vector<std::string>& args);

}  // namespace moesim::selection
