#pragma once
// Simulator vs real: does what the simulator concludes hold in the trained model?
// Input: training run folders of one model (moesim train's out_dir: config.yaml,
// train_log.csv, traces/), each with its own policy. Per run, three sources give
// the same load metrics, all through metrics/load_metrics.hpp:
//   real     the training log's per-step loads (L<l>_load<e>, routed, dropped),
//            fed step by step through LayerMetrics::add_loads
//   replay   the run's recorded gate logits (traces/) replayed through the run's
//            own policy and knobs (sim/replay.hpp)
//   sim      the synthetic simulator with the run's E, k, T = batch x seq_len,
//            MoE layer count, steps, policy and knobs, gate aux/z loss
//            coefficients, and the calibrated parameters below
// The window: metrics over the last `window` training steps (late_*, dead over the
// window, starved), the replay over the recorded steps inside it (at least one
// is required). Metrics of runs whose configs differ only by seed (and where
// they write, log and trace) form a group and are averaged; the spread is the
// seed noise. Runs must have train.accum = 1 (one routed batch per step).
// A metric that is NaN in a source (RGR slope and rank persistence when the
// window covers more than half the run) leaves that group out of its Spearman
// (n says how many remain) and its claims untested.
//
// Calibration: on the reference group, a grid over gate.lr, world.skill_growth,
// stream.clusters, gate.init_scale and the aux-loss scale is scored by
//   loss = RMSE(Gini) / (mean real Gini + 0.01) + RMSE(MaxVio) / (mean real MaxVio + 0.01)
// between the simulated and the real per-batch trajectories (mean over layers,
// at the simulator's logged steps); the best point predicts every other group
// (held out: the reference is not scored). The world's performance is first
// matched to the reference's recorded per-expert performance (confirm.perf_*).
//
// Agreement: per metric, Spearman's rho between sim and real and between replay
// and real over the groups. Claims: the simulator's expected findings, each a
// comparison of one metric between two roles found from the run configs, tested
// in every source.
#include <cstdint>
#include <string>
#include <vector>

#include "sim/config.hpp"

namespace moesim {

struct ConfirmConfig {
  std::int64_t window = 100;             // confirm.window: late training steps the metrics cover
  std::vector<double> gate_lr = {0.03, 0.1, 0.3, 1.0};
  std::vector<double> skill_growth = {0.0, 0.05, 0.2};
  std::vector<double> clusters = {4, 8, 16};
  std::vector<double> init_scale = {0.5, 1.0, 2.0};
  // The simulator's gate.aux_loss = the run's moe.aux_loss_coef x aux_scale: how
  // strong the load-balancing gradient is against the gate's task signal differs
  // between the simulator's reward-learning gate and a trained router.
  std::vector<double> aux_scale = {1.0, 10.0, 100.0};
  // The simulator's performance matched to the reference run's recorded one
  // (a trained expert's output norm is neither in [0, 1] nor alike across
  // experts): confirm.perf_level scales the world's skills and noise to the
  // recorded mean; confirm.perf_spread sets world.perf_scale_spread to the
  // recorded spread of ln(performance) across experts.
  bool perf_level = false;
  bool perf_spread = false;
  std::string reference;                 // confirm.reference: group label (default: the top-k group with aux loss)
  std::uint64_t seed = 1;                // confirm.seed: a run trained with seed s is simulated with seed + s - 1
  int threads = 2;                       // simulations in parallel
};

// Sets a confirm.* key from its text; Error naming the key otherwise.
void set_confirm_key(ConfirmConfig& c, const std::string& key, const std::string& value);

// The metrics compared, in table order (names of metrics/load_metrics.hpp run metrics).
const std::vector<std::string>& confirm_metrics();

// A training run as confirm reads it.
struct TrainingRun {
  std::string dir, label;
  std::string policy;
  std::vector<std::pair<std::string, std::string>> knobs;
  int experts = 0, k = 0, tokens = 0;  // tokens per step and layer (batch x seq_len)
  std::vector<int> moe_layers;
  std::int64_t steps = 0;
  std::uint64_t seed = 0;
  double aux_loss = 0, z_loss = 0;
  std::string config;  // the config but the seed and bookkeeping keys: runs that share it form a group
};

// Reads DIR/config.yaml (Error naming the file and key).
TrainingRun read_training_run(const std::string& dir);

// Per source, per confirm_metrics(): the mean over layers.
struct SourceMetrics {
  std::vector<double> real, replay, sim;
};

struct GroupResult {
  std::string label, policy;
  std::vector<std::string> runs;
  SourceMetrics mean;   // over the group's runs
  std::vector<double> real_spread;  // max - min of the real metrics over the runs (0 with one run)
  bool reference = false;
  // Load share of each expert over training, mean over layers: real (per logged
  // step) and sim (per simulator time-series row), steps 1-based.
  std::vector<long> real_steps, sim_steps;
  std::vector<std::vector<double>> real_shares, sim_shares;  // [step][expert]
};

struct CalibrationPoint {
  double gate_lr, skill_growth, clusters, init_scale, aux_scale, loss;
};

struct Agreement {
  std::string metric;
  double rho_sim = 0, rho_replay = 0;
  int n = 0;
};

struct Claim {
  std::string text, metric, lower, higher;  // the claim: metric(lower) < metric(higher)
  bool tested = false;  // both roles present
  bool sim = false, replay = false, real = false;
  std::string why_untested;
};

struct ConfirmResult {
  ConfirmConfig cfg;
  std::vector<GroupResult> groups;
  std::vector<CalibrationPoint> calibration;  // every grid point, in grid order
  CalibrationPoint best{};
  double perf_level = 1.0, perf_spread = 0.0;  // recorded by the reference (confirm.perf_* say which are used)
  std::string reference;
  std::vector<Agreement> agreement;
  std::vector<Claim> claims;
  double seconds = 0;
};

// Runs everything above; progress lines go to log (may be null).
ConfirmResult confirm_runs(const std::vector<std::string>& dirs, const ConfirmConfig& cfg, std::FILE* log);

// Writes OUT/{metrics.csv, agreement.csv, claims.csv, calibration.csv,
// prediction.csv, summary.json, confirm.md, plots/}; files atomically.
void write_confirm(const ConfirmResult& r, const std::string& out, bool plots, const std::string& gnuplot,
                   std::vector<std::string>& warnings);

}  // namespace moesim
