#pragma once
// The on-disk layout of a sweep, in one place:
//   OUTDIR/scenario.resolved.yaml      the resolved scenario (loadable as is)
//   OUTDIR/runs/<run_id>/config.yaml   a comment header (run, point, seed, replay command),
//                                      then the run's resolved config
//   OUTDIR/runs/<run_id>/timeseries.csv
//   OUTDIR/runs/<run_id>/metrics.csv   final metrics; written last, so it marks the run done
//   OUTDIR/runs.csv                    one row per run, canonical order
//   OUTDIR/summary.json                per point: its label, grid, swept values, runs, replay
//                                      command and mean/std/min/max of every metric over seeds
//   OUTDIR/.lock                       held while a sweep writes
// Every file is written atomically; the three top-level files only once every run
// is done, so they always describe one whole sweep. A run counts as done once its metrics.csv exists
// and its config.yaml holds the same resolved config; the header does not count, so
// naming the scenario another way (./scenarios/x.yaml) keeps the finished runs.
#include <optional>
#include <string>
#include <vector>

#include "common/files.hpp"
#include "sim/scenario.hpp"

namespace moesim {

struct RunSpec {
  std::string id;  // p<point>-s<seed>
  int point = 0;
  std::uint64_t seed = 0;
  SimConfig config;
};

class RunStore {
 public:
  // The owner (the sweep's only or first process) creates OUTDIR/runs, takes the lock
  // (Error when another sweep holds it) and removes the temporary files of writes
  // killed mid-way; a helper (another MPI rank of the same sweep) only writes runs.
  enum class Role { owner, helper };
  explicit RunStore(std::string out_dir, Role role = Role::owner);
  const std::string& dir() const { return dir_; }
  std::string run_dir(const std::string& id) const { return dir_ + "/runs/" + id; }

  // config.yaml of a run: the header then the resolved config.
  static std::string config_file(const Scenario& sc, const SweepPoint& p, const RunSpec& r, const std::string& program);
  // Whether the run finished earlier with this resolved config (config_yaml(r.config)).
  bool complete(const RunSpec& r) const;
  // A run succeeded: its old completion marker goes, then config.yaml, timeseries.csv
  // and metrics.csv, which marks it complete. Nothing is written before a run
  // succeeds, so a failed run leaves the folder's earlier result whole.
  void finish(const RunSpec& r, const std::string& config_file, const std::string& timeseries,
              const std::string& metrics) const;
  // scenario.resolved.yaml, runs.csv and summary.json from the runs' files, in
  // canonical order (linear in points + runs); written only when every run is done.
  void assemble(const Scenario& sc, const std::vector<SweepPoint>& points, const std::vector<RunSpec>& runs,
                const std::string& program) const;

 private:
  std::string dir_;
  std::optional<DirLock> lock_;
};

// Sample statistics over seeds (std with n - 1; 0 for one value); NaNs are skipped.
struct SeedStats {
  double mean = 0, std = 0, min = 0, max = 0;
  int n = 0;
};
SeedStats seed_stats(const std::vector<double>& xs);

}  // namespace moesim
