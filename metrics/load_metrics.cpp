#include "metrics/load_metrics.hpp"

#include <Eigen/Core>
#include <algorithm>
#include <bit>
#include <cmath>
#include <limits>
#include <numeric>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "metrics/exact_sum.hpp"
#include "policies/fast_math.hpp"

namespace moesim {

namespace {

double sum_of(std::span<const double> x) {
  double s = 0.0;
  for (double v : x) s += v;
  return s;
}

double plogp_bits(double p) { return p > 0.0 ? p * std::log2(p) : 0.0; }

}  // namespace

double load_cv(std::span<const double> x) {
  if (x.empty()) return 0.0;
  const double mu = sum_of(x) / static_cast<double>(x.size());
  if (!(mu > 0.0)) return 0.0;
  double var = 0.0;
  for (double v : x) var += (v - mu) * (v - mu);
  return std::sqrt(var / static_cast<double>(x.size())) / mu;
}

double gini(std::span<const double> x) {
  const std::size_t n = x.size();
  const double total = sum_of(x);
  if (n == 0 || !(total > 0.0)) return 0.0;
  std::vector<double> s(x.begin(), x.end());
  std::sort(s.begin(), s.end());
  // Sorted ascending, 1-based i: G = 2 sum_i i x_(i) / (n sum x) - (n + 1) / n.
  double weighted = 0.0;
  for (std::size_t i = 0; i < n; ++i) weighted += static_cast<double>(i + 1) * s[i];
  const double dn = static_cast<double>(n);
  return 2.0 * weighted / (dn * total) - (dn + 1.0) / dn;
}

double normalized_entropy(std::span<const double> x) {
  if (x.size() <= 1) return x.empty() ? 0.0 : 1.0;
  const double total = sum_of(x);
  if (!(total > 0.0)) return 0.0;
  double h = 0.0;
  for (double v : x)
    if (v > 0.0) h -= (v / total) * std::log(v / total);
  return h / std::log(static_cast<double>(x.size()));
}

double max_violation(std::span<const double> x) {
  if (x.empty()) return 0.0;
  const double mu = sum_of(x) / static_cast<double>(x.size());
  if (!(mu > 0.0)) return 0.0;
  return (*std::max_element(x.begin(), x.end()) - mu) / mu;
}

double entropy_bits(std::span<const double> counts) {
  const double total = sum_of(counts);
  if (!(total > 0.0)) return 0.0;
  double h = 0.0;
  for (double c : counts) h -= plogp_bits(c / total);
  return h;
}

double mutual_information_bits(std::span<const double> table, int rows, int cols) {
  const double total = sum_of(table);
  if (!(total > 0.0)) return 0.0;
  std::vector<double> pr(static_cast<std::size_t>(rows), 0.0), pc(static_cast<std::size_t>(cols), 0.0);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const double v = table[static_cast<std::size_t>(r) * cols + c];
      pr[r] += v;
      pc[c] += v;
    }
  double mi = 0.0;
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const double v = table[static_cast<std::size_t>(r) * cols + c];
      if (v > 0.0) mi += (v / total) * std::log2(v * total / (pr[r] * pc[c]));
    }
  return std::max(mi, 0.0);  // rounding can leave -1e-17 for independent tables
}

double specialisation(std::span<const double> table, int rows, int cols) {
  std::vector<double> pc(static_cast<std::size_t>(cols), 0.0);
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) pc[c] += table[static_cast<std::size_t>(r) * cols + c];
  const double h = entropy_bits(pc);
  if (!(h > 0.0)) return 0.0;
  return std::min(1.0, mutual_information_bits(table, rows, cols) / h);
}

std::vector<double> average_ranks(std::span<const double> x) {
  const std::size_t n = x.size();
  std::vector<std::size_t> idx(n);
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
  std::vector<double> rank(n);
  for (std::size_t i = 0; i < n;) {
    std::size_t j = i;
    while (j + 1 < n && x[idx[j + 1]] == x[idx[i]]) ++j;
    const double r = 0.5 * static_cast<double>(i + j) + 1.0;  // mean of 1-based ranks i+1..j+1
    for (std::size_t q = i; q <= j; ++q) rank[idx[q]] = r;
    i = j + 1;
  }
  return rank;
}

namespace {

struct Moments {
  double var_a = 0, var_b = 0, cov = 0;
};

Moments moments(std::span<const double> a, std::span<const double> b) {
  Moments m;
  const std::size_t n = std::min(a.size(), b.size());
  if (n == 0) return m;
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ma += a[i];
    mb += b[i];
  }
  ma /= static_cast<double>(n);
  mb /= static_cast<double>(n);
  for (std::size_t i = 0; i < n; ++i) {
    m.var_a += (a[i] - ma) * (a[i] - ma);
    m.var_b += (b[i] - mb) * (b[i] - mb);
    m.cov += (a[i] - ma) * (b[i] - mb);
  }
  return m;
}

std::vector<double> shares(std::span<const double> x) {
  const double total = sum_of(x);
  std::vector<double> s(x.size(), 0.0);
  if (total > 0.0)
    for (std::size_t i = 0; i < x.size(); ++i) s[i] = x[i] / total;
  return s;
}

}  // namespace

double pearson(std::span<const double> a, std::span<const double> b) {
  const auto m = moments(a, b);
  if (!(m.var_a > 0.0) || !(m.var_b > 0.0)) return 0.0;
  return std::clamp(m.cov / std::sqrt(m.var_a * m.var_b), -1.0, 1.0);
}

double spearman(std::span<const double> a, std::span<const double> b) {
  const auto ra = average_ranks(a), rb = average_ranks(b);
  return pearson(ra, rb);
}

double rich_get_richer_slope(std::span<const double> early, std::span<const double> late) {
  const auto a = shares(early), b = shares(late);
  std::vector<double> d(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) d[i] = b[i] - a[i];
  const auto m = moments(a, d);
  return m.var_a > 0.0 ? m.cov / m.var_a : 0.0;
}

double rich_get_richer_corr(std::span<const double> early, std::span<const double> late) {
  const auto a = shares(early), b = shares(late);
  std::vector<double> d(a.size());
  for (std::size_t i = 0; i < a.size(); ++i) d[i] = b[i] - a[i];
  return pearson(a, d);
}

double router_saturation(const float* logits, int tokens, int experts) {
  if (tokens <= 0 || experts <= 0) return 0.0;
  // The policies' fixed-order row max and exp sum (in double): the same bits on
  // every build, 16 rows at a time.
  double sum = 0.0;
  int t = 0;
  float m[16];
  double s[16];
  for (; t + 16 <= tokens; t += 16) {
    row_max_sum_exp16(logits + static_cast<std::size_t>(t) * experts, experts, m, s);
    for (double v : s) sum += 1.0 / v;
  }
  for (; t < tokens; ++t) {
    const float* z = logits + static_cast<std::size_t>(t) * experts;
    sum += 1.0 / row_sum_exp(z, experts, row_max(z, experts));
  }
  return sum / tokens;
}

VectorStats vector_stats(std::span<const double> x) {
  VectorStats s;
  if (x.empty()) return s;
  s.min = *std::min_element(x.begin(), x.end());
  s.max = *std::max_element(x.begin(), x.end());
  s.mean = sum_of(x) / static_cast<double>(x.size());
  double var = 0.0;
  for (double v : x) var += (v - s.mean) * (v - s.mean);
  s.std = std::sqrt(var / static_cast<double>(x.size()));
  return s;
}

LayerMetrics::LayerMetrics(int experts, int clusters, std::int64_t steps, const MetricsConfig& cfg)
    : E_(experts),
      C_(clusters),
      window_(std::min(cfg.window, steps)),
      dead_window_(cfg.dead_window),
      late_start_(steps - std::min(cfg.window, steps)) {
  const auto E = static_cast<std::size_t>(experts);
  table_.assign(E * static_cast<std::size_t>(clusters), 0);
  loads_.assign(E, 0.0);
  cum_.assign(E, 0.0);
  early_.assign(E, 0.0);
  late_base_.assign(E, 0.0);
  late_table_.assign(table_.size(), 0.0);
  index_.resize(E);
  for (std::size_t e = 0; e < E; ++e) index_[e] = static_cast<double>(e);
  last_served_.assign(E, -1);
}

namespace {

// The in-order chain: an empty slot adds +0.0, which leaves the sum's bits as
// they are (it never holds -0.0). Masks, not a branch: drops are unpredictable.
// The adds stay one chain in slot order; only the loads, conversions and masks
// run 8 wide.
void served_chain(const std::int32_t* ex, const float* perf, std::size_t slots, ServedPerf& sp) {
  std::size_t i = 0;
#if defined(__AVX512F__) && defined(__AVX512VL__)
  const __m256i zero = _mm256_setzero_si256();
  for (; i + 8 <= slots; i += 8) {
    const __mmask8 m = _mm256_cmpge_epi32_mask(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(ex + i)), zero);
    const __m512d v = _mm512_maskz_cvtps_pd(m, _mm256_loadu_ps(perf + i));
    alignas(64) double lane[8];
    _mm512_store_pd(lane, v);
    for (double x : lane) sp.sum += x;
    sp.n += std::popcount(static_cast<unsigned>(m));
  }
#endif
  for (; i < slots; ++i) {
    const bool served = ex[i] >= 0;
    const auto keep = std::uint64_t{0} - static_cast<std::uint64_t>(served);
    sp.sum += std::bit_cast<double>(std::bit_cast<std::uint64_t>(static_cast<double>(perf[i])) & keep);
    sp.n += served;
  }
}

#if defined(__AVX512F__)
// The same sum in 8 double lanes, for a batch where served_sums_exact() holds:
// every partial sum is exact there, so the lanes give the chain's bits.
void served_lanes(const std::int32_t* ex, const float* perf, std::size_t slots, ServedPerf& sp) {
  __m512d acc[2] = {_mm512_setzero_pd(), _mm512_setzero_pd()};
  std::int64_t n = 0;
  std::size_t i = 0;
  for (; i + 16 <= slots; i += 16) {
    const __mmask16 m = _mm512_cmpge_epi32_mask(_mm512_loadu_si512(ex + i), _mm512_setzero_si512());
    const __m512 v = _mm512_maskz_loadu_ps(m, perf + i);
    acc[0] = _mm512_add_pd(acc[0], _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    acc[1] = _mm512_add_pd(acc[1], _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    n += std::popcount(static_cast<unsigned>(m));
  }
  double s = _mm512_reduce_add_pd(_mm512_add_pd(acc[0], acc[1]));
  for (; i < slots; ++i)
    if (ex[i] >= 0) {
      s += static_cast<double>(perf[i]);
      ++n;
    }
  sp.sum = s;  // never -0: the lanes start at +0, and an exact cancellation gives +0
  sp.n = n;
}
#endif

}  // namespace

ServedPerf served_perf(const Assignment& a, const float* perf) {
  ServedPerf sp;
  if (!perf) return sp;
  const std::size_t slots = a.expert.size();
  const std::int32_t* ex = a.expert.data();
#if defined(__AVX512F__)
  // The chain is one dependent add a slot (4 cycles each); a batch whose
  // exponent range allows it is summed in lanes instead, with the same bits.
  if (served_sums_exact(ex, perf, slots)) {
    served_lanes(ex, perf, slots, sp);
    return sp;
  }
#endif
  served_chain(ex, perf, slots, sp);
  return sp;
}

void LayerMetrics::add_batch(std::int64_t step, const Assignment& a, const std::int32_t* cluster,
                             const ServedPerf& sp) {
  // Four interleaved tables (slot i into table i mod 4), so a hot expert's
  // increments do not wait on each other through memory; dropped slots go to a
  // spare entry at the end, with no branch.
  const std::size_t EC = table_.size();
  part_.assign(4 * EC + 1, 0);
  std::uint32_t* part = part_.data();
  const std::int32_t* ex = a.expert.data();
  const auto C = static_cast<std::size_t>(C_);
  const std::size_t width = static_cast<std::size_t>(a.width), spare = 4 * EC;
  for (int t = 0; t < a.tokens; ++t) {
    const std::size_t c = cluster ? static_cast<std::size_t>(cluster[t]) : 0;
    const std::size_t base = static_cast<std::size_t>(t) * width;
    for (std::size_t j = 0; j < width; ++j) {
      const auto e = ex[base + j];
      const std::size_t at = ((base + j) & 3) * EC + static_cast<std::size_t>(e) * C + c;
      // A mask, not a select: GCC turns the select into a branch.
      const std::size_t keep = std::size_t{0} - static_cast<std::size_t>(e >= 0);
      ++part[(at & keep) | (spare & ~keep)];
    }
  }
  for (std::size_t i = 0; i < EC; ++i)
    table_[i] = static_cast<std::int64_t>(part[i]) + part[EC + i] + part[2 * EC + i] + part[3 * EC + i];
  close_batch(step, {a.routed, a.dropped, a.dropped_tokens, a.tokens}, sp.sum, sp.n);
}

void LayerMetrics::add_loads(std::int64_t step, std::span<const std::int64_t> loads, const SlotCounts& n) {
  std::fill(table_.begin(), table_.end(), 0);
  for (int e = 0; e < E_ && e < static_cast<int>(loads.size()); ++e) table_[static_cast<std::size_t>(e) * C_] = loads[e];
  close_batch(step, n, 0.0, 0);
}

void LayerMetrics::close_batch(std::int64_t step, const SlotCounts& n, double psum, std::int64_t pn) {
  step_ = step;
  for (int e = 0; e < E_; ++e) {
    std::int64_t served = 0;
    for (int c = 0; c < C_; ++c) served += table_[static_cast<std::size_t>(e) * C_ + c];
    loads_[e] = static_cast<double>(served);
    cum_[e] += loads_[e];
    if (served > 0) last_served_[e] = step;
    idle_sum_ += served == 0;
  }
  if (step == window_ - 1) early_ = cum_;
  if (step == late_start_ - 1) late_base_ = cum_;
  const double maxvio = max_violation(loads_);
  if (step >= late_start_) {
    for (std::size_t i = 0; i < table_.size(); ++i) late_table_[i] += static_cast<double>(table_[i]);
    late_perf_sum_ += psum;
    late_perf_n_ += pn;
    late_maxvio_sum_ += maxvio;
    ++late_steps_;
    late_routed_ += n.routed;
    late_dropped_ += n.dropped;
  }
  batch_perf_sum_ = psum;
  batch_perf_n_ = pn;
  perf_sum_ += psum;
  perf_n_ += pn;
  batch_ = n;
  routed_ += n.routed;
  dropped_ += n.dropped;
  dropped_tokens_ += n.dropped_tokens;
  tokens_ += n.tokens;
  cv_sum_ += load_cv(loads_);
  maxvio_sum_ += maxvio;
  entropy_sum_ += normalized_entropy(loads_);
  dead_sum_ += dead();
  ++batches_;
}

void LayerMetrics::add_saturation(double s) {
  saturation_sum_ += s;
  ++saturation_n_;
}

int LayerMetrics::dead() const {
  // Dead: no load in the trailing window (step - dead_window, step]; never before a full window.
  int n = 0;
  for (auto last : last_served_) n += last <= step_ - dead_window_;
  return n;
}

static double ratio(double num, double den) { return den > 0.0 ? num / den : 0.0; }

int starved_experts(std::span<const double> loads) {
  double total = 0;
  for (double x : loads) total += x;
  int n = 0;
  for (double x : loads) n += total > 0 ? x / total < 0.1 / static_cast<double>(loads.size()) : 1;
  return n;
}

BatchStats LayerMetrics::batch_stats() const {
  BatchStats s;
  s.load_cv = load_cv(loads_);
  s.gini = gini(loads_);
  s.entropy = normalized_entropy(loads_);
  s.maxvio = max_violation(loads_);
  s.maxvio_global = max_violation(cum_);
  s.drop_rate = ratio(static_cast<double>(batch_.dropped), static_cast<double>(batch_.routed));
  s.token_drop_rate = ratio(static_cast<double>(batch_.dropped_tokens), static_cast<double>(batch_.tokens));
  s.dead = dead();
  s.mean_perf = ratio(batch_perf_sum_, static_cast<double>(batch_perf_n_));
  std::vector<double> t(table_.begin(), table_.end());
  s.spec_norm = specialisation(t, E_, C_);
  return s;
}

const std::vector<RunMetric>& run_metrics() {
  // name, heading, headline position (0 = none), better (-1 lower, +1 higher, 0 neither), display scale
  static const std::vector<RunMetric> m = {
      {"drop_rate", "drop %", 7, -1, 100.0},
      {"token_drop_rate", "tokens dropped %", 0, -1, 100.0},
      {"load_cv", "load CV", 0, -1, 1.0},
      {"gini", "Gini", 0, -1, 1.0},
      {"entropy", "load entropy", 0, 1, 1.0},
      {"maxvio_global", "MaxVio global", 3, -1, 1.0},
      {"maxvio_batch", "MaxVio batch", 2, -1, 1.0},
      {"load_cv_batch", "load CV batch", 0, -1, 1.0},
      {"entropy_batch", "load entropy batch", 0, 1, 1.0},
      {"late_gini", "Gini (late)", 1, -1, 1.0},
      {"late_load_cv", "load CV (late)", 4, -1, 1.0},
      {"late_maxvio", "MaxVio (late)", 0, -1, 1.0},
      {"late_maxvio_batch", "MaxVio batch (late)", 0, -1, 1.0},
      {"late_drop_rate", "drop % (late)", 0, -1, 100.0},
      {"dead", "dead experts", 5, -1, 1.0},
      {"dead_mean", "dead experts (mean)", 0, -1, 1.0},
      {"spec_mi_bits", "spec. MI (bits)", 8, 0, 1.0},
      {"spec_norm", "spec. (normalised)", 0, 0, 1.0},
      {"rank_persistence", "rank persistence", 0, 0, 1.0},
      {"rgr_slope", "RGR slope", 9, -1, 1.0},
      {"rgr_corr", "RGR corr.", 0, -1, 1.0},
      {"mean_perf", "mean perf", 10, 1, 1.0},
      {"late_mean_perf", "mean perf (late)", 0, 1, 1.0},
      {"saturation", "router saturation", 0, 0, 1.0},
      {"rep_mean", "reputation mean", 0, 0, 1.0},
      {"rep_min", "reputation min", 0, 0, 1.0},
      {"rep_max", "reputation max", 0, 0, 1.0},
      {"rep_std", "reputation std", 0, 0, 1.0},
      {"skill_mean", "mean skill", 0, 1, 1.0},
      {"index_load_corr", "index-load corr.", 0, 0, 1.0},
      {"idle_batch", "idle experts per batch", 0, -1, 1.0},
      {"starved", "starved experts", 6, -1, 1.0},
  };
  return m;
}

std::vector<RunMetric> headline_metrics() {
  std::vector<RunMetric> h;
  for (const auto& m : run_metrics())
    if (m.headline > 0) h.push_back(m);
  std::sort(h.begin(), h.end(), [](const RunMetric& a, const RunMetric& b) { return a.headline < b.headline; });
  return h;
}

const std::vector<std::string>& LayerMetrics::run_metric_names() {
  static const std::vector<std::string> names = [] {
    std::vector<std::string> n;
    for (const auto& m : run_metrics()) n.emplace_back(m.name);
    return n;
  }();
  return names;
}

std::vector<double> LayerMetrics::finish(const std::vector<double>* reputation, double mean_skill) const {
  std::vector<double> late(static_cast<std::size_t>(E_));
  for (int e = 0; e < E_; ++e) late[e] = cum_[e] - late_base_[e];
  // Averages are over the batches added (every step for a simulated run; the
  // recorded steps for a replay or a training log that skips steps).
  const double n = static_cast<double>(std::max<std::int64_t>(batches_, 1));
  const double nan = std::numeric_limits<double>::quiet_NaN();
  VectorStats rep{nan, nan, nan, nan};
  if (reputation && !reputation->empty()) rep = vector_stats(*reputation);
  // Early and late windows that share steps compare a window with itself.
  const bool windows_overlap = 2 * window_ > step_ + 1;
  std::vector<double> v = {
      ratio(static_cast<double>(dropped_), static_cast<double>(routed_)),
      ratio(static_cast<double>(dropped_tokens_), static_cast<double>(tokens_)),
      load_cv(cum_),
      gini(cum_),
      normalized_entropy(cum_),
      max_violation(cum_),
      maxvio_sum_ / n,
      cv_sum_ / n,
      entropy_sum_ / n,
      gini(late),
      load_cv(late),
      max_violation(late),
      late_steps_ > 0 ? late_maxvio_sum_ / static_cast<double>(late_steps_) : 0.0,
      ratio(static_cast<double>(late_dropped_), static_cast<double>(late_routed_)),
      static_cast<double>(dead()),
      dead_sum_ / n,
      mutual_information_bits(late_table_, E_, C_),
      specialisation(late_table_, E_, C_),
      windows_overlap ? nan : spearman(early_, late),
      windows_overlap ? nan : rich_get_richer_slope(early_, late),
      windows_overlap ? nan : rich_get_richer_corr(early_, late),
      ratio(perf_sum_, static_cast<double>(perf_n_)),
      ratio(late_perf_sum_, static_cast<double>(late_perf_n_)),
      saturation_n_ > 0 ? saturation_sum_ / static_cast<double>(saturation_n_) : nan,
      rep.mean,
      rep.min,
      rep.max,
      rep.std,
      mean_skill,
      pearson(index_, cum_),
      idle_sum_ / n,
      static_cast<double>(starved_experts(late)),
  };
  return v;
}

}  // namespace moesim
