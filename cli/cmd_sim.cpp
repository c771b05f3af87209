// `moesim run`, `moesim sweep` and `moesim report`: scenarios through the simulator.
#include <cstdio>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.hpp"
#include "common/args.hpp"
#include "common/csv.hpp"
#include "policies/knobs.hpp"
#include "policies/types.hpp"

#include "reports/report.hpp"
#include "metrics/load_metrics.hpp"
#include "sim/scenario.hpp"
#include "common/launch.hpp"
#include "sim/mpi_world.hpp"
#include "sim/sweep.hpp"

namespace moesim::cli {

namespace {

constexpr const char* kDefaultScenario = "scenarios/matthew.yaml";

// argv[0] as typed, so a printed replay command runs as is ("./build/moesim run ...").
std::string program_name() {
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  std::string s;
  if (in && std::getline(in, s, '\0') && !s.empty()) return s;
  return "moesim";
}

// What --help says about MPI in this build.
std::string mpi_help() {
  if (!MpiWorld::built_with_mpi())
    return "MPI: this moesim was built without MPI (libopenmpi-dev absent), so a sweep is one process.\n";
  return "MPI: mpirun -np N moesim sweep ... spreads the runs over N ranks (each with --threads\n"
         "threads, default its share of the machine's cores); rank 0 hands runs out longest-first.\n"
         "DIR must be one folder every rank sees (a shared filesystem across machines). The files\n"
         "are the same bytes as a one-process sweep's; a killed rank loses only its unfinished runs,\n"
         "and the same command resumes.\n";
}

// run and sweep: [SCENARIO] [key.path=value ...] [--out DIR] [--quiet] (+ --threads N for sweep)
ParsedArgs sim_args(const std::vector<std::string>& args, bool sweep) {
  ArgSpec spec;
  spec.options = {"--out"};
  spec.switches = {"--quiet"};
  spec.aliases = {{"-o", "--out"}, {"-q", "--quiet"}};
  if (sweep) {
    spec.options.push_back("--threads");
    spec.aliases["-j"] = "--threads";
  }
  spec.max_positional = 1;
  return parse_args(args, spec, sweep ? "sweep" : "run");
}

}  // namespace

namespace {

void print_key_metrics(const std::string& out, const std::vector<RunSpec>& runs) {
  const auto t = read_csv(out + "/runs.csv");
  for (std::size_t r = 0; r < t.rows.size() && r < runs.size(); ++r) {
    std::printf("  %s:", runs[r].id.c_str());
    for (const auto& m : headline_metrics()) {
      const char* k = m.name;
      const int c = t.column(k);
      if (c >= 0) std::printf(" %s=%s", k, t.rows[r][static_cast<std::size_t>(c)].c_str());
    }
    std::printf("\n");
  }
}

// Each distinct warning of the points' configs once, on stderr.
void print_warnings(const std::vector<SweepPoint>& points) {
  std::set<std::string> seen;
  for (const auto& p : points)
    for (const auto& w : config_warnings(p.config))
      if (seen.insert(w).second) std::fprintf(stderr, "warning: %s\n", w.c_str());
}

}  // namespace

int cmd_run(const std::vector<std::string>& args) {
  if (wants_help(args)) {
    std::printf(
        "usage: moesim run SCENARIO [key.path=value ...] [--out DIR] [--quiet]\n"
        "       moesim run --keys     every config key with its type and one line of help\n\n"
        "One run of the scenario's base config (its sweep is ignored) with the seed `seed`\n"
        "(default: the first of `seeds`). Writes the same files as a sweep of one run:\n"
        "DIR/runs/<run_id>/{config.yaml,timeseries.csv,metrics.csv}, DIR/runs.csv,\n"
        "DIR/summary.json, DIR/scenario.resolved.yaml. DIR defaults to out/<name>-run.\n"
        "Overrides apply after the file; the value is YAML: world.skill_growth=0.1,\n"
        "policy.name=rdesi, 'policy={name: rdesi, knobs: {beta: 0.5}}' (a whole policy).\n"
        "Every sweep prints the `moesim run` line that replays each of its runs exactly.\n");
    return 0;
  }
  if (args.size() == 1 && args[0] == "--keys") {
    for (const auto& k : config_keys()) std::printf("  %-28s %-7s %s\n", k.key.c_str(), k.type.c_str(), k.help.c_str());
    return 0;
  }
  const auto a = sim_args(args, false);
  if (a.positional.empty()) throw Error("missing SCENARIO (e.g. moesim run scenarios/matthew.yaml)");
  Scenario sc = load_scenario(a.positional.front(), a.overrides);
  if (!sc.origins.count("seed") && !sc.seeds.empty()) sc.base.seed = sc.seeds.front();
  sc.grids.clear();
  sc.seeds = {sc.base.seed};
  const auto points = expand_sweep(sc);
  print_warnings(points);
  const std::string out = a.get("--out", "out/" + sc.name + "-run");
  SweepOptions opt;
  opt.out_dir = out;
  opt.threads = 1;
  opt.progress = !a.has("--quiet");
  const auto res = run_sweep(sc, points, opt);
  const auto runs = plan_runs(points, sc.run_seeds());
  std::printf("run %s of scenario '%s': seed %llu, policy %s, %s\n", runs.front().id.c_str(), sc.name.c_str(),
              static_cast<unsigned long long>(sc.base.seed), sc.base.policy.name.c_str(),
              res.skipped ? "already complete (kept)" : "done");
  print_key_metrics(out, runs);
  std::printf("outputs: %s/{runs.csv,summary.json,scenario.resolved.yaml,runs/%s/}\n", out.c_str(),
              runs.front().id.c_str());
  std::printf("replay: %s\n", replay_command(sc, points.front(), sc.base.seed, program_name(), out).c_str());
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
        "Then: moesim report DIR\n\n"
        "%s",
        kDefaultScenario, mpi_help().c_str());
    return 0;
  }
  const auto a = sim_args(args, true);
  const Scenario sc = load_scenario(a.positional.empty() ? kDefaultScenario : a.positional.front(), a.overrides);
  const auto points = expand_sweep(sc);
  const MpiWorld& world = MpiWorld::get();
  if (world.rank() == 0) print_warnings(points);
  const auto seeds = sc.run_seeds();
  const std::string out = a.get("--out", "out/" + sc.name);
  SweepOptions opt;
  opt.out_dir = out;
  // Ranks sharing a machine share its cores.
  const LaunchPlace place = launch_place();
  const long cores = std::max(1L, static_cast<long>(std::thread::hardware_concurrency()) / place.local_size);
  opt.threads = static_cast<int>(a.whole("--threads", cores, 1, 4096));
  opt.progress = !a.has("--quiet");
  std::string seed_list;
  for (auto s : seeds) seed_list += (seed_list.empty() ? "" : ", ") + std::to_string(s);
  if (world.rank() != 0) {
    try {
      run_sweep(sc, points, opt);
    } catch (const SweepPeerFailed&) {
      return 1;  // rank 0 says why
    }
    return 0;
  }
  const std::string ranks = world.size() > 1 ? std::to_string(world.size()) + " MPI ranks x " : "";
  std::printf("sweep '%s' (%s): %zu points x %zu seeds = %zu runs on %s%d threads into %s\nseeds: %s\n",
              sc.name.c_str(), sc.path.c_str(), points.size(), seeds.size(), points.size() * seeds.size(),
              ranks.c_str(), opt.threads, out.c_str(), seed_list.c_str());
  std::fflush(stdout);
  const auto res = run_sweep(sc, points, opt);
  const double rate = res.seconds > 0 ? static_cast<double>(res.token_steps) / res.seconds / 1e6 : 0.0;
  std::printf("done: %d runs (%d kept from an earlier attempt) in %.1f s, %.2f M token-steps/s\n", res.runs,
              res.skipped, res.seconds, rate);
  std::printf("outputs: %s/{runs.csv,summary.json,scenario.resolved.yaml,runs/<run_id>/timeseries.csv}\n",
              out.c_str());
  const std::string prog = program_name();
  std::printf("replay one run (seed=%llu; any seed of %s works):\n", static_cast<unsigned long long>(seeds.front()),
              seed_list.c_str());
  const std::size_t show = points.size() <= 24 ? points.size() : 8;
  for (std::size_t i = 0; i < show; ++i)
    std::printf("  [%d %s] %s\n", points[i].index, points[i].label.c_str(),
                replay_command(sc, points[i], seeds.front(), prog, out + "/replay").c_str());
  if (show < points.size())
    std::printf("  ... %zu more in %s/summary.json (points[].replay)\n", points.size() - show, out.c_str());
  std::printf("next: %s report %s\n", prog.c_str(), out.c_str());
  return 0;
}

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
  ArgSpec spec;
  spec.switches = {"--no-plots"};
  spec.max_positional = 1;
  const auto a = parse_args(args, spec, "report");
  if (!a.overrides.empty()) throw Error("report: takes no key=value overrides");
  if (a.positional.empty()) throw Error("missing OUTDIR (a folder written by moesim sweep or moesim run)");
  const std::string& dir = a.positional.front();
  ReportOptions opt;
  opt.plots = !a.has("--no-plots");
  const auto res = is_training_folder(dir) ? write_training_report(dir, opt) : write_report(dir, opt);
  for (const auto& w : res.warnings) std::fprintf(stderr, "moesim report: warning: %s\n", w.c_str());
  std::printf("report: %s (%d plots)\n", res.markdown.c_str(), res.plots);
  return 0;
}

}  // namespace moesim::cli
