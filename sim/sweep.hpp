#pragma once
// Sweeps: every (point x seed) run of a scenario on a pool of threads, with
// resumable, atomically written outputs.
//
// OUTDIR layout:
//   scenario.resolved.yaml      the resolved scenario (loadable as is)
//   runs/<run_id>/config.yaml   the run's resolved config, its replay command on top
//   runs/<run_id>/timeseries.csv
//   runs/<run_id>/metrics.csv   final metrics; written last, so it marks the run done
//   runs.csv                    one row per run, canonical order
//   summary.json                per point: mean/std/min/max of every final metric over seeds
// Run ids are p<point>-s<seed>. A run's seed is the listed seed itself, for every
// point: all points of one seed see the same token stream, gate and world draws
// (common random numbers), so point differences are the policies', not the luck's.
// Each run is single-threaded and depends only on its config, so the files do not
// depend on the thread count or the order runs finish in. A restart skips every
// run whose metrics.csv exists and whose config.yaml matches, then rebuilds
// runs.csv and summary.json from the per-run files: an interrupted sweep, resumed,
// writes the same bytes as an uninterrupted one.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "common/csv.hpp"
#include "common/files.hpp"
#include "sim/scenario.hpp"

namespace moesim {

struct RunSpec {
  std::string id;  // p<point>-s<seed>
  int point = 0;
  std::uint64_t seed = 0;
  SimConfig config;
};

// Every run of the points, point-major (all seeds of point 0 first).
std::vector<RunSpec> plan_runs(const std::vector<SweepPoint>& points, const std::vector<std::uint64_t>& seeds);

struct SweepOptions {
  std::string out_dir;
  int threads = 0;        // 0: std::thread::hardware_concurrency()
  bool progress = true;   // progress and ETA on stderr
  std::string command = "moesim";  // program name in replay commands
  // Called (under a lock) after each run's files are in place; tests use it to stop mid-sweep.
  std::function<void(const RunSpec&)> on_run_done;
};

struct SweepResult {
  int runs = 0;          // in the sweep
  int skipped = 0;       // already complete from an earlier, interrupted attempt
  double seconds = 0.0;  // wall time of this call
  double sim_seconds = 0.0;           // summed single-run wall times of the runs done now
  std::int64_t token_steps = 0;       // steps * batch * layers over the runs done now
  std::vector<std::string> replay;    // per point: a one-line replay command (its first seed)
};

// Runs (or resumes) the sweep into options.out_dir and assembles its outputs.
SweepResult run_sweep(const Scenario& sc, const std::vector<SweepPoint>& points, const SweepOptions& options);

// The replay command line of one run.
std::string replay_command(const Scenario& sc, const SweepPoint& p, std::uint64_t seed, const std::string& program,
                           const std::string& out_dir);

// Sample statistics over seeds (std with n - 1; 0 for one value); NaNs are skipped.
struct SeedStats {
  double mean = 0, std = 0, min = 0, max = 0;
  int n = 0;
};
SeedStats seed_stats(const std::vector<double>& xs);

}  // namespace moesim
