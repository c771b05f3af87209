#pragma once
// The backend's CLI entry points, free of LibTorch types so cli/ can call them
// without the torch headers. Each takes the arguments after its command name.
#include <string>
#include <vector>

namespace moesim::torch_backend {

int train_command(const std::vector<std::string>& args);
int eval_command(const std::vector<std::string>& args);
int generate_command(const std::vector<std::string>& args);
int bench_command(const std::vector<std::string>& args);

}  // namespace moesim::torch_backend
