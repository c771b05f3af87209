#pragma once
// Subcommands of the single `moesim` executable. Each takes the arguments after
// its own name and returns the process exit code.
#include <string>
#include <vector>

namespace moesim::cli {

struct Command {
  const char* name;
  const char* summary;
  int (*run)(const std::vector<std::string>& args);
};

const std::vector<Command>& commands();

int cmd_policies(const std::vector<std::string>& args);
int cmd_demo(const std::vector<std::string>& args);
int cmd_run(const std::vector<std::string>& args);
int cmd_sweep(const std::vector<std::string>& args);
int cmd_report(const std::vector<std::string>& args);
int cmd_confirm(const std::vector<std::string>& args);
// LibTorch backend (cmd_train.cpp); without LibTorch they print an error.
int cmd_train(const std::vector<std::string>& args);
int cmd_eval(const std::vector<std::string>& args);
int cmd_generate(const std::vector<std::string>& args);
int cmd_bench(const std::vector<std::string>& args);
// Seed 004's data-selection pipeline (cmd_select.cpp; needs LibTorch).
int cmd_select(const std::vector<std::string>& args);

}  // namespace moesim::cli
