#pragma once
// Where this process sits in a multi-process launch, read from the launcher's
// environment: OpenMPI's mpirun (OMPI_COMM_WORLD_*), MPICH/Hydra and Slurm's PMI
// (PMI_RANK, PMI_SIZE), and `moesim train --nproc N`'s own workers (MOESIM_RANK,
// MOESIM_WORLD_SIZE). A process started any other way is rank 0 of 1.
#include <string>

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

}  // namespace moesim
