#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "policies/types.hpp"

namespace moesim::cli {

const std::vector<Command>& commands() {
  static const std::vector<Command> all = {
      {"policies", "list every routing policy with its knobs, defaults and what each does", cmd_policies},
      {"demo", "route 50 synthetic batches through every policy and print load statistics", cmd_demo},
      {"run", "one seeded simulation of a scenario's base config (prints its replay command)", cmd_run},
      {"sweep", "all points x seeds of a scenario in parallel, resumable (default: scenarios/matthew.yaml)", cmd_sweep},
      {"report", "plots and a Markdown summary of a sweep's output folder", cmd_report},
      {"confirm", "training runs vs their replayed traces vs the calibrated simulator: agreement, claims, report", cmd_confirm},
      {"train", "train the LibTorch MoE Transformer on C4 through a policy (--config FILE [key=value...])", cmd_train},
      {"eval", "validation perplexity of a training checkpoint", cmd_eval},
      {"generate", "sample text from a training checkpoint (temperature, top-k)", cmd_generate},
      {"select", "router-based data selection (seed 004): mix, warmup, score, train, eval, run, report", cmd_select},
      {"bench", "bench train: training tokens/s and MFU against the measured matmul peak", cmd_bench},
  };
  return all;
}

static void usage(std::FILE* f) {
  std::fprintf(f,
               "moesim: deterministic simulation and testing harness for MoE routing policies\n\n"
               "usage: moesim <command> [args...]\n       moesim <command> --help\n\ncommands:\n");
  for (const auto& c : commands()) std::fprintf(f, "  %-10s %s\n", c.name, c.summary);
}

}  // namespace moesim::cli

int main(int argc, char** argv) {
  using namespace moesim::cli;
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  const std::string name = argv[1];
  if (name == "--help" || name == "-h" || name == "help") {
    usage(stdout);
    return 0;
  }
  std::vector<std::string> args(argv + 2, argv + argc);
  for (const auto& c : commands()) {
    if (name != c.name) continue;
    try {
      return c.run(args);
    } catch (const moesim::Error& e) {
      std::fprintf(stderr, "moesim %s: error: %s\n", c.name, e.what());
      return 1;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "moesim %s: internal error: %s\n", c.name, e.what());
      return 3;
    }
  }
  std::fprintf(stderr, "moesim: unknown command '%s'\n", name.c_str());
  usage(stderr);
  return 2;
}
