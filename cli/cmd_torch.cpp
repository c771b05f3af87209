// train / eval / generate / bench / select: forwarded to the LibTorch module
// (cli/torch/plugin.hpp), loaded on first use; without LibTorch they say so.
#include <string>

#include "cli/commands.hpp"
#include "common/error.hpp"

#if MOESIM_HAVE_TORCH
#include <dlfcn.h>

#include "cli/torch/plugin.hpp"
#endif

namespace moesim::cli {

namespace {

int torch_command(const char* name, const std::vector<std::string>& args) {
#if MOESIM_HAVE_TORCH
  // RTLD_LOCAL: the module's copies of our libraries stay its own.
  static void* module = dlopen(MOESIM_TORCH_CLI_PATH, RTLD_NOW | RTLD_LOCAL);
  if (!module) throw Error(std::string(name) + ": cannot load the LibTorch module " MOESIM_TORCH_CLI_PATH " (" + dlerror() + ")");
  const auto entry = reinterpret_cast<TorchEntry>(dlsym(module, kTorchEntryName));
  if (!entry) throw Error(std::string(name) + ": " MOESIM_TORCH_CLI_PATH " has no " + kTorchEntryName);
  return entry(name, &args);
#else
  (void)args;
  throw Error(std::string(name) + ": moesim was built without LibTorch (install libtorch-dev via scripts/setup.sh and rebuild)");
#endif
}

}  // namespace

int cmd_train(const std::vector<std::string>& args) { return torch_command("train", args); }
int cmd_eval(const std::vector<std::string>& args) { return torch_command("eval", args); }
int cmd_generate(const std::vector<std::string>& args) { return torch_command("generate", args); }
int cmd_bench(const std::vector<std::string>& args) { return torch_command("bench", args); }
int cmd_select(const std::vector<std::string>& args) { return torch_command("select", args); }

}  // namespace moesim::cli
