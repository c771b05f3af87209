// The streaming per-layer accumulator on four hand-built batches: windows,
// dead experts, run aggregates, specialisation, persistence, rich-get-richer.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstring>
#include <vector>

#include "metrics/load_metrics.hpp"
#include "policies/rng.hpp"

using namespace moesim;

namespace {

Assignment batch(std::vector<std::int32_t> experts, std::int64_t dropped = 0) {
  Assignment a;
  a.reset(2, 2, 1);
  a.expert = std::move(experts);
  for (auto e : a.expert)
    if (e >= 0) ++a.counts[e];
  a.routed = 2;
  a.dropped = dropped;
  a.dropped_tokens = dropped;
  return a;
}

double metric(const std::vector<double>& v, const std::string& name) {
  const auto& names = LayerMetrics::run_metric_names();
  for (std::size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return v[i];
  FAIL("no metric " << name);
  return 0;
}

}  // namespace

TEST_CASE("layer metrics on four batches computed by hand", "[metrics]") {
  // E = 2 experts, C = 2 clusters, 4 steps, window 2 (early = steps 0-1, late = 2-3),
  // dead window 1. Each batch: token 0 of cluster 0, token 1 of cluster 1, k = 1.
  MetricsConfig mc;
  mc.window = 2;
  mc.dead_window = 1;
  LayerMetrics m(2, 2, 4, mc);
  const std::vector<std::int32_t> cl = {0, 1};
  // step  experts      perf       loads
  //  0    {0, 0}       {1, .5}    {2, 0}
  //  1    {0, 1}       {1, 1}     {1, 1}
  //  2    {0, drop}    {.5, -}    {1, 0}
  //  3    {1, 1}       {0, 1}     {0, 2}
  const std::vector<std::vector<std::int32_t>> ex = {{0, 0}, {0, 1}, {0, kNoExpert}, {1, 1}};
  const std::vector<std::vector<float>> pf = {{1, .5f}, {1, 1}, {.5f, 0}, {0, 1}};
  const std::vector<int> dead = {1, 0, 1, 1};  // step 0: expert 1; 2: expert 1; 3: expert 0
  for (int s = 0; s < 4; ++s) {
    const auto a = batch(ex[s], s == 2 ? 1 : 0);
    m.add_batch(s, a, cl.data(), pf[s].data());
    CHECK(m.dead() == dead[s]);
  }
  const auto st = m.batch_stats();  // step 3: loads {0, 2}
  CHECK(st.load_cv == Approx(1.0));
  CHECK(st.gini == Approx(0.5));
  CHECK(st.maxvio == Approx(1.0));
  CHECK(st.maxvio_global == Approx(1.0 / 7.0));  // cumulative {4, 3}
  CHECK(st.mean_perf == Approx(0.5));
  CHECK(st.drop_rate == 0.0);
  // Step 3's table: both tokens on expert 1, so knowing the expert says nothing of the cluster.
  CHECK(st.spec_norm == Approx(0.0).margin(1e-12));

  m.add_saturation(0.5);
  m.add_saturation(0.7);
  const std::vector<double> rep = {1, 3};
  const auto v = m.finish(&rep, 0.42);
  REQUIRE(v.size() == LayerMetrics::run_metric_names().size());
  CHECK(metric(v, "drop_rate") == Approx(0.125));        // 1 of 8 requests
  CHECK(metric(v, "token_drop_rate") == Approx(0.125));  // 1 of 8 tokens
  // Cumulative loads {4, 3}: mean 3.5, std 0.5.
  CHECK(metric(v, "load_cv") == Approx(1.0 / 7.0));
  CHECK(metric(v, "gini") == Approx(1.0 / 14.0));  // |4-3| * 2 / (2 * 4 * 3.5)
  CHECK(metric(v, "maxvio_global") == Approx(1.0 / 7.0));
  // Per batch MaxVio {1, 0, 1, 1}, CV {1, 0, 1, 1}, entropy {0, 1, 0, 0}.
  CHECK(metric(v, "maxvio_batch") == Approx(0.75));
  CHECK(metric(v, "load_cv_batch") == Approx(0.75));
  CHECK(metric(v, "entropy_batch") == Approx(0.25));
  // Late loads = {4, 3} - {3, 1} = {1, 2}.
  CHECK(metric(v, "late_gini") == Approx(1.0 / 6.0));
  CHECK(metric(v, "late_load_cv") == Approx(1.0 / 3.0));
  CHECK(metric(v, "late_maxvio") == Approx(1.0 / 3.0));
  CHECK(metric(v, "dead") == 1.0);
  CHECK(metric(v, "dead_mean") == Approx(0.75));
  // Late table (experts x clusters): e0 {1, 0}, e1 {1, 1}.
  // MI = 1/3 [log2(3/2) + log2(3/4) + log2(3/2)] = log2(27/16) / 3; H(cluster) = H(2/3, 1/3).
  const double mi = std::log2(27.0 / 16.0) / 3.0;
  const double hc = -(2.0 / 3) * std::log2(2.0 / 3) - (1.0 / 3) * std::log2(1.0 / 3);
  CHECK(metric(v, "spec_mi_bits") == Approx(mi));
  CHECK(metric(v, "spec_norm") == Approx(mi / hc));
  // Early {3, 1} vs late {1, 2}: the order flips.
  CHECK(metric(v, "rank_persistence") == Approx(-1.0));
  // Shares a = {3/4, 1/4}, b = {1/3, 2/3}: d = {-5/12, 5/12}; cov(a, d) = -5/48, var(a) = 1/16.
  CHECK(metric(v, "rgr_slope") == Approx(-5.0 / 3.0));
  CHECK(metric(v, "rgr_corr") == Approx(-1.0));
  // Served perf: 1 + .5 + 1 + 1 + .5 + 0 + 1 = 5 over 7 slots; late: 1.5 over 3.
  CHECK(metric(v, "mean_perf") == Approx(5.0 / 7.0));
  CHECK(metric(v, "late_mean_perf") == Approx(0.5));
  CHECK(metric(v, "saturation") == Approx(0.6));
  CHECK(metric(v, "rep_mean") == 2.0);
  CHECK(metric(v, "rep_min") == 1.0);
  CHECK(metric(v, "rep_max") == 3.0);
  CHECK(metric(v, "rep_std") == 1.0);
  CHECK(metric(v, "skill_mean") == 0.42);
  // Index {0, 1} against cumulative loads {4, 3}: two points falling, correlation -1.
  CHECK(metric(v, "index_load_corr") == Approx(-1.0));
  // Per batch loads {2,0}, {1,1}, {1,0}, {0,2}: one idle expert in three of four batches.
  CHECK(metric(v, "idle_batch") == Approx(0.75));
  // Late window = steps 2-3: batch MaxVio {1, 1}; 1 of 4 requests refused.
  CHECK(metric(v, "late_maxvio_batch") == Approx(1.0));
  CHECK(metric(v, "late_drop_rate") == Approx(0.25));
  // Without a reputation the statistics are NaN, not zeros that look like data.
  CHECK(std::isnan(metric(m.finish(nullptr, 0.0), "rep_mean")));
}

TEST_CASE("windows longer than half the run leave the early-vs-late metrics undefined (NaN)", "[metrics]") {
  MetricsConfig mc;
  mc.window = 100;
  mc.dead_window = 100;
  LayerMetrics m(2, 1, 2, mc);
  const std::vector<std::int32_t> cl = {0, 0};
  const std::vector<float> pf = {1, 1};
  m.add_batch(0, batch({0, 0}), cl.data(), pf.data());
  m.add_batch(1, batch({0, 1}), cl.data(), pf.data());
  const auto v = m.finish(nullptr, 0.0);
  // Early and late are both the whole run: comparing them would report persistence 1
  // and slope 0 as findings, so they are NaN.
  CHECK(std::isnan(metric(v, "rank_persistence")));
  CHECK(std::isnan(metric(v, "rgr_slope")));
  CHECK(std::isnan(metric(v, "rgr_corr")));
  // Late loads {3, 1} are still measured: sum |x_i - x_j| / (2 n^2 mean) = 4 / 16.
  CHECK(metric(v, "late_gini") == Approx(0.25));
  CHECK(metric(v, "dead") == 0.0);  // a dead expert needs a full window of silence
}

TEST_CASE("starved experts: late-window load share below a tenth of the fair share", "[metrics]") {
  // E = 4, fair share 1/4, threshold 1/40 = 0.025. Late loads {50, 48, 1, 1}: shares
  // {0.5, 0.48, 0.01, 0.01} -> 2 starved. An empty window starves everyone.
  CHECK(starved_experts(std::vector<double>{50, 48, 1, 1}) == 2);
  CHECK(starved_experts(std::vector<double>{10, 10, 10, 10}) == 0);
  CHECK(starved_experts(std::vector<double>{39, 1}) == 1);  // E = 2: 1/40 = 0.025 is below 0.05
  CHECK(starved_experts(std::vector<double>{19, 1}) == 0);  // 1/20 is the threshold itself: not below
  CHECK(starved_experts(std::vector<double>{0, 0, 0}) == 3);
}

TEST_CASE("layer metrics from logged loads (add_loads) equal those from the assignments", "[metrics]") {
  // The same four batches as above, known only by their per-expert loads and
  // slot counts (a training log): every load metric must agree.
  MetricsConfig mc;
  mc.window = 2;
  mc.dead_window = 1;
  LayerMetrics from_batches(2, 1, 4, mc), from_loads(2, 1, 4, mc);
  const std::vector<std::vector<std::int32_t>> ex = {{0, 0}, {0, 1}, {0, kNoExpert}, {1, 1}};
  const std::vector<std::vector<std::int64_t>> loads = {{2, 0}, {1, 1}, {1, 0}, {0, 2}};
  for (int s = 0; s < 4; ++s) {
    from_batches.add_batch(s, batch(ex[s], s == 2 ? 1 : 0), nullptr, nullptr);
    from_loads.add_loads(s, loads[s], {2, s == 2 ? 1 : 0, s == 2 ? 1 : 0, 2});
    CHECK(from_loads.dead() == from_batches.dead());
  }
  const auto a = from_batches.finish(nullptr, 0.0), b = from_loads.finish(nullptr, 0.0);
  for (const char* name : {"drop_rate", "token_drop_rate", "load_cv", "gini", "maxvio_global", "maxvio_batch",
                           "late_gini", "late_maxvio", "late_maxvio_batch", "late_drop_rate", "dead", "starved",
                           "idle_batch", "rgr_slope", "rank_persistence"}) {
    INFO(name);
    CHECK(metric(a, name) == metric(b, name));
  }
  CHECK(metric(b, "late_maxvio_batch") == Approx(1.0));
  CHECK(metric(b, "maxvio_batch") == Approx(0.75));
}

TEST_CASE("served_perf is the in-order double sum over served slots, whatever the dropped slots hold", "[metrics]") {
  // 21 slots: two full blocks of 8 and a tail of 5; dropped slots hold NaN,
  // infinity and large values that would show if they leaked into the sum.
  Assignment a;
  a.reset(21, 4, 1);
  std::vector<float> perf(21);
  double want = 0.0;
  std::int64_t n = 0;
  for (int i = 0; i < 21; ++i) {
    const bool served = i % 3 != 1;
    a.expert[static_cast<std::size_t>(i)] = served ? i % 4 : kNoExpert;
    perf[static_cast<std::size_t>(i)] = served ? 1.0f / static_cast<float>(i + 1) + 1e7f * static_cast<float>(i % 2)
                                               : (i % 2 ? NAN : (i % 5 ? INFINITY : 3e38f));
    if (served) {
      want += static_cast<double>(perf[static_cast<std::size_t>(i)]);
      ++n;
    }
  }
  const ServedPerf sp = served_perf(a, perf.data());
  CHECK(sp.n == n);
  CHECK(sp.n == 14);
  CHECK(std::memcmp(&sp.sum, &want, sizeof want) == 0);
  const ServedPerf none = served_perf(a, nullptr);
  CHECK(none.n == 0);
  CHECK(none.sum == 0.0);
}

TEST_CASE("served_perf gives the in-order chain's bits on long batches, exact-range or not", "[metrics]") {
  // A second implementation, the plain chain in slot order, against batches the
  // order-free path may take (values in [0.25, 2): fields 125 to 127; dropped
  // slots hold NaN and infinity, which must not leak into the sum) and
  // batches it must not: a 1 followed by 2^-53 terms, where the chain rounds
  // every add back to 1 and any other order sums the small terms first.
  auto chain = [](const Assignment& a, const std::vector<float>& perf) {
    ServedPerf sp;
    for (std::size_t i = 0; i < perf.size(); ++i)
      if (a.expert[i] >= 0) {
        sp.sum += static_cast<double>(perf[i]);
        ++sp.n;
      }
    return sp;
  };
  Rng rng(5);
  for (int slots : {8192 + 5, 4096, 37, 16}) {
    Assignment a;
    a.reset(slots, 8, 1);
    std::vector<float> perf(static_cast<std::size_t>(slots));
    for (int i = 0; i < slots; ++i) {
      const bool dropped = rng.uniform() < 0.1;
      a.expert[static_cast<std::size_t>(i)] = dropped ? kNoExpert : i % 8;
      perf[static_cast<std::size_t>(i)] =
          dropped ? (i % 2 ? NAN : INFINITY) : static_cast<float>(rng.uniform(0.25, 2.0));
    }
    const ServedPerf got = served_perf(a, perf.data()), want = chain(a, perf);
    INFO("slots " << slots);
    CHECK(got.n == want.n);
    CHECK(std::isfinite(got.sum));
    CHECK(std::memcmp(&got.sum, &want.sum, sizeof want.sum) == 0);
    std::fill(a.expert.begin(), a.expert.end(), 0);
    std::fill(perf.begin(), perf.end(), 0x1p-53f);
    perf[0] = 1.0f;
    const ServedPerf tiny = served_perf(a, perf.data()), tiny_want = chain(a, perf);
    CHECK(tiny_want.sum == 1.0);
    CHECK(std::memcmp(&tiny.sum, &tiny_want.sum, sizeof tiny.sum) == 0);
  }
}
