// `moesim run`, `moesim sweep` and `moesim report`: scenarios through the simulator.
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.hpp"
#include "policies/knobs.hpp"
#include "policies/types.hpp"

#ifdef MOESIM_HAVE_SIM
#include "sim/scenario.hpp"
#include "sim/sweep.hpp"
#endif
#ifdef MOESIM_HAVE_REPORTS
#include "reports/report.hpp"
#endif

namespace moesim::cli {

namespace {

constexpr const char* kDefaultScenario = "scenarios/matthew.yaml";

bool wants_help(const std::vector<std::string>& args) {
  for (const auto& a : args)
    if (a == "--help" || a == "-h") return true;
  return false;
}

// argv[0] as typed, so a printed replay command runs as is ("./build/moesim run ...").
std::string program_name() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string s;
  if (in && std::getline(in, s, '\0') && !s.empty()) return s;
  return "moesim";
}

struct SimArgs {
  std::string scenario;
  std::vector<std::string> overrides;
  std::string out;
  int threads = 0;
  bool quiet = false;
};

SimArgs parse_sim_args(const std::vector<std::string>& args, bool allow_threads) {
  SimArgs a;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& s = args[i];
    auto value = [&](const char* flag) -> const std::string& {
      if (i + 1 >= args.size()) throw Error(std::string(flag) + ": missing value");
      return args[++i];
    };
    if (s == "--out" || s == "-o") {
      a.out = value("--out");
      if (a.out.empty()) throw Error("--out: expected a folder");
    } else if (s.rfind("--out=", 0) == 0) {
      a.out = s.substr(6);
      if (a.out.empty()) throw Error("--out: expected a folder");
    } else if (allow_threads && (s == "--threads" || s == "-j" || s.rfind("--threads=", 0) == 0)) {
      const std::string v = s.rfind("--threads=", 0) == 0 ? s.substr(10) : value("--threads");
      long n = 0;
      if (!parse_int(v, n) || n < 1 || n > 4096)
        throw Error("--threads: expected a whole number in [1, 4096], got '" + v + "'");
      a.threads = static_cast<int>(n);
    } else if (s == "--quiet" || s == "-q") {
      a.quiet = true;
    } else if (!s.empty() && s[0] == '-') {
      throw Error("unknown option '" + s + "' (see --help)");
    } else if (s.find('=') != std::string::npos) {
      a.overrides.push_back(s);
    } else if (a.scenario.empty()) {
      a.scenario = s;
    } else {
      throw Error("unexpected argument '" + s + "': the scenario is '" + a.scenario +
                  "'; overrides are key.path=value");
    }
  }
  return a;
}

}  // namespace

#ifdef MOESIM_HAVE_SIM

namespace {

void print_key_metrics(const std::string& out, const std::vector<RunSpec>& runs) {
  const auto t = read_csv(out + "/runs.csv");
  const char* keys[] = {"late_gini", "maxvio_batch", "maxvio_global", "late_load_cv", "dead", "drop_rate",
                        "spec_mi_bits", "rgr_slope", "mean_perf"};
  for (std::size_t r = 0; r < t.rows.size() && r < runs.size(); ++r) {
    std::printf("  %s:", runs[r].id.c_str());
    for (const char* k : keys) {
      const int c = t.column(k);
      if (c >= 0) std::printf(" %s=%s", k, t.rows[r][static_cast<std::size_t>(c)].c_str());
    }
    std::printf("\n");
  }
}

}  // namespace

int cmd_run(const std::vector<std::string>& args) {
  if (wants_help(args)) {
    std::printf(
        "usage: moesim run SCENARIO [key.path=value ...] [--out DIR] [--quiet]\n\n"
        "One run of the scenario's base config (its sweep is ignored) with the seed `seed`\n"
        "(default: the first of `seeds`). Writes the same files as a sweep of one run:\n"
        "DIR/runs/<run_id>/{config.yaml,timeseries.csv,metrics.csv}, DIR/runs.csv,\n"
        "DIR/summary.json, DIR/scenario.resolved.yaml. DIR defaults to out/<name>-run.\n"
        "Overrides apply after the file; the value is YAML: world.skill_growth=0.1,\n"
        "policy.name=rdesi, 'policy={name: rdesi, knobs: {beta: 0.5}}' (a whole policy).\n"
        "Every sweep prints the `moesim run` line that replays each of its runs exactly.\n");
    return 0;
  }
  SimArgs a = parse_sim_args(args, false);
  if (a.scenario.empty()) throw Error("missing SCENARIO (e.g. moesim run scenarios/matthew.yaml)");
  Scenario sc = load_scenario(a.scenario, a.overrides);
  if (!sc.origins.count("seed") && !sc.seeds.empty()) sc.base.seed = sc.seeds.front();
  sc.grids.clear();
  sc.seeds = {sc.base.seed};
  const auto points = expand_sweep(sc);
  if (a.out.empty()) a.out = "out/" + sc.name + "-run";
  SweepOptions opt;
  opt.out_dir = a.out;
  opt.threads = 1;
  opt.progress = !a.quiet;
  const auto res = run_sweep(sc, points, opt);
  const auto runs = plan_runs(points, sc.run_seeds());
  std::printf("run %s of scenario '%s': seed %llu, policy %s, %s\n", runs.front().id.c_str(), sc.name.c_str(),
              static_cast<unsigned long long>(sc.base.seed), sc.base.policy.name.c_str(),
              res.skipped ? "already complete (kept)" : "done");
  print_key_metrics(a.out, runs);
  std::printf("outputs: %s/{runs.csv,summary.json,scenario.resolved.yaml,runs/%s/}\n", a.out.c_str(),
              runs.front().id.c_str());
  std::printf("replay: %s\n", replay_command(sc, points.front(), sc.base.seed, program_name(), a.out).c_str());
  return 0;
}

int cmd_sweep(const std::vector<std::string>& args) {
  if (wants_help(args)) {
    std::printf(
        "usage: moesim sweep [SCENARIO] [key.path=value ...] [--out DIR] [--threads N] [--quiet]\n\n"
        "Runs every sweep point of SCENARIO (default %s) once per seed, in parallel on\n"
        "N threads (default: all cores; the files do not depend on N), into DIR (default\n"
        "out/<name>). An interrupted sweep resumes where it stopped when run again with\n"
        "the same DIR: finished runs are kept, unfinished ones redone, and the outputs are\n"
        "the same bytes as an uninterrupted sweep's.\n\n"
        "Overrides apply after the file; the value is YAML:\n"
        "  steps=200 world.skill_growth=0.1     base config keys\n"
        "  seeds=[1,2,3]                        the seeds\n"
        "  sweep.policy.knobs.beta=[0.1,0.5]    replace (or add) one sweep axis; sweep.KEY=[] drops it\n"
        "  sweep=null                           no sweep: the base config only\n"
        "Outputs: DIR/runs.csv (one row per run), DIR/runs/<run_id>/timeseries.csv,\n"
        "DIR/summary.json (per point: mean/std/min/max over seeds), DIR/scenario.resolved.yaml.\n"
        "Then: moesim report DIR\n",
        kDefaultScenario);
    return 0;
  }
  SimArgs a = parse_sim_args(args, true);
  if (a.scenario.empty()) a.scenario = kDefaultScenario;
  const Scenario sc = load_scenario(a.scenario, a.overrides);
  const auto points = expand_sweep(sc);
  const auto seeds = sc.run_seeds();
  if (a.out.empty()) a.out = "out/" + sc.name;
  SweepOptions opt;
  opt.out_dir = a.out;
  opt.threads = a.threads > 0 ? a.threads : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  opt.progress = !a.quiet;
  std::string seed_list;
  for (auto s : seeds) seed_list += (seed_list.empty() ? "" : ", ") + std::to_string(s);
  std::printf("sweep '%s' (%s): %zu points x %zu seeds = %zu runs on %d threads into %s\nseeds: %s\n",
              sc.name.c_str(), sc.path.c_str(), points.size(), seeds.size(), points.size() * seeds.size(),
              opt.threads, a.out.c_str(), seed_list.c_str());
  std::fflush(stdout);
  const auto res = run_sweep(sc, points, opt);
  const double rate = res.seconds > 0 ? static_cast<double>(res.token_steps) / res.seconds / 1e6 : 0.0;
  std::printf("done: %d runs (%d kept from an earlier attempt) in %.1f s, %.2f M token-steps/s\n", res.runs,
              res.skipped, res.seconds, rate);
  std::printf("outputs: %s/{runs.csv,summary.json,scenario.resolved.yaml,runs/<run_id>/timeseries.csv}\n",
              a.out.c_str());
  const std::string prog = program_name();
  std::printf("replay one run (seed=%llu; any seed of %s works):\n", static_cast<unsigned long long>(seeds.front()),
              seed_list.c_str());
  const std::size_t show = points.size() <= 24 ? points.size() : 8;
  for (std::size_t i = 0; i < show; ++i)
    std::printf("  [%d %s] %s\n", points[i].index, points[i].label.c_str(),
                replay_command(sc, points[i], seeds.front(), prog, a.out + "/replay").c_str());
  if (show < points.size())
    std::printf("  ... %zu more in %s/summary.json (points[].replay)\n", points.size() - show, a.out.c_str());
  std::printf("next: %s report %s\n", prog.c_str(), a.out.c_str());
  return 0;
}

#else

int cmd_run(const std::vector<std::string>&) { throw Error("this moesim was built without the simulator (sim/)"); }
int cmd_sweep(const std::vector<std::string>&) { throw Error("this moesim was built without the simulator (sim/)"); }

#endif

int cmd_report(const std::vector<std::string>& args) {
  if (wants_help(args)) {
    std::printf(
        "usage: moesim report OUTDIR [--no-plots]\n\n"
        "Writes OUTDIR/report.md and its plots (OUTDIR/plots/*.png and *.svg, with the\n"
        "gnuplot scripts and data that made them) from a sweep's or a run's outputs:\n"
        "load share per expert over time, Gini and MaxVio over time per policy, RD-ESI\n"
        "reputations, a heatmap for each 2-D grid, final metrics with spread over seeds,\n"
        "and a table of mean +- std over seeds of the key final metrics per point.\n"
        "OUTDIR may also be a `moesim train` run folder, or a folder of them (e.g. runs/):\n"
        "training loss, validation perplexity and expert load over training, side by side.\n"
        "--no-plots: tables only (no gnuplot needed).\n");
    return 0;
  }
  std::string dir;
  bool plots = true;
  for (const auto& s : args) {
    if (s == "--no-plots") {
      plots = false;
    } else if (!s.empty() && s[0] == '-') {
      throw Error("unknown option '" + s + "' (see --help)");
    } else if (dir.empty()) {
      dir = s;
    } else {
      throw Error("unexpected argument '" + s + "': one OUTDIR only");
    }
  }
  if (dir.empty()) throw Error("missing OUTDIR (a folder written by moesim sweep or moesim run)");
#ifdef MOESIM_HAVE_REPORTS
  ReportOptions opt;
  opt.plots = plots;
  const auto res = is_training_folder(dir) ? write_training_report(dir, opt) : write_report(dir, opt);
  for (const auto& w : res.warnings) std::fprintf(stderr, "moesim report: warning: %s\n", w.c_str());
  std::printf("report: %s (%d plots)\n", res.markdown.c_str(), res.plots);
  return 0;
#else
  (void)plots;
  throw Error("this moesim was built without reports (reports/)");
#endif
}

}  // namespace moesim::cli
