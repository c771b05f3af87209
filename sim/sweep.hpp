#pragma once
// Sweeps: every (point x seed) run of a scenario on a pool of threads, into a
// RunStore (sim/run_store.hpp has the on-disk layout and the resume rule).
// A run's seed is the listed seed itself, for every point: all points of one seed
// see the same token stream, gate and world draws (common random numbers), so
// point differences are the policies', not the luck's. Each run is
// single-threaded and depends only on its config, so the files do not depend on
// the thread count or the order runs finish in: an interrupted sweep, resumed,
// writes the same bytes as an uninterrupted one.
// Under mpirun (built with MPI) the runs spread over the ranks as well: rank 0 holds
// the folder's lock and the longest-first queue and hands runs out one at a time
// to every rank's threads, including its own; the other ranks write their runs'
// folders into the same (shared) output folder, and rank 0 assembles the tables.
// The files are the same bytes for any rank and thread count.
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "sim/run_store.hpp"
#include "sim/scenario.hpp"

namespace moesim {

// Every run of the points, point-major (all seeds of point 0 first).
std::vector<RunSpec> plan_runs(const std::vector<SweepPoint>& points, const std::vector<std::uint64_t>& seeds);

// Thrown on ranks other than 0 when the sweep failed: rank 0 reports the error,
// the others only exit non-zero.
class SweepPeerFailed : public Error {
 public:
  using Error::Error;
};

struct SweepOptions {
  std::string out_dir;
  int threads = 0;        // per rank; 0: std::thread::hardware_concurrency()
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
};

// Runs (or resumes) the sweep into options.out_dir and assembles its outputs. On a
// rank other than 0 only `runs` is set in the result.
SweepResult run_sweep(const Scenario& sc, const std::vector<SweepPoint>& points, const SweepOptions& options);

}  // namespace moesim
