#pragma once
// Load metrics: pure functions on small arrays (each testable by hand), and a
// streaming per-layer accumulator whose memory does not grow with the steps.
// One implementation for every source: simulated runs (sim/), replayed traces
// (sim/, stream.kind=replay) and training logs (torch_backend/ writes the
// per-step columns with these functions; `moesim confirm` feeds the logged loads
// through LayerMetrics::add_loads), so a number means the same thing everywhere.
//
// Definitions (x_i = load of expert i, n = E, mu = mean load):
//   load CV            sqrt(mean (x_i - mu)^2) / mu                  (0 when mu = 0)
//   Gini               sum_i sum_j |x_i - x_j| / (2 n^2 mu)          (0 when mu = 0)
//   entropy            -sum p_i ln p_i / ln n, p = x / sum x         (0 when sum = 0; 1 when n = 1)
//   MaxVio             (max_i x_i - mu) / mu                          (0 when mu = 0)
//   MI (bits)          sum_{c,e} p(c,e) log2( p(c,e) / (p(c) p(e)) ) over a count table
//   specialisation     MI / H(cluster)                                (0 when H(cluster) = 0)
//   Spearman           Pearson correlation of the ranks, ties get their average rank
//                      (0 when either side is constant: no ranking to persist)
//   rich-get-richer    with a_i = early-window load share and b_i = late-window share,
//                      the OLS slope of (b_i - a_i) on a_i = beta - 1, beta the slope of
//                      b on a. > 0: shares diverge (rich get richer); 0: shares persist;
//                      -1: shares equalise completely. 0 when early shares are all equal.
//   saturation         mean over tokens of max_e softmax(z)_e of the clean gate logits
//   starved            experts whose share of the late window's load is below a tenth
//                      of the fair share 1/E (all of them when the window served nothing)
// The early/late comparisons (rank persistence, rich-get-richer slope and
// correlation) are NaN when 2 * metrics.window exceeds the run: the windows would
// overlap and compare a span with itself.
//   idle_batch         experts that served nothing in a batch, averaged over the run
//                      (an oscillating router leaves many idle while others overflow)
//   late_maxvio_batch  MaxVio of each batch, averaged over the late window
//   late_drop_rate     refused slot requests / slot requests over the late window
//   index_load_corr    Pearson correlation of the expert index with its load over the
//                      run: < 0 when low-index experts carry more (lower-index tie
//                      breaking of bf16 ties), ~0 when the index does not matter
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "policies/types.hpp"

namespace moesim {

// The windows of the run metrics (metrics.* keys of a scenario).
struct MetricsConfig {
  std::int64_t window = 100;
  std::int64_t dead_window = 100;
};

double load_cv(std::span<const double> x);
double gini(std::span<const double> x);  // sorts a copy: O(n log n)
double normalized_entropy(std::span<const double> x);
double max_violation(std::span<const double> x);
// Shannon entropy in bits of the distribution proportional to counts.
double entropy_bits(std::span<const double> counts);
// table: rows x cols counts, row-major; symmetric in rows and columns.
double mutual_information_bits(std::span<const double> table, int rows, int cols);
// MI / entropy of the column marginal (the simulator passes experts x clusters).
double specialisation(std::span<const double> table, int rows, int cols);
std::vector<double> average_ranks(std::span<const double> x);  // 1-based
double pearson(std::span<const double> a, std::span<const double> b);
double spearman(std::span<const double> a, std::span<const double> b);
// a, b: early and late loads (any scale; converted to shares).
double rich_get_richer_slope(std::span<const double> early, std::span<const double> late);
double rich_get_richer_corr(std::span<const double> early, std::span<const double> late);
// Mean over tokens of the largest softmax probability, 1 / sum_e exp(z_te - max_e z_te):
// 1 for a router sure of one expert, 1/E for a flat one.
double router_saturation(const float* logits, int tokens, int experts);
int starved_experts(std::span<const double> loads);

// A run metric: its CSV column, its heading in reports, its place among the
// headline metrics reports and `moesim run` show (0 = not shown), which way is
// better (-1 lower, +1 higher, 0 neither: the report's highlights), and the factor
// it is shown with (rates as percentages). run_metrics() is the order of
// metrics.csv and runs.csv; headline_metrics() the headline ones in their order.
struct RunMetric {
  const char* name;
  const char* heading;
  int headline;
  int better;
  double scale;
};
const std::vector<RunMetric>& run_metrics();
std::vector<RunMetric> headline_metrics();

struct VectorStats {
  double mean = 0, min = 0, max = 0, std = 0;  // population std
};
VectorStats vector_stats(std::span<const double> x);

// What a time-series row reports about one layer at one step.
struct BatchStats {
  double load_cv = 0, gini = 0, entropy = 0, maxvio = 0, maxvio_global = 0;
  double drop_rate = 0, token_drop_rate = 0, dead = 0, mean_perf = 0, spec_norm = 0;
};

// Performance summed over a batch's served slots (expert >= 0), in slot order
// from +0 in double, and their number: the gate's baseline and the metrics both
// read it, so a step computes it once. perf: nullptr = none observed, {0, 0}.
struct ServedPerf {
  double sum = 0.0;
  std::int64_t n = 0;
};
ServedPerf served_perf(const Assignment& a, const float* perf);

// Streaming metrics of one layer over a run of known length.
// Windows: early = steps [0, w), late = steps [S - w, S), w = min(metrics.window, S).
// Steps are the 0-based indices of the batches added (a replay numbers its
// recorded steps 0, 1, ...), and per-batch averages are over the batches added.
class LayerMetrics {
 public:
  LayerMetrics(int experts, int clusters, std::int64_t steps, const MetricsConfig& cfg);

  // One batch: counts per (expert, cluster) and performance of the served slots.
  // cluster: nullptr = one cluster; perf: nullptr = no performance observed.
  void add_batch(std::int64_t step, const Assignment& a, const std::int32_t* cluster, const float* perf) {
    add_batch(step, a, cluster, served_perf(a, perf));
  }
  // The same with the served performance already summed.
  void add_batch(std::int64_t step, const Assignment& a, const std::int32_t* cluster, const ServedPerf& sp);
  // Slot counts of a batch known only by its per-expert loads (a training log).
  struct SlotCounts {
    std::int64_t routed = 0, dropped = 0, dropped_tokens = 0, tokens = 0;
  };
  // One batch from per-expert served slots and its counts (no clusters, no perf).
  void add_loads(std::int64_t step, std::span<const std::int64_t> loads, const SlotCounts& n);
  // Router saturation of a logged step (O(T E), so only on logged steps).
  void add_saturation(double s);

  // The last batch: served slots per (expert, cluster), row-major E x C.
  const std::vector<std::int64_t>& batch_table() const { return table_; }
  const std::vector<double>& batch_loads() const { return loads_; }
  int dead() const;  // at the last added step
  BatchStats batch_stats() const;  // of the last added step (sorts for the Gini)

  // Run metrics in run_metric_names() order, after the last step. reputation:
  // the policy's final "reputation" vector, or nullptr.
  std::vector<double> finish(const std::vector<double>* reputation, double mean_skill) const;
  static const std::vector<std::string>& run_metric_names();

 private:
  void close_batch(std::int64_t step, const SlotCounts& n, double psum, std::int64_t pn);

  int E_, C_;
  std::int64_t window_, dead_window_, late_start_;
  std::int64_t step_ = -1;
  std::vector<std::int64_t> table_;
  std::vector<std::uint32_t> part_;  // add_batch's interleaved counts
  std::vector<double> loads_, cum_, early_, late_base_, late_table_, index_;
  std::vector<std::int64_t> last_served_;
  std::int64_t routed_ = 0, dropped_ = 0, dropped_tokens_ = 0, tokens_ = 0;
  SlotCounts batch_;
  std::int64_t batches_ = 0, late_steps_ = 0, late_routed_ = 0, late_dropped_ = 0;
  double late_maxvio_sum_ = 0;
  double perf_sum_ = 0, late_perf_sum_ = 0, batch_perf_sum_ = 0;
  std::int64_t perf_n_ = 0, late_perf_n_ = 0, batch_perf_n_ = 0;
  double cv_sum_ = 0, maxvio_sum_ = 0, entropy_sum_ = 0, dead_sum_ = 0, idle_sum_ = 0;
  double saturation_sum_ = 0;
  std::int64_t saturation_n_ = 0;
};

}  // namespace moesim
