#include "sim/sweep.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "common/json.hpp"
#include "common/text.hpp"
#include "policies/types.hpp"
#include "common/csv.hpp"
#include "sim/simulator.hpp"

namespace fs = std::filesystem;

namespace moesim {

namespace {

std::string run_config_text(const Scenario& sc, const SweepPoint& p, const RunSpec& r, const std::string& program) {
  return "# run " + r.id + ", point " + std::to_string(p.index) + " '" + p.label + "', seed " +
         std::to_string(r.seed) + " of scenario '" + sc.name + "'\n# replay: " +
         replay_command(sc, p, r.seed, program, "") + "\n" + config_yaml(r.config);
}

bool run_complete(const std::string& dir, const std::string& config_text) {
  std::error_code ec;
  if (!fs::is_regular_file(dir + "/metrics.csv", ec) || !fs::is_regular_file(dir + "/timeseries.csv", ec))
    return false;
  std::ifstream in(dir + "/config.yaml", std::ios::binary);
  if (!in) return false;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str() == config_text;
}

class Progress {
 public:
  Progress(bool on, int runs, std::int64_t units) : on_(on), tty_(::isatty(2) == 1), runs_(runs), units_(units) {}

  void show(int runs_done, std::int64_t units_done, bool final) {
    if (!on_) return;
    const auto now = std::chrono::steady_clock::now();
    const double el = std::chrono::duration<double>(now - start_).count();
    if (!final && !tty_ && std::chrono::duration<double>(now - last_).count() < 10.0) return;
    last_ = now;
    const double frac = units_ > 0 ? static_cast<double>(units_done) / static_cast<double>(units_) : 1.0;
    const double eta = frac > 0 ? el * (1.0 - frac) / frac : std::numeric_limits<double>::quiet_NaN();
    const double rate = el > 0 ? static_cast<double>(units_done) / el / 1e6 : 0.0;
    char line[200];
    std::snprintf(line, sizeof line, "sweep: %d/%d runs  %5.1f%%  %.2f Mtok/s  elapsed %s  ETA %s", runs_done, runs_,
                  100.0 * frac, rate, clock_text(el).c_str(), final ? "0:00" : clock_text(eta).c_str());
    if (tty_)
      std::fprintf(stderr, "\r\033[K%s%s", line, final ? "\n" : "");
    else
      std::fprintf(stderr, "%s\n", line);
    std::fflush(stderr);
  }

 private:
  bool on_, tty_;
  int runs_;
  std::int64_t units_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_ = start_;
};

void assemble_outputs(const Scenario& sc, const std::vector<SweepPoint>& points, const std::vector<RunSpec>& runs,
                      const std::string& out, const std::string& program, SweepResult& result) {
  const auto keys = swept_keys(sc);
  // Metric columns: the union over runs, in first-seen order (points may differ in layers).
  std::vector<std::string> metric_names;
  std::vector<CsvTable> tables;
  tables.reserve(runs.size());
  for (const auto& r : runs) {
    tables.push_back(read_csv(out + "/runs/" + r.id + "/metrics.csv"));
    const auto& t = tables.back();
    if (t.rows.size() != 1 || t.rows[0].size() != t.header.size())
      throw Error(out + "/runs/" + r.id + "/metrics.csv: expected a header and one row");
    for (const auto& n : t.header)
      if (std::find(metric_names.begin(), metric_names.end(), n) == metric_names.end()) metric_names.push_back(n);
  }

  std::ostringstream csv;
  CsvWriter w(csv);
  std::vector<std::string> header = {"run_id", "point", "seed", "label"};
  header.insert(header.end(), keys.begin(), keys.end());
  header.emplace_back("policy");
  header.insert(header.end(), metric_names.begin(), metric_names.end());
  w.header(header);
  // values[point][metric] over the point's seeds
  std::vector<std::vector<std::vector<double>>> values(points.size(),
                                                       std::vector<std::vector<double>>(metric_names.size()));
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    const auto& p = points[static_cast<std::size_t>(r.point)];
    std::vector<std::string> row = {r.id, std::to_string(r.point), std::to_string(r.seed), p.label};
    for (const auto& k : keys) row.push_back(config_value(r.config, k));
    row.push_back(r.config.policy.name);
    for (std::size_t m = 0; m < metric_names.size(); ++m) {
      const int c = tables[i].column(metric_names[m]);
      const std::string v = c >= 0 ? tables[i].rows[0][static_cast<std::size_t>(c)] : "";
      row.push_back(v);
      double x = std::numeric_limits<double>::quiet_NaN();
      if (!v.empty() && v != "nan") x = std::strtod(v.c_str(), nullptr);
      values[static_cast<std::size_t>(r.point)][m].push_back(x);
    }
    w.text_row(row);
  }
  write_file_atomic(out + "/runs.csv", csv.str());

  std::ostringstream js;
  const auto seeds = sc.run_seeds();
  js << "{\n  \"scenario\": " << json_string(sc.name) << ",\n  \"description\": " << json_string(sc.description)
     << ",\n  \"source\": " << json_string(sc.path) << ",\n  \"overrides\": [";
  for (std::size_t i = 0; i < sc.overrides.size(); ++i) js << (i ? ", " : "") << json_string(sc.overrides[i]);
  js << "],\n  \"seeds\": [";
  for (std::size_t i = 0; i < seeds.size(); ++i) js << (i ? ", " : "") << seeds[i];
  js << "],\n  \"runs\": " << runs.size() << ",\n  \"config\": {";
  const auto fields = config_fields(sc.base);
  for (std::size_t i = 0; i < fields.size(); ++i)
    js << (i ? ",\n" : "\n") << "    " << json_string(fields[i].first) << ": " << json_string(fields[i].second);
  js << "\n  },\n  \"swept_keys\": [";
  for (std::size_t i = 0; i < keys.size(); ++i) js << (i ? ", " : "") << json_string(keys[i]);
  js << "],\n  \"stats\": \"mean, std (n-1), min, max over seeds of each final metric; NaNs skipped\",\n"
     << "  \"points\": [";
  for (std::size_t pi = 0; pi < points.size(); ++pi) {
    const auto& p = points[pi];
    js << (pi ? "," : "") << "\n    {\n      \"index\": " << p.index << ",\n      \"grid\": " << p.grid
       << ",\n      \"label\": " << json_string(p.label) << ",\n      \"policy\": " << json_string(p.config.policy.name)
       << ",\n      \"values\": {";
    for (std::size_t k = 0; k < keys.size(); ++k)
      js << (k ? ", " : "") << json_string(keys[k]) << ": " << json_string(config_value(p.config, keys[k]));
    js << "},\n      \"runs\": [";
    bool first = true;
    for (const auto& r : runs)
      if (r.point == p.index) js << (first ? "" : ", ") << json_string(r.id), first = false;
    js << "],\n      \"replay\": " << json_string(replay_command(sc, p, seeds.front(), program, ""))
       << ",\n      \"metrics\": {";
    for (std::size_t m = 0; m < metric_names.size(); ++m) {
      const auto s = seed_stats(values[pi][m]);
      js << (m ? "," : "") << "\n        " << json_string(metric_names[m]) << ": {\"mean\": " << json_number(s.mean)
         << ", \"std\": " << json_number(s.std) << ", \"min\": " << json_number(s.min)
         << ", \"max\": " << json_number(s.max) << ", \"n\": " << s.n << "}";
    }
    js << "\n      }\n    }";
  }
  js << "\n  ]\n}\n";
  write_file_atomic(out + "/summary.json", js.str());

  for (const auto& p : points) result.replay.push_back(replay_command(sc, p, seeds.front(), program, ""));
}

}  // namespace

namespace {

// Adaptive longest-first order for the worker pool: every point's first pending
// run starts first (in plan order), which measures what that point costs; the
// remaining runs then go slowest point first, so one slow policy (balanced
// assignment, say) does not leave a thread idle at the end. The order never
// changes a result: each run writes its own files and the tables are assembled
// in canonical order.
class RunQueue {
 public:
  RunQueue(const std::vector<std::size_t>& pending, const std::vector<int>& point_of) {
    std::vector<char> seen;
    for (std::size_t i = 0; i < pending.size(); ++i) {
      const auto p = static_cast<std::size_t>(point_of[i]);
      if (p >= seen.size()) seen.resize(p + 1, 0);
      (seen[p] ? rest_ : probes_).push_back({pending[i], point_of[i]});
      seen[p] = 1;
    }
    cost_.assign(seen.size(), -1.0);
  }
  // Returns false when nothing is left. Caller holds the pool's mutex.
  bool pop(std::size_t& run) {
    if (next_probe_ < probes_.size()) {
      run = probes_[next_probe_++].run;
      return true;
    }
    if (rest_.empty()) return false;
    std::size_t best = 0;
    for (std::size_t i = 1; i < rest_.size(); ++i)
      if (cost_of(rest_[i].point) > cost_of(rest_[best].point)) best = i;  // ties: plan order
    run = rest_[best].run;
    rest_.erase(rest_.begin() + static_cast<std::ptrdiff_t>(best));
    return true;
  }
  void record(int point, double seconds) { cost_[static_cast<std::size_t>(point)] = seconds; }

 private:
  struct Item {
    std::size_t run;
    int point;
  };
  // A point still being measured counts as costly: better started early than late.
  double cost_of(int point) const {
    const double c = cost_[static_cast<std::size_t>(point)];
    return c < 0 ? 1e300 : c;
  }
  std::vector<Item> probes_, rest_;
  std::size_t next_probe_ = 0;
  std::vector<double> cost_;
};

}  // namespace

SeedStats seed_stats(const std::vector<double>& xs) {
  SeedStats s;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  for (double x : xs) {
    if (std::isnan(x)) continue;
    if (s.n == 0 || x < s.min) s.min = x;
    if (s.n == 0 || x > s.max) s.max = x;
    sum += x;
    ++s.n;
  }
  if (s.n == 0) return {nan, nan, nan, nan, 0};
  s.mean = sum / s.n;
  double ss = 0;
  for (double x : xs)
    if (!std::isnan(x)) ss += (x - s.mean) * (x - s.mean);
  s.std = s.n > 1 ? std::sqrt(ss / (s.n - 1)) : 0.0;
  return s;
}

std::vector<RunSpec> plan_runs(const std::vector<SweepPoint>& points, const std::vector<std::uint64_t>& seeds) {
  int width = 3;
  for (std::size_t n = points.size(); n > 999; n /= 10) ++width;
  std::vector<RunSpec> runs;
  for (const auto& p : points)
    for (auto seed : seeds) {
      char id[64];
      std::snprintf(id, sizeof id, "p%0*d-s%llu", width, p.index, static_cast<unsigned long long>(seed));
      RunSpec r{id, p.index, seed, p.config};
      r.config.seed = seed;
      runs.push_back(std::move(r));
    }
  return runs;
}

std::string replay_command(const Scenario& sc, const SweepPoint& p, std::uint64_t seed, const std::string& program,
                           const std::string& out_dir) {
  // Appends piecewise: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string temporaries.
  std::string cmd = program;
  cmd += " run ";
  cmd += shell_quote(sc.path);
  for (const auto& a : replay_args(sc, p, seed)) {
    cmd += ' ';
    cmd += shell_quote(a);
  }
  if (!out_dir.empty()) {
    cmd += " --out ";
    cmd += shell_quote(out_dir);
  }
  return cmd;
}

SweepResult run_sweep(const Scenario& sc, const std::vector<SweepPoint>& points, const SweepOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.out_dir.empty()) throw Error("sweep: no output folder");
  const std::string out = opt.out_dir;
  std::error_code ec;
  fs::create_directories(out + "/runs", ec);
  if (ec) throw Error(out + "/runs: cannot create: " + ec.message());
  DirLock lock(out, "another sweep is writing into this folder");
  remove_temp_files(out);
  write_file_atomic(out + "/scenario.resolved.yaml", scenario_yaml(sc));

  const auto runs = plan_runs(points, sc.run_seeds());
  std::vector<std::size_t> pending;
  std::vector<std::string> texts(runs.size());
  std::int64_t units = 0;
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    const std::string dir = out + "/runs/" + r.id;
    texts[i] = run_config_text(sc, points[static_cast<std::size_t>(r.point)], r, opt.command);
    remove_temp_files(dir);
    if (run_complete(dir, texts[i])) continue;
    pending.push_back(i);
    units += r.config.steps * r.config.batch * r.config.layers;
  }
  SweepResult result;
  result.runs = static_cast<int>(runs.size());
  result.skipped = static_cast<int>(runs.size() - pending.size());

  int threads = opt.threads > 0 ? opt.threads : static_cast<int>(std::thread::hardware_concurrency());
  threads = std::max(1, std::min<int>(threads, static_cast<int>(pending.size())));
  std::vector<int> point_of(pending.size());
  for (std::size_t i = 0; i < pending.size(); ++i) point_of[i] = runs[pending[i]].point;
  RunQueue queue(pending, point_of);
  std::atomic<std::int64_t> units_done{0};
  std::atomic<bool> abort{false};
  std::mutex mu;
  std::condition_variable cv;
  int runs_done = 0, workers_left = threads;
  std::string error;
  double sim_seconds = 0;

  auto worker = [&] {
    for (;;) {
      std::size_t ri = 0;
      {
        std::lock_guard<std::mutex> g(mu);
        if (abort.load() || !queue.pop(ri)) break;
      }
      const auto& r = runs[ri];
      try {
        const std::string dir = out + "/runs/" + r.id;
        fs::create_directories(dir);
        fs::remove(dir + "/metrics.csv");  // a re-run (changed config) is not complete until it ends
        write_file_atomic(dir + "/config.yaml", texts[ri]);
        std::ostringstream ts;
        const std::int64_t per_step = static_cast<std::int64_t>(r.config.batch) * r.config.layers;
        std::int64_t seen = 0;
        auto progress = [&](std::int64_t done, std::int64_t) {
          units_done.fetch_add((done - seen) * per_step, std::memory_order_relaxed);
          seen = done;
        };
        const RunResult res = run_simulation(r.config, &ts, progress);
        write_file_atomic(dir + "/timeseries.csv", ts.str());
        std::ostringstream ms;
        write_metrics_csv(ms, res);
        write_file_atomic(dir + "/metrics.csv", ms.str());
        std::lock_guard<std::mutex> g(mu);
        ++runs_done;
        sim_seconds += res.seconds;
        queue.record(r.point, res.seconds);
        if (opt.on_run_done) opt.on_run_done(r);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> g(mu);
        if (error.empty()) error = "run " + r.id + " ('" + points[static_cast<std::size_t>(r.point)].label + "'): " + e.what();
        abort = true;
      }
      cv.notify_all();
    }
    std::lock_guard<std::mutex> g(mu);
    --workers_left;
    cv.notify_all();
  };

  Progress progress(opt.progress && !pending.empty(), static_cast<int>(pending.size()), units);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads && !pending.empty(); ++t) pool.emplace_back(worker);
  {
    std::unique_lock<std::mutex> g(mu);
    while (workers_left > 0 && !pool.empty()) {
      cv.wait_for(g, std::chrono::milliseconds(250));
      const int rd = runs_done;
      g.unlock();
      progress.show(rd, units_done.load(), false);
      g.lock();
    }
  }
  for (auto& t : pool) t.join();
  if (!error.empty()) throw Error(error);
  progress.show(runs_done, units_done.load(), true);

  for (std::size_t j : pending) result.token_steps += runs[j].config.steps * runs[j].config.batch * runs[j].config.layers;
  result.sim_seconds = sim_seconds;
  assemble_outputs(sc, points, runs, out, opt.command, result);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace moesim
