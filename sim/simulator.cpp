#include "sim/simulator.hpp"

#include <chrono>
#include <limits>
#include <memory>

#include "policies/registry.hpp"
#include "common/csv.hpp"
#include "sim/gate.hpp"
#include "sim/metrics.hpp"
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

RunResult Simulator::run(const RunHooks& hooks) const {
  const auto t0 = std::chrono::steady_clock::now();
  const SimConfig& c = cfg_;
  const int T = c.batch, E = c.experts, d = c.stream.dim;
  TokenStream stream(c.stream, derive_seed(c.seed, "stream"));
  std::vector<std::unique_ptr<Layer>> layers;
  for (int l = 0; l < c.layers; ++l)
    layers.push_back(std::make_unique<Layer>(c, derive_seed(c.seed, "layer." + std::to_string(l))));

  TokenBatch batch;
  std::vector<double> row;
  row.reserve(columns_.size());
  const double nan = std::numeric_limits<double>::quiet_NaN();
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
      L.gate.update(batch.x, a, L.perf.data());
      L.metrics.add_batch(step, a, batch.cluster.data(), L.perf.data());
      L.world.learn(L.metrics.batch_table().data(), T, c.k);
      if (!logged) continue;
      const double sat = router_saturation(L.gate.clean().data(), T, E);
      L.metrics.add_saturation(sat);
      if (!hooks.on_row) continue;
      const BatchStats s = L.metrics.batch_stats();
      const auto* rep = L.policy->reputation();
      VectorStats rs{nan, nan, nan, nan};
      if (rep && !rep->empty()) rs = vector_stats(*rep);
      row.assign({static_cast<double>(step), static_cast<double>(l), s.load_cv, s.gini, s.entropy, s.maxvio,
                  s.maxvio_global, s.drop_rate, s.token_drop_rate, s.dead, s.mean_perf, sat, s.spec_norm,
                  L.world.mean_skill(), L.gate.baseline(), rs.mean, rs.min, rs.max, rs.std});
      const auto& loads = L.metrics.batch_loads();
      double total = 0.0;
      for (double x : loads) total += x;
      for (double x : loads) row.push_back(total > 0.0 ? x / total : 0.0);
      if (has_reputation_)
        for (int e = 0; e < E; ++e) row.push_back(rep && e < static_cast<int>(rep->size()) ? (*rep)[e] : nan);
      hooks.on_row(row);
    }
    if (hooks.on_progress) hooks.on_progress(step + 1, c.steps);
  }

  RunResult r;
  r.metric_names = LayerMetrics::run_metric_names();
  r.mean.assign(r.metric_names.size(), 0.0);
  for (auto& L : layers) {
    r.layers.push_back(L->metrics.finish(L->policy->reputation(), L->world.mean_skill()));
    for (std::size_t i = 0; i < r.mean.size(); ++i) r.mean[i] += r.layers.back()[i] / c.layers;
  }
  r.routings = c.steps * c.layers * static_cast<std::int64_t>(T) * c.k;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
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
