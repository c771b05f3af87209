#include "common/launch.hpp"

#include <cstdlib>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moesim {

namespace {

// The variable's whole-number value, or `fallback` when it is unset.
int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr) return fallback;
  long x = 0;
  if (!parse_int(v, x) || x < 0 || x > 1 << 24) throw Error(std::string("environment ") + name + "='" + v + "': not a rank or size");
  return static_cast<int>(x);
}

}  // namespace

LaunchPlace launch_place() {
  LaunchPlace p;
  struct Names {
    const char *rank, *size, *local_rank, *local_size, *launcher;
  };
  static const Names kinds[] = {
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE", "mpirun"},
      {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", "pmi"},
      {"MOESIM_RANK", "MOESIM_WORLD_SIZE", "MOESIM_RANK", "MOESIM_WORLD_SIZE", "moesim"},
  };
  for (const auto& k : kinds) {
    if (std::getenv(k.size) == nullptr) continue;
    p.size = env_int(k.size, 1);
    p.rank = env_int(k.rank, 0);
    p.local_rank = env_int(k.local_rank, p.rank);
    p.local_size = env_int(k.local_size, p.size);
    p.launcher = k.launcher;
    if (p.size < 1 || p.rank >= p.size)
      throw Error(std::string("environment ") + k.rank + "=" + std::to_string(p.rank) + " is outside " + k.size + "=" +
                  std::to_string(p.size));
    if (p.local_size < 1 || p.local_rank >= p.local_size) p.local_rank = 0, p.local_size = 1;
    return p;
  }
  return p;
}

}  // namespace moesim
