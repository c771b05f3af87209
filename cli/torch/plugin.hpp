#pragma once
// The LibTorch subcommands (train, eval, generate, bench, select), built as a
// module next to the executable that `moesim` loads only when one of them runs:
// linked into the executable, LibTorch's ~300 shared libraries cost every other
// command, `moesim --help` included, about 0.4 s of dynamic loading.
#include <string>
#include <vector>

namespace moesim::cli {

// The module's one entry point, looked up by this name: runs command `name` on
// the arguments after it and returns its exit code; errors are thrown as every
// command throws them (Error for the user, other std::exception otherwise).
using TorchEntry = int (*)(const char* name, const std::vector<std::string>* args);
inline constexpr const char* kTorchEntryName = "moesim_torch_command";

int select_command(const std::vector<std::string>& args);  // cli/torch/select.cpp

}  // namespace moesim::cli

extern "C" int moesim_torch_command(const char* name, const std::vector<std::string>* args);
