#pragma once
// Where this process sits in a multi-process launch, read from the launcher's
// environment: OpenMPI's mpirun (OMPI_COMM_WORLD_*), MPICH/Hydra and Slurm's PMI
// (PMI_RANK, PMI_SIZE), and `moesim train --nproc N`'s own workers (MOESIM_RANK,
// MOESIM_WORLD_SIZE). A process started any other way is rank 0 of 1.
#include <string>
#include <vector>

namespace moesim {

struct LaunchPlace {
  int rank = 0, size = 1;              // in the whole launch
  int local_rank = 0, local_size = 1;  // on this machine (for the default thread count)
  std::string launcher;                // "mpirun", "pmi", "moesim" or "" (a single process)
  bool mpi() const { return launcher == "mpirun" || launcher == "pmi"; }
};

// The place from the environment; Error when a launcher's variables are malformed
// (a rank outside [0, size), say), naming the variable.
LaunchPlace launch_place();

// A loopback TCP port nobody listens on now (the kernel's pick for port 0).
int free_loopback_port();

// Runs `argv` (argv[0] a program path) as n local processes with MOESIM_RANK,
// MOESIM_WORLD_SIZE, MASTER_ADDR=127.0.0.1 and a free MASTER_PORT in their
// environment, and waits for them. When one fails the others are stopped
// (SIGTERM); returns 0, or the first failure's exit code (128 + signal when killed).
int run_local_workers(int n, const std::vector<std::string>& argv);

}  // namespace moesim
