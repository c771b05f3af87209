#pragma once
// The simulator: one seeded run of a scenario. Per step, a batch of T tokens is
// drawn from the stream; every layer then, on the same tokens:
//   gate logits -> policy.route -> world performance -> policy.observe
//   -> gate update -> metrics -> world learning by doing / idle decay.
// Seeds: the stream uses derive_seed(seed, "stream"); layer l uses
// L = derive_seed(seed, "layer.<l>") and its children "gate.init", "gate.noise",
// "world.init", "world.noise", "policy". A run is single-threaded and touches no
// global state, so runs can go in parallel (e.g. across sweep points, each with
// its own config and seed) and the same config gives byte-identical outputs.
// Memory is independent of the number of steps: metrics stream, and time-series
// rows go to a callback as they are produced.
#include <cstdint>
#include <functional>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "sim/config.hpp"

namespace moesim {

struct RunResult {
  // Per-layer metric names, in order (LayerMetrics::run_metric_names(); see
  // metrics/load_metrics.hpp for the definitions).
  std::vector<std::string> metric_names;
  std::vector<std::vector<double>> layers;  // [layer][metric]
  std::vector<double> mean;                 // each metric averaged over the layers
  std::int64_t routings = 0;                // steps * layers * batch * k token-expert routings requested
  double seconds = 0.0;                     // wall time; not part of flat(): it is not reproducible

  // The flat ordered list: "<name>" (mean over layers) for every metric, then
  // "layer<l>.<name>" for every layer and metric.
  std::vector<std::pair<std::string, double>> flat() const;
};

using ProgressFn = std::function<void(std::int64_t steps_done, std::int64_t steps_total)>;
using RowFn = std::function<void(const std::vector<double>& row)>;

struct RunHooks {
  RowFn on_row;            // every time-series row, columns = Simulator::timeseries_columns()
  ProgressFn on_progress;  // after every step
};

class Simulator {
 public:
  // Resolves a replay's shape from its trace (sim/replay.hpp), then validates
  // the config (throws Error naming the key).
  explicit Simulator(SimConfig cfg);

  const SimConfig& config() const { return cfg_; }
  bool has_reputation() const { return has_reputation_; }

  // Time-series columns: step, layer, load_cv, gini, entropy, maxvio,
  // maxvio_global, drop_rate, token_drop_rate, dead, mean_perf, saturation,
  // spec_norm, skill_mean, baseline, rep_mean, rep_min, rep_max, rep_std,
  // share_0..share_{E-1}, then rep_0..rep_{E-1} when the policy has a reputation.
  // Rows come every log_every steps (step % log_every == 0) and at the last step,
  // one per layer; step is the 0-based batch index.
  const std::vector<std::string>& timeseries_columns() const { return columns_; }

  // Runs from a fresh state: calling it again gives the same result.
  RunResult run(const RunHooks& hooks = {}) const;

 private:
  RunResult run_synthetic(const RunHooks& hooks) const;
  RunResult run_replay(const RunHooks& hooks) const;

  SimConfig cfg_;
  bool has_reputation_ = false;
  std::vector<std::string> columns_;
};

// Runs cfg, writing the time series as CSV (header + rows) to timeseries when
// it is not null.
RunResult run_simulation(const SimConfig& cfg, std::ostream* timeseries, const ProgressFn& progress = {});

// The run metrics as CSV: a header of flat() names and one row of values.
void write_metrics_csv(std::ostream& os, const RunResult& r);

}  // namespace moesim
