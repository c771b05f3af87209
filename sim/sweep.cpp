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

namespace {

// Runs not yet complete with their resolved config, and their work in token-steps.
std::vector<std::size_t> pending_runs(const RunStore& store, const std::vector<RunSpec>& runs, bool progress,
                                      std::int64_t& units) {
  std::vector<std::size_t> pending;
  units = 0;
  auto last = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    if (progress && runs.size() > 10000 && std::chrono::steady_clock::now() - last > std::chrono::seconds(2)) {
      last = std::chrono::steady_clock::now();
      std::fprintf(stderr, "sweep: checking finished runs %zu/%zu\n", i, runs.size());
    }
    if (store.complete(r)) continue;
    pending.push_back(i);
    units += r.config.steps * r.config.batch * r.config.layers;
  }
  return pending;
}

// The worker threads of one sweep and what they share: the queue, the progress
// counters and the first error (after which no new run starts).
class SweepPool {
 public:
  SweepPool(const Scenario& sc, const std::vector<SweepPoint>& points, const std::vector<RunSpec>& runs,
            const std::vector<std::size_t>& pending, const RunStore& store, const SweepOptions& opt)
      : sc_(sc), points_(points), runs_(runs), store_(store), opt_(opt), queue_(pending, points_of(runs, pending)) {}

  // Every pending run on `threads` threads, showing progress; throws the first run's Error.
  void run(int threads, Progress& progress) {
    std::vector<std::thread> pool;
    workers_left_ = threads;
    for (int t = 0; t < threads; ++t) pool.emplace_back([this] { worker(); });
    {
      std::unique_lock<std::mutex> g(mu_);
      while (workers_left_ > 0) {
        cv_.wait_for(g, std::chrono::milliseconds(250));
        const int rd = runs_done_;
        g.unlock();
        progress.show(rd, units_done_.load(), false);
        g.lock();
      }
    }
    for (auto& t : pool) t.join();
    if (!error_.empty()) throw Error(error_);
    progress.show(runs_done_, units_done_.load(), true);
  }
  double sim_seconds() const { return sim_seconds_; }

 private:
  static std::vector<int> points_of(const std::vector<RunSpec>& runs, const std::vector<std::size_t>& pending) {
    std::vector<int> p(pending.size());
    for (std::size_t i = 0; i < pending.size(); ++i) p[i] = runs[pending[i]].point;
    return p;
  }

  void worker() {
    for (;;) {
      std::size_t ri = 0;
      {
        std::lock_guard<std::mutex> g(mu_);
        if (abort_.load() || !queue_.pop(ri)) break;
      }
      execute(runs_[ri]);
      cv_.notify_all();
    }
    std::lock_guard<std::mutex> g(mu_);
    --workers_left_;
    cv_.notify_all();
  }

  // One run: simulate, then store its files (nothing is written when it fails).
  void execute(const RunSpec& r) {
    const auto& point = points_[static_cast<std::size_t>(r.point)];
    try {
      std::ostringstream ts;
      const std::int64_t per_step = static_cast<std::int64_t>(r.config.batch) * r.config.layers;
      std::int64_t seen = 0;
      auto progress = [&](std::int64_t done, std::int64_t) {
        units_done_.fetch_add((done - seen) * per_step, std::memory_order_relaxed);
        seen = done;
      };
      const RunResult res = run_simulation(r.config, &ts, progress);
      std::ostringstream ms;
      write_metrics_csv(ms, res);
      store_.finish(r, RunStore::config_file(sc_, point, r, opt_.command), ts.str(), ms.str());
      std::lock_guard<std::mutex> g(mu_);
      ++runs_done_;
      sim_seconds_ += res.seconds;
      queue_.record(r.point, res.seconds);
      if (opt_.on_run_done) opt_.on_run_done(r);
    } catch (const std::exception& e) {
      std::lock_guard<std::mutex> g(mu_);
      if (error_.empty()) error_ = "run " + r.id + " ('" + point.label + "'): " + e.what();
      abort_ = true;
    }
  }

  const Scenario& sc_;
  const std::vector<SweepPoint>& points_;
  const std::vector<RunSpec>& runs_;
  const RunStore& store_;
  const SweepOptions& opt_;
  RunQueue queue_;
  std::atomic<std::int64_t> units_done_{0};
  std::atomic<bool> abort_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  int runs_done_ = 0, workers_left_ = 0;
  std::string error_;
  double sim_seconds_ = 0;
};

}  // namespace

SweepResult run_sweep(const Scenario& sc, const std::vector<SweepPoint>& points, const SweepOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.out_dir.empty()) throw Error("sweep: no output folder");
  const RunStore store(opt.out_dir);
  const auto runs = plan_runs(points, sc.run_seeds());
  std::int64_t units = 0;
  const auto pending = pending_runs(store, runs, opt.progress, units);
  SweepResult result;
  result.runs = static_cast<int>(runs.size());
  result.skipped = static_cast<int>(runs.size() - pending.size());
  if (!pending.empty()) {
    int threads = opt.threads > 0 ? opt.threads : static_cast<int>(std::thread::hardware_concurrency());
    threads = std::max(1, std::min<int>(threads, static_cast<int>(pending.size())));
    Progress progress(opt.progress, static_cast<int>(pending.size()), units);
    SweepPool pool(sc, points, runs, pending, store, opt);
    pool.run(threads, progress);
    result.sim_seconds = pool.sim_seconds();
  }
  result.token_steps = units;
  store.assemble(sc, points, runs, opt.command);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace moesim
