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
#include <optional>
#include <sstream>
#include <thread>

#include "common/hash.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "policies/types.hpp"
#include "common/csv.hpp"
#include "sim/mpi_world.hpp"
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

// A run's work, in token-steps (the progress and ETA unit).
std::int64_t run_units(const RunSpec& r) {
  return static_cast<std::int64_t>(r.config.steps) * r.config.batch * r.config.layers;
}

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
    units += run_units(r);
  }
  return pending;
}

// The message tags of a sweep over MPI ranks. Rank 0 owns the folder and the queue;
// every other rank says hello (its thread count and a hash of its plan), waits for
// start, then each of its threads asks rank 0 for a run, reporting the run it just
// finished (or its error) in the same request, until rank 0 answers -1. Rank 0
// sends end (with the sweep's error, if any) after the tables are assembled.
enum Tag : int { kHello = 1, kStart = 2, kRequest = 3, kAssign = 4, kEnd = 5 };

// A hash of every run's id and resolved config: all ranks must plan the same sweep.
std::int64_t plan_hash(const std::vector<RunSpec>& runs) {
  std::uint64_t h = kFnvOffset;
  for (const auto& r : runs)
    for (const std::string& s : {r.id, config_yaml(r.config)}) {
      const std::uint64_t n = s.size();  // length first: "ab"+"c" and "a"+"bc" differ
      h = fnv1a(s, fnv1a_bytes(&n, sizeof n, h));
    }
  return static_cast<std::int64_t>(h >> 1);
}

// One run: simulate, then store its files (nothing is written when it fails).
// Returns the run's seconds; add_units receives its token-steps as they are done.
double execute_run(const Scenario& sc, const SweepPoint& point, const RunSpec& r, const RunStore& store,
                   const std::string& program, const std::function<void(std::int64_t)>& add_units) {
  std::ostringstream ts;
  const std::int64_t per_step = static_cast<std::int64_t>(r.config.batch) * r.config.layers;
  std::int64_t seen = 0;
  auto progress = [&](std::int64_t done, std::int64_t) {
    add_units((done - seen) * per_step);
    seen = done;
  };
  const RunResult res = run_simulation(r.config, &ts, progress);
  std::ostringstream ms;
  write_metrics_csv(ms, res);
  store.finish(r, RunStore::config_file(sc, point, r, program), ts.str(), ms.str());
  return res.seconds;
}

// The worker threads of rank 0 (or of the only process) and what they share with
// the other ranks' threads: the queue, the progress counters and the first error
// (after which no new run starts, here or on another rank).
class SweepPool {
 public:
  SweepPool(const Scenario& sc, const std::vector<SweepPoint>& points, const std::vector<RunSpec>& runs,
            const std::vector<std::size_t>& pending, const RunStore& store, const SweepOptions& opt)
      : sc_(sc), points_(points), runs_(runs), store_(store), opt_(opt), queue_(pending, points_of(runs, pending)) {}

  // Every pending run on `threads` local threads and the other ranks' `remote_threads`,
  // showing progress; throws the first run's Error once every thread has stopped.
  void run(int threads, int remote_threads, MpiWorld& world, Progress& progress) {
    std::vector<std::thread> pool;
    workers_left_ = threads;
    for (int t = 0; t < threads; ++t) pool.emplace_back([this] { worker(); });
    auto shown = std::chrono::steady_clock::now();
    {
      std::unique_lock<std::mutex> g(mu_);
      while (workers_left_ > 0 || stopped_remote_ < remote_threads) {
        if (stopped_remote_ < remote_threads) {
          SweepMessage m;
          int from = 0;
          g.unlock();
          const bool got = world.poll(kRequest, m, from);
          g.lock();
          if (got)
            answer(m, from, world);
          else
            cv_.wait_for(g, std::chrono::milliseconds(1));
        } else {
          cv_.wait_for(g, std::chrono::milliseconds(250));
        }
        if (std::chrono::steady_clock::now() - shown >= std::chrono::milliseconds(250)) {
          shown = std::chrono::steady_clock::now();
          const int rd = runs_done_;
          g.unlock();
          progress.show(rd, units_done_.load(), false);
          g.lock();
        }
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

  // A request from another rank's thread: book the run it reports, hand it the next one. Caller holds mu_.
  void answer(const SweepMessage& m, int from, MpiWorld& world) {
    if (m.a >= 0 && static_cast<std::size_t>(m.a) < runs_.size()) {
      const RunSpec& r = runs_[static_cast<std::size_t>(m.a)];
      if (m.ok) {
        units_done_.fetch_add(run_units(r), std::memory_order_relaxed);
        booked(r, m.seconds);
      } else {
        failed(r, m.get_text() + " (on rank " + std::to_string(from) + ")");
      }
    }
    SweepMessage reply;
    std::size_t ri = 0;
    reply.a = !abort_.load() && queue_.pop(ri) ? static_cast<std::int64_t>(ri) : -1;
    if (reply.a < 0) ++stopped_remote_;
    world.send(from, kAssign, reply);
  }

  void worker() {
    for (;;) {
      std::size_t ri = 0;
      {
        std::lock_guard<std::mutex> g(mu_);
        if (abort_.load() || !queue_.pop(ri)) break;
      }
      const RunSpec& r = runs_[ri];
      try {
        const double s = execute_run(sc_, points_[static_cast<std::size_t>(r.point)], r, store_, opt_.command,
                                     [this](std::int64_t u) { units_done_.fetch_add(u, std::memory_order_relaxed); });
        std::lock_guard<std::mutex> g(mu_);
        booked(r, s);
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> g(mu_);
        failed(r, e.what());
      }
      cv_.notify_all();
    }
    std::lock_guard<std::mutex> g(mu_);
    --workers_left_;
    cv_.notify_all();
  }

  // Caller holds mu_.
  void booked(const RunSpec& r, double seconds) {
    ++runs_done_;
    sim_seconds_ += seconds;
    queue_.record(r.point, seconds);
    if (opt_.on_run_done) opt_.on_run_done(r);
  }
  void failed(const RunSpec& r, const std::string& what) {
    if (error_.empty()) error_ = "run " + r.id + " ('" + points_[static_cast<std::size_t>(r.point)].label + "'): " + what;
    abort_ = true;
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
  int runs_done_ = 0, workers_left_ = 0, stopped_remote_ = 0;
  std::string error_;
  double sim_seconds_ = 0;
};

// A rank other than 0: its threads take runs from rank 0 until it has none left.
SweepResult serve_runs(const Scenario& sc, const std::vector<SweepPoint>& points, const SweepOptions& opt, int threads,
                       MpiWorld& world) {
  const auto runs = plan_runs(points, sc.run_seeds());
  SweepMessage hello;
  hello.a = threads;
  hello.b = plan_hash(runs);
  world.send(0, kHello, hello);
  const SweepMessage start = world.wait(0, kStart);
  if (!start.ok) throw SweepPeerFailed(start.get_text());
  const RunStore store(opt.out_dir, RunStore::Role::helper);
  std::mutex link;  // MPI_THREAD_SERIALIZED: one request in flight per rank
  auto worker = [&] {
    SweepMessage report;
    report.a = -1;
    for (;;) {
      SweepMessage assign;
      {
        std::lock_guard<std::mutex> g(link);
        world.send(0, kRequest, report);
        assign = world.wait(0, kAssign);
      }
      if (assign.a < 0 || static_cast<std::size_t>(assign.a) >= runs.size()) return;
      const RunSpec& r = runs[static_cast<std::size_t>(assign.a)];
      report = SweepMessage{};
      report.a = assign.a;
      try {
        report.seconds = execute_run(sc, points[static_cast<std::size_t>(r.point)], r, store, opt.command,
                                     [](std::int64_t) {});
      } catch (const std::exception& e) {
        report.ok = 0;
        report.set_text(e.what());
      }
    }
  };
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (auto& t : pool) t.join();
  const SweepMessage end = world.wait(0, kEnd);
  if (!end.ok) throw SweepPeerFailed(end.get_text());
  SweepResult result;
  result.runs = static_cast<int>(runs.size());
  return result;
}

// Rank 0 of several: every other rank's hello, checked against this plan; `fail`
// (this rank's own setup error, if any) or a mismatch goes back in start. Returns
// the other ranks' thread count.
int greet_ranks(MpiWorld& world, const std::vector<RunSpec>& runs, std::string& fail) {
  const std::int64_t hash = fail.empty() ? plan_hash(runs) : 0;
  int remote = 0;
  for (int r = 1; r < world.size(); ++r) {
    const SweepMessage hello = world.wait(r, kHello);
    remote += static_cast<int>(hello.a);
    if (fail.empty() && hello.b != hash)
      fail = "rank " + std::to_string(r) + " planned another sweep (a different scenario file or overrides there)";
  }
  SweepMessage start;
  start.ok = fail.empty();
  start.set_text(fail);
  for (int r = 1; r < world.size(); ++r) world.send(r, kStart, start);
  return remote;
}

void end_ranks(MpiWorld& world, const std::string& error) {
  SweepMessage end;
  end.ok = error.empty();
  end.set_text(error);
  for (int r = 1; r < world.size(); ++r) world.send(r, kEnd, end);
}

}  // namespace

SweepResult run_sweep(const Scenario& sc, const std::vector<SweepPoint>& points, const SweepOptions& opt) {
  const auto t0 = std::chrono::steady_clock::now();
  if (opt.out_dir.empty()) throw Error("sweep: no output folder");
  MpiWorld& world = MpiWorld::get();
  const int hw = std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  const int threads_wanted = opt.threads > 0 ? opt.threads : hw;
  if (world.rank() != 0) return serve_runs(sc, points, opt, threads_wanted, world);

  std::string fail;
  std::optional<RunStore> store;
  std::vector<RunSpec> runs;
  std::vector<std::size_t> pending;
  std::int64_t units = 0;
  try {
    store.emplace(opt.out_dir);
    runs = plan_runs(points, sc.run_seeds());
    pending = pending_runs(*store, runs, opt.progress, units);
  } catch (const Error& e) {
    fail = e.what();
  }
  const int remote_threads = world.size() > 1 ? greet_ranks(world, runs, fail) : 0;
  if (!fail.empty()) throw Error(fail);

  SweepResult result;
  result.runs = static_cast<int>(runs.size());
  result.skipped = static_cast<int>(runs.size() - pending.size());
  try {
    if (!pending.empty() || remote_threads > 0) {
      const int threads = std::max(1, std::min<int>(threads_wanted, static_cast<int>(pending.size())));
      Progress progress(opt.progress, static_cast<int>(pending.size()), units);
      SweepPool pool(sc, points, runs, pending, *store, opt);
      pool.run(pending.empty() ? 0 : threads, remote_threads, world, progress);
      result.sim_seconds = pool.sim_seconds();
    }
    result.token_steps = units;
    store->assemble(sc, points, runs, opt.command);
  } catch (const std::exception& e) {
    end_ranks(world, e.what());
    throw;
  }
  end_ranks(world, "");
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return result;
}

}  // namespace moesim
