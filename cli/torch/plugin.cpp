#include "cli/torch/plugin.hpp"

#include <cstring>

#include "common/error.hpp"
#include "torch_backend/commands.hpp"

extern "C" int moesim_torch_command(const char* name, const std::vector<std::string>* args) {
  using namespace moesim;
  const auto& a = *args;
  if (std::strcmp(name, "train") == 0) return torch_backend::train_command(a);
  if (std::strcmp(name, "eval") == 0) return torch_backend::eval_command(a);
  if (std::strcmp(name, "generate") == 0) return torch_backend::generate_command(a);
  if (std::strcmp(name, "bench") == 0) return torch_backend::bench_command(a);
  if (std::strcmp(name, "select") == 0) return cli::select_command(a);
  throw Error(std::string(name) + ": not a LibTorch command");
}
