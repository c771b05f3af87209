#pragma once
// What a sweep wrote, read back for its report: summary.json (scenario, base
// config, grids, points with their metric statistics over seeds), runs.csv
// (checked: every run once, a known point, numbers where numbers belong) and the
// runs' time series. Nothing is re-expanded or re-derived: the metrics are the
// ones the runs computed (metrics/load_metrics.hpp).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "sim/run_store.hpp"

namespace moesim {

struct AxisInfo {
  std::string key;  // a config key, or a section ("policy")
  bool section = false;
  std::vector<std::string> labels;  // one per value
};

struct PointInfo {
  int index = 0, grid = 0;
  std::string label, policy, replay;
  std::vector<int> items;  // per axis of its grid: which value
  std::vector<std::string> run_ids;
  std::map<std::string, SeedStats> stats;  // metric -> over seeds
};

struct SweepData {
  std::string dir, name, description;
  std::vector<std::uint64_t> seeds;
  std::map<std::string, std::string> config;  // base config: key -> value
  std::vector<std::vector<AxisInfo>> grids;
  std::vector<PointInfo> points;
  std::size_t runs = 0;
  // A base-config value, "" when absent.
  std::string value(const std::string& key) const;
};

// Throws Error naming the file on anything inconsistent or missing.
SweepData load_sweep(const std::string& out_dir);

// One run's time series, averaged over its layers (or of one layer): step and columns.
struct Series {
  std::vector<std::string> columns;
  std::vector<double> step;
  std::vector<std::vector<double>> values;  // [column][row]
  int column(const std::string& name) const;  // -1 when absent
};
Series read_series(const std::string& path, int only_layer = -1);
// Element-wise mean of series with the same columns (over seeds); the shortest length wins.
Series mean_series(const std::vector<Series>& all);

}  // namespace moesim
