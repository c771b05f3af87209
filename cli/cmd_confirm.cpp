// moesim confirm: does what the simulator concludes hold in the trained model?
#include <cstdio>

#include "cli/commands.hpp"
#include "common/args.hpp"
#include "common/error.hpp"
#include "confirm/confirm.hpp"

namespace moesim::cli {

int cmd_confirm(const std::vector<std::string>& args) {
  if (wants_help(args)) {
    std::printf(
        "usage: moesim confirm RUN_DIR RUN_DIR... --out DIR [--no-plots] [confirm.key=value ...]\n\n"
        "Compares training runs of one model, each with its own policy, with the\n"
        "simulator. Inputs: each RUN_DIR is a `moesim train` out_dir (config.yaml,\n"
        "train_log.csv, traces/ recorded with train.trace_every). Per run, the same load\n"
        "metrics (late batch and global MaxVio, Gini, CV, dead and starved experts, drop\n"
        "rate, RGR slope) from three sources: the training log (real), the recorded\n"
        "logits replayed through the run's policy (replay), and the synthetic simulator\n"
        "matched to the model and calibrated on one reference run (sim). Runs that differ\n"
        "only by seed are averaged.\n\n"
        "Outputs in DIR: metrics.csv (group, policy, source, one column per metric),\n"
        "agreement.csv (Spearman sim/replay vs real per metric), claims.csv (the\n"
        "simulator's claims tested in each source), calibration.csv (grid and loss),\n"
        "prediction.csv (sim - real of the held-out groups), summary.json, confirm.md\n"
        "and plots/ (metric bars, load shares over time; gnuplot).\n\n"
        "keys: confirm.window (100: late training steps), confirm.reference (run label to\n"
        "calibrate on; default the top-k run with aux loss), confirm.seed (1),\n"
        "confirm.threads (2), and the calibration grid: confirm.gate_lr (0.03,0.1,0.3,1),\n"
        "confirm.skill_growth (0,0.05,0.2), confirm.clusters (4,8,16), confirm.init_scale\n"
        "(0.5,1,2), confirm.aux_scale (1,10,100: the simulator's gate.aux_loss is the run's\n"
        "moe.aux_loss_coef times this); confirm.perf_spread (false; true: world.perf_scale_spread\n"
        "= the reference's recorded spread of ln(performance) across experts),\n"
        "confirm.perf_level (false: scale the world to its recorded performance level).\n");
    return 0;
  }
  ArgSpec spec;
  spec.options = {"--out"};
  spec.switches = {"--no-plots"};
  spec.max_positional = 1 << 16;
  const auto a = parse_args(args, spec, "confirm");
  if (!a.has("--out")) throw Error("confirm: --out DIR is required");
  ConfirmConfig cfg;
  for (const auto& o : a.overrides) {
    const auto eq = o.find('=');
    set_confirm_key(cfg, o.substr(0, eq), o.substr(eq + 1));
  }
  const auto res = confirm_runs(a.positional, cfg, stderr);
  std::vector<std::string> warnings;
  write_confirm(res, a.get("--out"), !a.has("--no-plots"), "gnuplot", warnings);
  for (const auto& w : warnings) std::fprintf(stderr, "moesim confirm: warning: %s\n", w.c_str());
  int tested = 0, confirmed = 0;
  for (const auto& c : res.claims) tested += c.tested, confirmed += c.tested && c.sim == c.real;
  std::printf("confirm: %zu groups, calibrated on %s; %d of %d claims confirmed; %.1f s\nreport: %s/confirm.md\n",
              res.groups.size(), res.reference.c_str(), confirmed, tested, res.seconds, a.get("--out").c_str());
  return 0;
}

}  // namespace moesim::cli
