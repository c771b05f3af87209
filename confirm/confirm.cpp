#include "confirm/confirm.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <set>
#include <thread>

#include "common/csv.hpp"
#include "common/error.hpp"
#include "common/text.hpp"
#include "metrics/load_metrics.hpp"
#include "policies/registry.hpp"
#include "sim/simulator.hpp"
#include "trace/trace_reader.hpp"

namespace moesim {

namespace fs = std::filesystem;

namespace {

const double kNaN = std::numeric_limits<double>::quiet_NaN();

std::vector<double> parse_list(const std::string& key, const std::string& value) {
  std::string_view v = value;
  if (v.size() >= 2 && v.front() == '[' && v.back() == ']') v = v.substr(1, v.size() - 2);
  std::vector<double> out;
  std::size_t pos = 0;
  while (pos <= v.size()) {
    const std::size_t comma = std::min(v.find(',', pos), v.size());
    std::string item(v.substr(pos, comma - pos));
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    double x = 0;
    if (!parse_real(item, x) || !std::isfinite(x) || x < 0)
      throw Error("key '" + key + "' = '" + value + "': expected a list of numbers >= 0 such as 0.1,0.3");
    out.push_back(x);
    pos = comma + 1;
  }
  return out;
}

// A scalar of the run's config.yaml at a dotted path; Error naming file and key when absent.
// moesim train writes flat dotted keys; a hand-written config may nest them.
YAML::Node at_path(const YAML::Node& root, const std::string& path, const std::string& file) {
  if (root.IsMap() && root[path]) return root[path];
  YAML::Node n = YAML::Clone(root);
  std::size_t pos = 0;
  while (pos < path.size()) {
    const std::size_t dot = std::min(path.find('.', pos), path.size());
    const std::string part = path.substr(pos, dot - pos);
    if (!n.IsMap() || !n[part]) throw Error(file + ": key '" + path + "' missing (not a moesim train config?)");
    n = n[part];
    pos = dot + 1;
  }
  return n;
}

template <class T>
T scalar(const YAML::Node& root, const std::string& path, const std::string& file) {
  const YAML::Node n = at_path(root, path, file);
  try {
    return n.as<T>();
  } catch (const YAML::Exception&) {
    throw Error(file + ": key '" + path + "': unexpected value");
  }
}

std::size_t metric_index(const std::string& name) {
  const auto& names = LayerMetrics::run_metric_names();
  return static_cast<std::size_t>(std::find(names.begin(), names.end(), name) - names.begin());
}

std::vector<double> pick(const std::vector<double>& all) {
  std::vector<double> v;
  for (const auto& m : confirm_metrics()) v.push_back(all[metric_index(m)]);
  return v;
}

// What the training log says, per confirm metric, and the trajectories.
struct RealRun {
  std::vector<double> metrics;
  std::vector<double> gini, maxvio;  // per step (0-based), mean over layers
  std::vector<long> share_steps;
  std::vector<std::vector<double>> shares;
};

std::string layer_col(int l, const std::string& what) {
  std::string s = "L";
  s += std::to_string(l);
  s += "_";
  s += what;
  return s;
}

RealRun read_real(const TrainingRun& run, std::int64_t window) {
  const std::string path = (fs::path(run.dir) / "train_log.csv").string();
  const CsvTable t = read_csv(path);
  const auto S = static_cast<std::int64_t>(t.rows.size());
  if (S < run.steps)
    throw Error(path + ": " + std::to_string(S) + " logged steps of train.steps = " + std::to_string(run.steps) +
                " (an unfinished run: resume it first)");
  const int E = run.experts;
  const MetricsConfig mc{std::min(window, S), std::min(window, S)};
  const std::size_t step_col = t.need_column("step");
  // A count column: a finite whole number >= 0, else an Error naming file, line and column.
  auto count = [&](std::size_t row, std::size_t col) {
    const double v = t.number(row, col);
    if (!(v >= 0) || v > 9e15 || v != std::floor(v))
      throw Error(path + ":" + std::to_string(t.lines[row]) + ": column " + t.header[col] + " = '" + t.rows[row][col] +
                  "': expected a count");
    return static_cast<std::int64_t>(v);
  };
  RealRun r;
  r.gini.assign(static_cast<std::size_t>(S), 0.0);
  r.maxvio.assign(static_cast<std::size_t>(S), 0.0);
  std::vector<double> sum(LayerMetrics::run_metric_names().size(), 0.0);
  const double L = static_cast<double>(run.moe_layers.size());
  std::vector<std::vector<double>> shares(static_cast<std::size_t>(S), std::vector<double>(static_cast<std::size_t>(E), 0.0));
  for (int l : run.moe_layers) {
    std::vector<std::size_t> load_cols;
    for (int e = 0; e < E; ++e) load_cols.push_back(t.need_column(layer_col(l, "load" + std::to_string(e))));
    const auto routed = t.need_column(layer_col(l, "routed")), dropped = t.need_column(layer_col(l, "dropped")),
               dropped_tokens = t.need_column(layer_col(l, "dropped_tokens")),
               tokens = t.need_column(layer_col(l, "routed_tokens"));
    LayerMetrics m(E, 1, S, mc);
    std::vector<std::int64_t> loads(static_cast<std::size_t>(E));
    for (std::int64_t i = 0; i < S; ++i) {
      const auto row = static_cast<std::size_t>(i);
      if (t.number(row, step_col) != static_cast<double>(i + 1))
        throw Error(path + ":" + std::to_string(t.lines[row]) + ": step " + t.rows[row][step_col] + " where step " +
                    std::to_string(i + 1) + " belongs (one row per step, in order)");
      for (int e = 0; e < E; ++e) loads[e] = count(row, load_cols[e]);
      LayerMetrics::SlotCounts n{count(row, routed), count(row, dropped), count(row, dropped_tokens), count(row, tokens)};
      m.add_loads(i, loads, n);
      const auto& x = m.batch_loads();
      r.gini[row] += gini(x) / L;
      r.maxvio[row] += max_violation(x) / L;
      double total = 0;
      for (double v : x) total += v;
      for (int e = 0; e < E; ++e) shares[row][e] += (total > 0 ? x[e] / total : 0.0) / L;
    }
    const auto v = m.finish(nullptr, kNaN);
    for (std::size_t i = 0; i < sum.size(); ++i) sum[i] += v[i] / L;
  }
  r.metrics = pick(sum);
  for (std::int64_t i = 0; i < S; i += 10) {
    r.share_steps.push_back(static_cast<long>(i + 1));
    r.shares.push_back(shares[static_cast<std::size_t>(i)]);
  }
  return r;
}

SimConfig base_sim(const TrainingRun& run, std::int64_t window) {
  SimConfig c;
  c.seed = run.seed;
  c.experts = run.experts;
  c.k = run.k;
  c.batch = run.tokens;
  c.layers = static_cast<int>(run.moe_layers.size());
  c.steps = run.steps;
  c.log_every = 10;
  c.policy.name = run.policy;
  for (const auto& [k, v] : run.knobs) c.policy.knobs[k] = v;
  c.metrics.window = std::min<std::int64_t>(window, run.steps);
  c.metrics.dead_window = c.metrics.window;
  c.gate.aux_loss = run.aux_loss;
  c.gate.z_loss = run.z_loss;
  return c;
}

std::vector<double> replay_metrics(const TrainingRun& run, std::int64_t window) {
  SimConfig c = base_sim(run, window);
  c.stream.kind = "replay";
  c.stream.trace = (fs::path(run.dir) / "traces").string();
  const TraceReader trace(c.stream.trace, "", {});
  std::int64_t in_window = 0;
  for (long s : trace.recorded_steps()) in_window += s > run.steps - window;
  if (in_window == 0)
    throw Error(c.stream.trace + ": no recorded step in the last " + std::to_string(window) +
                " training steps (record with train.trace_every, or widen confirm.window)");
  c.steps = trace.steps();
  c.metrics.window = c.metrics.dead_window = std::max<std::int64_t>(1, std::min(in_window, trace.steps()));
  c.log_every = 1;
  return pick(Simulator(c).run().mean);
}

// A synthetic run: its metrics and its per-row (mean over layers) Gini, MaxVio and shares.
struct SimRun {
  std::vector<double> metrics;
  std::vector<long> steps;
  std::vector<double> gini, maxvio;
  std::vector<std::vector<double>> shares;
};

SimRun simulate(SimConfig c) {
  Simulator sim(c);
  const auto& cols = sim.timeseries_columns();
  auto col = [&](const char* n) { return static_cast<std::size_t>(std::find(cols.begin(), cols.end(), n) - cols.begin()); };
  const std::size_t cstep = col("step"), cgini = col("gini"), cmax = col("maxvio"), cshare = col("share_0");
  SimRun out;
  const double L = c.layers;
  RunHooks hooks;
  hooks.on_row = [&](const std::vector<double>& row) {
    const long step = static_cast<long>(row[cstep]) + 1;
    if (out.steps.empty() || out.steps.back() != step) {
      out.steps.push_back(step);
      out.gini.push_back(0);
      out.maxvio.push_back(0);
      out.shares.emplace_back(static_cast<std::size_t>(c.experts), 0.0);
    }
    out.gini.back() += row[cgini] / L;
    out.maxvio.back() += row[cmax] / L;
    for (int e = 0; e < c.experts; ++e) out.shares.back()[e] += row[cshare + e] / L;
  };
  out.metrics = pick(sim.run(hooks).mean);
  return out;
}

// The recorded performance of the late window's recorded steps (experts that
// served): level = mean per-expert performance, spread = mean over steps and
// layers of the std over experts of ln(performance). {1, 0} without records.
struct PerfShape {
  double level = 1.0, spread = 0.0;
};

PerfShape recorded_perf(const TrainingRun& run, std::int64_t window) {
  const TraceReader trace((fs::path(run.dir) / "traces").string(), "", {});
  PerfShape shape;
  if (!trace.has_perf()) return shape;
  double sum = 0, spread = 0;
  std::int64_t n = 0, rows = 0;
  std::vector<float> p;
  for (std::int64_t i = 0; i < trace.steps(); ++i) {
    if (trace.recorded_steps()[static_cast<std::size_t>(i)] <= run.steps - window) continue;
    for (int l = 0; l < trace.layers(); ++l) {
      trace.expert_perf(l, i, p);
      std::vector<double> logs;
      bool positive = true;
      for (float v : p) {
        if (!std::isfinite(v)) continue;
        sum += v, ++n;
        positive = positive && v > 0;
        logs.push_back(v > 0 ? std::log(v) : 0.0);
      }
      if (!positive) shape.spread = std::numeric_limits<double>::quiet_NaN();  // ln undefined (e.g. perf = -loss)
      if (logs.size() < 2 || !positive) continue;
      spread += vector_stats(logs).std;
      ++rows;
    }
  }
  if (n > 0) shape.level = sum / static_cast<double>(n);
  if (rows > 0 && !std::isnan(shape.spread)) shape.spread = spread / static_cast<double>(rows);
  return shape;
}

// The world matched to the recorded performance: its scale (every skill level
// and the noise, so perf = skill + noise scales exactly) when confirm.perf_level,
// and the experts' fixed output-scale spread when confirm.perf_spread.
void shape_world(SimConfig& c, const ConfirmResult& res) {
  const double level = res.cfg.perf_level ? res.perf_level : 1.0;
  if (!(level > 0) || (res.cfg.perf_spread && !std::isfinite(res.perf_spread)))
    throw Error("confirm.perf_level / confirm.perf_spread: the reference's recorded performance (level " +
                format_number(res.perf_level) + ", ln-spread " + format_number(res.perf_spread) +
                ") cannot scale the world (a signal that is not positive, e.g. moe.perf_signal=loss)");
  c.world.skill_init *= level;
  c.world.skill_spread *= level;
  c.world.skill_max *= level;
  c.world.skill_floor *= level;
  c.world.perf_noise *= level;
  if (res.cfg.perf_spread) c.world.perf_scale_spread = std::min(res.perf_spread, 10.0);
}

void apply_params(SimConfig& c, const CalibrationPoint& p) {
  c.gate.lr = p.gate_lr;
  c.world.skill_growth = p.skill_growth;
  c.stream.clusters = static_cast<int>(p.clusters);
  c.gate.init_scale = p.init_scale;
  c.gate.aux_loss *= p.aux_scale;
}

double trajectory_loss(const SimRun& s, const RealRun& r) {
  double g2 = 0, m2 = 0, gm = 0, mm = 0;
  int n = 0;
  for (std::size_t i = 0; i < s.steps.size(); ++i) {
    const auto row = static_cast<std::size_t>(s.steps[i] - 1);
    if (row >= r.gini.size()) continue;
    g2 += (s.gini[i] - r.gini[row]) * (s.gini[i] - r.gini[row]);
    m2 += (s.maxvio[i] - r.maxvio[row]) * (s.maxvio[i] - r.maxvio[row]);
    gm += r.gini[row];
    mm += r.maxvio[row];
    ++n;
  }
  if (n == 0) return std::numeric_limits<double>::infinity();
  return std::sqrt(g2 / n) / (gm / n + 0.01) + std::sqrt(m2 / n) / (mm / n + 0.01);
}

// Runs jobs 0..n-1 on `threads` threads; each job writes only its own slot.
template <class Job>
void parallel(std::size_t n, int threads, const Job& job) {
  std::atomic<std::size_t> next{0};
  std::vector<std::exception_ptr> errors(n);
  auto worker = [&] {
    for (std::size_t i; (i = next++) < n;) {
      try {
        job(i);
      } catch (...) {
        errors[i] = std::current_exception();
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < std::max(1, threads); ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

// Knob values in force (presets and defaults resolved) of a run's policy.
Knobs knobs_of(const TrainingRun& r) {
  KnobMap m(r.knobs.begin(), r.knobs.end());
  return resolve_knobs(policy_info(r.policy), r.k, m);
}

std::vector<Claim> make_claims(const std::vector<GroupResult>& groups, const std::vector<TrainingRun>& first) {
  auto find = [&](auto pred) {
    for (std::size_t g = 0; g < groups.size(); ++g)
      if (pred(first[g])) return static_cast<int>(g);
    return -1;
  };
  const int nobal = find([](const TrainingRun& r) {
    return r.policy == "topk" && r.aux_loss == 0.0 && knobs_of(r).flag("dropless");
  });
  const int aux = find([](const TrainingRun& r) { return r.policy == "topk" && r.aux_loss > 0.0; });
  const int lf = find([](const TrainingRun& r) { return r.policy == "loss_free"; });
  auto label = [&](int g) { return g >= 0 ? groups[static_cast<std::size_t>(g)].label : std::string(); };
  std::vector<Claim> claims;
  auto add = [&](std::string text, std::string metric, int lower, int higher, std::string need) {
    Claim c;
    c.text = std::move(text);
    c.metric = std::move(metric);
    c.lower = label(lower);
    c.higher = label(higher);
    c.tested = lower >= 0 && higher >= 0;
    if (!c.tested) c.why_untested = "no run " + need;
    claims.push_back(std::move(c));
  };
  add("no balancing concentrates load (late Gini: top-k with aux loss below top-k without balancing)", "late_gini",
      aux, nobal, "with top-k and aux loss, or with top-k, dropless and no aux loss");
  add("loss-free keeps MaxVio below an aux-loss router (late batch MaxVio)", "late_maxvio_batch", lf, aux,
      "with loss_free, or with top-k and aux loss");
  for (std::size_t g = 0; g < groups.size(); ++g) {
    if (first[g].policy != "rdesi") continue;
    add("RD-ESI (" + groups[g].label + ") balances better than top-k with aux loss (late batch MaxVio)",
        "late_maxvio_batch", static_cast<int>(g), aux, "with top-k and aux loss");
    const Knobs k = knobs_of(first[g]);
    if (k.real("ucb_c") > 0 && k.real("decay_rate") < 1 && k.choice("decay_on") != "none")
      add("exploration and decay (" + groups[g].label + ") mitigate the Matthew effect (RGR slope below top-k "
          "without balancing)", "rgr_slope", static_cast<int>(g), nobal,
          "with top-k, dropless and no aux loss");
  }
  const auto& names = confirm_metrics();
  for (auto& c : claims) {
    if (!c.tested) continue;
    const auto m = static_cast<std::size_t>(std::find(names.begin(), names.end(), c.metric) - names.begin());
    const GroupResult *lo = nullptr, *hi = nullptr;
    for (const auto& g : groups) {
      if (g.label == c.lower) lo = &g;
      if (g.label == c.higher) hi = &g;
    }
    const double v[] = {lo->mean.sim[m], hi->mean.sim[m], lo->mean.replay[m], hi->mean.replay[m], lo->mean.real[m],
                        hi->mean.real[m]};
    if (!std::all_of(std::begin(v), std::end(v), [](double x) { return std::isfinite(x); })) {
      c.tested = false;
      c.why_untested = c.metric + " undefined (NaN) in a source: the window covers more than half the run";
      continue;
    }
    c.sim = lo->mean.sim[m] < hi->mean.sim[m];
    c.replay = lo->mean.replay[m] < hi->mean.replay[m];
    c.real = lo->mean.real[m] < hi->mean.real[m];
  }
  return claims;
}

std::string signature(const TrainingRun& r) { return r.config; }

}  // namespace

const std::vector<std::string>& confirm_metrics() {
  static const std::vector<std::string> m = {"late_maxvio_batch", "late_maxvio", "late_gini", "late_load_cv",
                                             "dead", "starved", "late_drop_rate", "rgr_slope"};
  return m;
}

void set_confirm_key(ConfirmConfig& c, const std::string& key, const std::string& value) {
  long n = 0;
  if (key == "confirm.window") {
    if (!parse_int(value, n) || n < 1) throw Error("key 'confirm.window' = '" + value + "': expected a whole number >= 1");
    c.window = n;
  } else if (key == "confirm.reference") {
    c.reference = value;
  } else if (key == "confirm.seed") {
    if (!parse_int(value, n) || n < 0) throw Error("key 'confirm.seed' = '" + value + "': expected a whole number >= 0");
    c.seed = static_cast<std::uint64_t>(n);
  } else if (key == "confirm.threads") {
    if (!parse_int(value, n) || n < 1 || n > 256) throw Error("key 'confirm.threads' = '" + value + "': expected 1..256");
    c.threads = static_cast<int>(n);
  } else if (key == "confirm.gate_lr") {
    c.gate_lr = parse_list(key, value);
  } else if (key == "confirm.skill_growth") {
    c.skill_growth = parse_list(key, value);
  } else if (key == "confirm.clusters") {
    c.clusters = parse_list(key, value);
    for (double x : c.clusters)
      if (x < 1 || x > 65536 || x != std::floor(x)) throw Error("key 'confirm.clusters': expected whole numbers in [1, 65536]");
  } else if (key == "confirm.init_scale") {
    c.init_scale = parse_list(key, value);
  } else if (key == "confirm.perf_level" || key == "confirm.perf_spread") {
    if (value != "true" && value != "false") throw Error("key '" + key + "' = '" + value + "': expected true or false");
    (key == "confirm.perf_level" ? c.perf_level : c.perf_spread) = value == "true";
  } else if (key == "confirm.aux_scale") {
    c.aux_scale = parse_list(key, value);
  } else {
    throw Error("key '" + key + "': unknown (confirm.window, confirm.reference, confirm.seed, confirm.threads, "
                "confirm.gate_lr, confirm.skill_growth, confirm.clusters, confirm.init_scale, confirm.aux_scale, confirm.perf_level, confirm.perf_spread)");
  }
}

TrainingRun read_training_run(const std::string& dir) {
  const std::string file = (fs::path(dir) / "config.yaml").string();
  std::error_code ec;
  if (!fs::exists(file, ec)) throw Error(file + ": no such file (not a moesim train run folder)");
  YAML::Node root;
  try {
    root = YAML::LoadFile(file);
  } catch (const YAML::Exception& e) {
    throw Error(file + ":" + std::to_string(e.mark.line + 1) + ": " + e.msg);
  }
  TrainingRun r;
  r.dir = dir;
  r.label = fs::path(dir).filename().string();
  if (r.label.empty()) r.label = fs::path(dir).parent_path().filename().string();
  r.policy = scalar<std::string>(root, "policy.name", file);
  const std::string prefix = "policy.knobs.";
  for (auto it = root.begin(); it != root.end(); ++it)
    if (it->first.Scalar().rfind(prefix, 0) == 0) {
      if (!it->second.IsScalar()) throw Error(file + ": key '" + it->first.Scalar() + "': expected a value");
      r.knobs.emplace_back(it->first.Scalar().substr(prefix.size()), it->second.Scalar());
    }
  if (root["policy"] && root["policy"]["knobs"] && root["policy"]["knobs"].IsMap())
    for (auto it = root["policy"]["knobs"].begin(); it != root["policy"]["knobs"].end(); ++it)
      r.knobs.emplace_back(it->first.Scalar(), it->second.Scalar());
  std::sort(r.knobs.begin(), r.knobs.end());
  r.experts = scalar<int>(root, "model.experts", file);
  r.k = scalar<int>(root, "model.k", file);
  r.tokens = scalar<int>(root, "train.batch", file) * scalar<int>(root, "data.seq_len", file);
  r.steps = scalar<std::int64_t>(root, "train.steps", file);
  r.seed = scalar<std::uint64_t>(root, "seed", file);
  r.aux_loss = scalar<double>(root, "moe.aux_loss_coef", file);
  r.z_loss = scalar<double>(root, "moe.z_loss_coef", file);
  const YAML::Node layers = at_path(root, "model.moe_layers", file);
  if (!layers.IsSequence() || layers.size() == 0) throw Error(file + ": key 'model.moe_layers': the model has no MoE layer");
  for (const auto& l : layers) {
    int x = 0;
    if (!l.IsScalar() || !YAML::convert<int>::decode(l, x)) throw Error(file + ": key 'model.moe_layers': expected layer numbers");
    r.moe_layers.push_back(x);
  }
  if (root["train.accum"] && scalar<int>(root, "train.accum", file) != 1)
    throw Error(file + ": key 'train.accum' = " + root["train.accum"].Scalar() +
                ": confirm compares per-step loads with one micro-batch per step (the trace records the first only)");
  // The run's whole config but the seed and the keys that do not change the
  // training (where it is written, how often it logs, traces and saves).
  static const std::set<std::string> ignored = {"seed", "train.out_dir", "train.resume", "train.allow_config_change",
                                                "train.log_every", "train.eval_every", "train.eval_batches",
                                                "train.ckpt_every", "train.threads", "train.trace_steps",
                                                "train.trace_every", "data.cache_dir", "data.dir"};
  std::vector<std::string> parts;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (ignored.count(key)) continue;
    parts.push_back(key + "=" + YAML::Dump(it->second));
  }
  std::sort(parts.begin(), parts.end());
  for (const auto& p : parts) r.config += p + "\n";
  if (r.experts < 1 || r.k < 1 || r.k > r.experts || r.tokens < 1 || r.steps < 1)
    throw Error(file + ": model.experts, model.k, train.batch, data.seq_len or train.steps out of range");
  return r;
}

namespace {

// Runs of one config but the seed share a group; members[g] lists its runs.
std::vector<std::vector<std::size_t>> group_runs(const std::vector<TrainingRun>& runs, ConfirmResult& res) {
  std::vector<std::vector<std::size_t>> members;
  std::vector<std::string> sigs;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto sig = signature(runs[i]);
    auto it = std::find(sigs.begin(), sigs.end(), sig);
    if (it != sigs.end()) {
      members[static_cast<std::size_t>(it - sigs.begin())].push_back(i);
      continue;
    }
    sigs.push_back(sig);
    members.push_back({i});
    GroupResult g;
    g.label = runs[i].label;
    g.policy = runs[i].policy;
    res.groups.push_back(std::move(g));
  }
  return members;
}

// The calibration group: confirm.reference, else the first top-k run with aux loss, else the first.
std::size_t reference_group(const std::vector<TrainingRun>& runs, const std::vector<std::vector<std::size_t>>& members,
                            const ConfirmResult& res, const ConfirmConfig& cfg) {
  for (std::size_t g = 0; g < res.groups.size(); ++g) {
    const TrainingRun& r = runs[members[g][0]];
    if (cfg.reference.empty() ? r.policy == "topk" && r.aux_loss > 0 : res.groups[g].label == cfg.reference) return g;
  }
  if (!cfg.reference.empty()) throw Error("key 'confirm.reference' = '" + cfg.reference + "': no such run label");
  return 0;
}

void calibrate(const TrainingRun& ref, const RealRun& real, const ConfirmConfig& cfg, ConfirmResult& res) {
  for (double a : cfg.gate_lr)
    for (double b : cfg.skill_growth)
      for (double c : cfg.clusters)
        for (double d : cfg.init_scale)
          for (double x : cfg.aux_scale) res.calibration.push_back({a, b, c, d, x, 0.0});
  if (res.calibration.empty()) throw Error("confirm: the calibration grid is empty (every confirm.<parameter> needs a value)");
  parallel(res.calibration.size(), cfg.threads, [&](std::size_t i) {
    SimConfig c = base_sim(ref, cfg.window);
    c.seed = cfg.seed + ref.seed - 1;
    apply_params(c, res.calibration[i]);
    shape_world(c, res);
    res.calibration[i].loss = trajectory_loss(simulate(c), real);
  });
  res.best = *std::min_element(res.calibration.begin(), res.calibration.end(),
                               [](const CalibrationPoint& a, const CalibrationPoint& b) { return a.loss < b.loss; });
}

// Group means and the real spread over its runs; trajectories of its first run.
void aggregate(GroupResult& G, const std::vector<std::size_t>& members, const std::vector<TrainingRun>& runs,
               const std::vector<RealRun>& real, const std::vector<std::vector<double>>& replay,
               const std::vector<SimRun>& sims) {
  const std::size_t M = confirm_metrics().size();
  const double n = static_cast<double>(members.size());
  G.mean.real.assign(M, 0.0);
  G.mean.replay.assign(M, 0.0);
  G.mean.sim.assign(M, 0.0);
  std::vector<double> lo(M, std::numeric_limits<double>::infinity()), hi(M, -std::numeric_limits<double>::infinity());
  for (std::size_t i : members) {
    G.runs.push_back(runs[i].label);
    for (std::size_t m = 0; m < M; ++m) {
      G.mean.real[m] += real[i].metrics[m] / n;
      G.mean.replay[m] += replay[i][m] / n;
      G.mean.sim[m] += sims[i].metrics[m] / n;
      lo[m] = std::min(lo[m], real[i].metrics[m]);
      hi[m] = std::max(hi[m], real[i].metrics[m]);
    }
  }
  for (std::size_t m = 0; m < M; ++m) G.real_spread.push_back(hi[m] - lo[m]);
  const std::size_t i0 = members[0];
  G.real_steps = real[i0].share_steps;
  G.real_shares = real[i0].shares;
  G.sim_steps = sims[i0].steps;
  G.sim_shares = sims[i0].shares;
}

std::vector<Agreement> agreement(const std::vector<GroupResult>& groups) {
  std::vector<Agreement> out;
  for (std::size_t m = 0; m < confirm_metrics().size(); ++m) {
    // Groups where any source is undefined (NaN) are left out; n counts the rest.
    std::vector<double> r, s, p;
    for (const auto& G : groups) {
      if (!std::isfinite(G.mean.real[m]) || !std::isfinite(G.mean.sim[m]) || !std::isfinite(G.mean.replay[m])) continue;
      r.push_back(G.mean.real[m]);
      s.push_back(G.mean.sim[m]);
      p.push_back(G.mean.replay[m]);
    }
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const bool ok = r.size() >= 2;
    out.push_back({confirm_metrics()[m], ok ? spearman(s, r) : nan, ok ? spearman(p, r) : nan, static_cast<int>(r.size())});
  }
  return out;
}

}  // namespace

ConfirmResult confirm_runs(const std::vector<std::string>& dirs, const ConfirmConfig& cfg, std::FILE* log) {
  const auto t0 = std::chrono::steady_clock::now();
  if (dirs.size() < 2) throw Error("confirm: give at least two training run folders");
  std::vector<TrainingRun> runs;
  for (const auto& d : dirs) runs.push_back(read_training_run(d));
  for (const auto& r : runs)
    if (r.experts != runs[0].experts || r.k != runs[0].k || r.tokens != runs[0].tokens ||
        r.moe_layers != runs[0].moe_layers)
      throw Error(r.dir + ": E, k, tokens per step or MoE layers differ from " + runs[0].dir + " (confirm compares one model)");
  ConfirmResult res;
  res.cfg = cfg;
  const auto members = group_runs(runs, res);
  if (log) std::fprintf(log, "confirm: %zu runs in %zu groups; reading logs and replaying traces\n", runs.size(), res.groups.size());
  std::vector<RealRun> real(runs.size());
  std::vector<std::vector<double>> replay(runs.size());
  parallel(runs.size(), cfg.threads, [&](std::size_t i) {
    real[i] = read_real(runs[i], cfg.window);
    replay[i] = replay_metrics(runs[i], cfg.window);
  });
  const std::size_t ref = reference_group(runs, members, res, cfg);
  res.groups[ref].reference = true;
  res.reference = res.groups[ref].label;
  const PerfShape perf = recorded_perf(runs[members[ref][0]], cfg.window);
  res.perf_level = perf.level;
  res.perf_spread = perf.spread;
  if (log)
    std::fprintf(log, "confirm: calibrating on %s (recorded performance level %.3g, log-spread %.3g)\n",
                 res.reference.c_str(), res.perf_level, res.perf_spread);
  calibrate(runs[members[ref][0]], real[members[ref][0]], cfg, res);
  if (log) std::fprintf(log, "confirm: simulating every run with the fitted parameters\n");
  std::vector<SimRun> sims(runs.size());
  parallel(runs.size(), cfg.threads, [&](std::size_t i) {
    SimConfig c = base_sim(runs[i], cfg.window);
    c.seed = cfg.seed + runs[i].seed - 1;
    apply_params(c, res.best);
    shape_world(c, res);
    sims[i] = simulate(c);
  });
  std::vector<TrainingRun> first;
  for (std::size_t g = 0; g < res.groups.size(); ++g) {
    first.push_back(runs[members[g][0]]);
    aggregate(res.groups[g], members[g], runs, real, replay, sims);
  }
  res.agreement = agreement(res.groups);
  res.claims = make_claims(res.groups, first);
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace moesim
