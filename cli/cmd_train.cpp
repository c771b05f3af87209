// train / eval / generate / bench: thin wrappers over the LibTorch backend, which
// is optional; without it these commands say so instead of failing to link.
#include <cstdio>

#include "cli/commands.hpp"
#include "policies/types.hpp"
#if MOESIM_HAVE_TORCH
#include "torch_backend/commands.hpp"
#endif

namespace moesim::cli {

#if MOESIM_HAVE_TORCH
int cmd_train(const std::vector<std::string>& args) { return torch_backend::train_command(args); }
int cmd_eval(const std::vector<std::string>& args) { return torch_backend::eval_command(args); }
int cmd_generate(const std::vector<std::string>& args) { return torch_backend::generate_command(args); }
int cmd_bench(const std::vector<std::string>& args) { return torch_backend::bench_command(args); }
#else
namespace {
[[noreturn]] void no_torch(const char* cmd) {
  throw Error(std::string(cmd) + ": moesim was built without LibTorch (install libtorch-dev via scripts/setup.sh and rebuild)");
}
}  // namespace
int cmd_train(const std::vector<std::string>&) { no_torch("train"); }
int cmd_eval(const std::vector<std::string>&) { no_torch("eval"); }
int cmd_generate(const std::vector<std::string>&) { no_torch("generate"); }
int cmd_bench(const std::vector<std::string>&) { no_torch("bench"); }
#endif

}  // namespace moesim::cli
