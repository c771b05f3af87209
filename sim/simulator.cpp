#include "sim/simulator.hpp"

#include <chrono>
#include <cmath>
#include <limits>
#include <memory>

#include "policies/registry.hpp"
#include "common/csv.hpp"
#include "sim/gate.hpp"
#include "sim/replay.hpp"
#include "trace/trace_reader.hpp"
#include "metrics/load_metrics.hpp"
#include "sim/stream.hpp"
#include "sim/world.hpp"

namespace moesim {

namespace {

// Everything one layer owns; layers share only the token batch.
struct Layer {
  Gate gate;
  World world;
  std::unique_ptr<Policy> policy;
  Rng rng;
  LayerMetrics metrics;
  Assignment assignment;
  std::vector<float> perf;

  Layer(const SimConfig& c, std::uint64_t seed)
      : gate(c.gate, c.experts, c.stream.dim, seed),
        world(c.world, c.experts, c.stream.clusters, seed),
        policy(make_policy(c.policy.name, c.experts, c.k, c.policy.knobs)),
        rng(derive_seed(seed, "policy")),
        metrics(c.experts, c.stream.clusters, c.steps, c.metrics) {}
};

}  // namespace

std::vector<std::pair<std::string, double>> RunResult::flat() const {
  std::vector<std::pair<std::string, double>> out;
  for (std::size_t i = 0; i < metric_names.size(); ++i) out.emplace_back(metric_names[i], mean[i]);
  for (std::size_t l = 0; l < layers.size(); ++l)
    for (std::size_t i = 0; i < metric_names.size(); ++i)
      out.emplace_back("layer" + std::to_string(l) + "." + metric_names[i], layers[l][i]);
  return out;
}

Simulator::Simulator(SimConfig cfg) : cfg_(std::move(cfg)) {
  resolve_replay(cfg_);
  validate(cfg_);
  const auto probe = make_policy(cfg_.policy.name, cfg_.experts, cfg_.k, cfg_.policy.knobs);
  has_reputation_ = probe->reputation() != nullptr;
  columns_ = {"step",    "layer",    "load_cv",   "gini",       "entropy",  "maxvio",  "maxvio_global",
              "drop_rate", "token_drop_rate", "dead", "mean_perf", "saturation", "spec_norm", "skill_mean",
              "baseline", "rep_mean", "rep_min",   "rep_max",    "rep_std"};
  for (int e = 0; e < cfg_.experts; ++e) columns_.push_back("share_" + std::to_string(e));
  if (has_reputation_)
    for (int e = 0; e < cfg_.experts; ++e) columns_.push_back("rep_" + std::to_string(e));
}

namespace {

// One time-series row (Simulator::timeseries_columns() order).
void emit_row(const RunHooks& hooks, std::vector<double>& row, std::int64_t step, int layer, const LayerMetrics& m,
              double saturation, double skill, double baseline, const std::vector<double>* rep, int E,
              bool has_reputation) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const BatchStats s = m.batch_stats();
  VectorStats rs{nan, nan, nan, nan};
  if (rep && !rep->empty()) rs = vector_stats(*rep);
  row.assign({static_cast<double>(step), static_cast<double>(layer), s.load_cv, s.gini, s.entropy, s.maxvio,
              s.maxvio_global, s.drop_rate, s.token_drop_rate, s.dead, s.mean_perf, saturation, s.spec_norm, skill,
              baseline, rs.mean, rs.min, rs.max, rs.std});
  const auto& loads = m.batch_loads();
  double total = 0.0;
  for (double x : loads) total += x;
  for (double x : loads) row.push_back(total > 0.0 ? x / total : 0.0);
  if (has_reputation)
    for (int e = 0; e < E; ++e) row.push_back(rep && e < static_cast<int>(rep->size()) ? (*rep)[e] : nan);
  hooks.on_row(row);
}

// Per-layer run metrics and their mean over the layers.
RunResult collect(const SimConfig& c, const std::vector<std::vector<double>>& per_layer) {
  RunResult r;
  r.metric_names = LayerMetrics::run_metric_names();
  r.mean.assign(r.metric_names.size(), 0.0);
  for (const auto& v : per_layer) {
    r.layers.push_back(v);
    for (std::size_t i = 0; i < r.mean.size(); ++i) r.mean[i] += v[i] / static_cast<double>(per_layer.size());
  }
  r.routings = c.steps * c.layers * static_cast<std::int64_t>(c.batch) * c.k;
  return r;
}

// What each replayed layer owns.
struct ReplayLayer {
  std::unique_ptr<Policy> policy;
  Rng rng;
  LayerMetrics metrics;
  Assignment assignment;
  std::vector<float> logits, expert_perf, last_perf, perf;
};

// Per served slot: the recording's mean performance of its expert (unserved
// experts by stream.unserved_perf), or the slot's router probability when the
// trace records no performance.
void replay_perf(const SimConfig& c, bool recorded, ReplayLayer& L) {
  const Assignment& a = L.assignment;
  const int E = c.experts;
  L.perf.assign(a.expert.size(), 0.0f);
  if (!recorded) {
    for (int t = 0; t < a.tokens; ++t) {
      const float* z = L.logits.data() + static_cast<std::size_t>(t) * E;
      float mx = z[0];
      for (int e = 1; e < E; ++e) mx = std::max(mx, z[e]);
      double sum = 0.0;
      for (int e = 0; e < E; ++e) sum += std::exp(static_cast<double>(z[e] - mx));
      for (int j = 0; j < a.width; ++j) {
        const auto e = a.at(t, j);
        if (e >= 0) L.perf[static_cast<std::size_t>(t) * a.width + j] = static_cast<float>(std::exp(static_cast<double>(z[e] - mx)) / sum);
      }
    }
    return;
  }
  double sum = 0.0;
  int n = 0;
  for (float v : L.expert_perf)
    if (std::isfinite(v)) sum += v, ++n;
  const float mean = n > 0 ? static_cast<float>(sum / n) : 0.0f;
  std::vector<float> per(static_cast<std::size_t>(E));
  for (int e = 0; e < E; ++e) {
    const float v = L.expert_perf[e];
    if (std::isfinite(v)) {
      per[e] = v;
      L.last_perf[e] = v;
    } else if (c.stream.unserved_perf == "zero") {
      per[e] = 0.0f;
    } else if (c.stream.unserved_perf == "last" && std::isfinite(L.last_perf[e])) {
      per[e] = L.last_perf[e];
    } else {
      per[e] = mean;
    }
  }
  for (std::size_t s = 0; s < a.expert.size(); ++s)
    if (a.expert[s] >= 0) L.perf[s] = per[static_cast<std::size_t>(a.expert[s])];
}

}  // namespace

RunResult Simulator::run(const RunHooks& hooks) const {
  const auto t0 = std::chrono::steady_clock::now();
  RunResult r = cfg_.stream.kind == "replay" ? run_replay(hooks) : run_synthetic(hooks);
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

RunResult Simulator::run_synthetic(const RunHooks& hooks) const {
  const SimConfig& c = cfg_;
  const int T = c.batch, E = c.experts, d = c.stream.dim;
  TokenStream stream(c.stream, derive_seed(c.seed, "stream"));
  std::vector<std::unique_ptr<Layer>> layers;
  for (int l = 0; l < c.layers; ++l)
    layers.push_back(std::make_unique<Layer>(c, derive_seed(c.seed, "layer." + std::to_string(l))));

  TokenBatch batch;
  std::vector<double> row;
  row.reserve(columns_.size());
  for (std::int64_t step = 0; step < c.steps; ++step) {
    stream.next(T, batch);
    const bool logged = step % c.log_every == 0 || step == c.steps - 1;
    for (int l = 0; l < c.layers; ++l) {
      Layer& L = *layers[l];
      L.gate.forward(batch.x);
      RouteInput in{L.gate.seen().data(), T,  E, batch.token.data(), L.gate.input(batch.x).data(),
                    L.gate.weight().data(), d};
      L.policy->route(in, L.rng, L.assignment);
      const Assignment& a = L.assignment;
      L.perf.resize(a.expert.size());
      L.world.perform(a, batch.cluster.data(), L.perf.data());
      L.policy->observe(a, L.perf.data());
      const ServedPerf sp = served_perf(a, L.perf.data());
      L.gate.update(batch.x, a, L.perf.data(), sp);
      L.metrics.add_batch(step, a, batch.cluster.data(), sp);
      L.world.learn(L.metrics.batch_table().data(), T, c.k);
      if (!logged) continue;
      const double sat = router_saturation(L.gate.clean().data(), T, E);
      L.metrics.add_saturation(sat);
      if (hooks.on_row)
        emit_row(hooks, row, step, l, L.metrics, sat, L.world.mean_skill(), L.gate.baseline(), L.policy->reputation(),
                 E, has_reputation_);
    }
    if (hooks.on_progress) hooks.on_progress(step + 1, c.steps);
  }
  std::vector<std::vector<double>> per_layer;
  for (auto& L : layers) per_layer.push_back(L->metrics.finish(L->policy->reputation(), L->world.mean_skill()));
  return collect(c, per_layer);
}

RunResult Simulator::run_replay(const RunHooks& hooks) const {
  const SimConfig& c = cfg_;
  const TraceReader trace(c.stream.trace, c.stream.trace_tokens, replay_layers(c));
  const int T = c.batch, E = c.experts;
  if (trace.experts() != E || trace.tokens() != T || trace.layers() != c.layers || trace.steps() < c.steps)
    throw Error(c.stream.trace + ": the trace changed since the config was resolved (experts, batch, layers, steps)");
  std::vector<std::unique_ptr<ReplayLayer>> layers;
  for (int l = 0; l < c.layers; ++l) {
    const std::uint64_t seed = derive_seed(c.seed, "layer." + std::to_string(l));
    layers.push_back(std::make_unique<ReplayLayer>(ReplayLayer{make_policy(c.policy.name, E, c.k, c.policy.knobs),
                                                               Rng(derive_seed(seed, "policy")),
                                                               LayerMetrics(E, 1, c.steps, c.metrics), {}, {}, {}, {}, {}}));
    layers.back()->last_perf.assign(static_cast<std::size_t>(E), std::numeric_limits<float>::quiet_NaN());
  }
  std::vector<std::int64_t> ids(static_cast<std::size_t>(T));
  for (int t = 0; t < T; ++t) ids[t] = t;
  std::vector<double> row;
  row.reserve(columns_.size());
  const double nan = std::numeric_limits<double>::quiet_NaN();
  for (std::int64_t step = 0; step < c.steps; ++step) {
    if (trace.has_token_ids()) trace.token_ids(step, ids);
    const bool logged = step % c.log_every == 0 || step == c.steps - 1;
    for (int l = 0; l < c.layers; ++l) {
      ReplayLayer& L = *layers[l];
      trace.logits(l, step, L.logits);
      RouteInput in{L.logits.data(), T, E, ids.data(), nullptr, nullptr, 0};
      L.policy->route(in, L.rng, L.assignment);
      if (trace.has_perf()) trace.expert_perf(l, step, L.expert_perf);
      replay_perf(c, trace.has_perf(), L);
      L.policy->observe(L.assignment, L.perf.data());
      L.metrics.add_batch(step, L.assignment, nullptr, L.perf.data());
      if (!logged) continue;
      const double sat = router_saturation(L.logits.data(), T, E);
      L.metrics.add_saturation(sat);
      if (hooks.on_row)
        emit_row(hooks, row, step, l, L.metrics, sat, nan, nan, L.policy->reputation(), E, has_reputation_);
    }
    if (hooks.on_progress) hooks.on_progress(step + 1, c.steps);
  }
  std::vector<std::vector<double>> per_layer;
  for (auto& L : layers) per_layer.push_back(L->metrics.finish(L->policy->reputation(), nan));
  return collect(c, per_layer);
}

RunResult run_simulation(const SimConfig& cfg, std::ostream* timeseries, const ProgressFn& progress) {
  Simulator sim(cfg);
  RunHooks hooks;
  hooks.on_progress = progress;
  std::unique_ptr<CsvWriter> csv;
  if (timeseries) {
    csv = std::make_unique<CsvWriter>(*timeseries);
    csv->header(sim.timeseries_columns());
    hooks.on_row = [&](const std::vector<double>& row) { csv->row(row); };
  }
  return sim.run(hooks);
}

void write_metrics_csv(std::ostream& os, const RunResult& r) {
  CsvWriter csv(os);
  const auto flat = r.flat();
  std::vector<std::string> names;
  std::vector<double> values;
  for (const auto& [n, v] : flat) {
    names.push_back(n);
    values.push_back(v);
  }
  csv.header(names);
  csv.row(values);
}

}  // namespace moesim
