#include "common/launch.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/error.hpp"

using namespace moesim;

namespace {

// Sets the variables for one test and clears every launcher variable around it.
struct Env {
  explicit Env(const std::vector<std::pair<const char*, const char*>>& vars) {
    clear();
    for (const auto& [k, v] : vars) ::setenv(k, v, 1);
  }
  ~Env() { clear(); }
  static void clear() {
    for (const char* k : {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
                          "OMPI_COMM_WORLD_LOCAL_SIZE", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS",
                          "MOESIM_RANK", "MOESIM_WORLD_SIZE"})
      ::unsetenv(k);
  }
};

}  // namespace

TEST_CASE("launch_place: no launcher variables is rank 0 of 1") {
  Env e({});
  const auto p = launch_place();
  CHECK(p.rank == 0);
  CHECK(p.size == 1);
  CHECK(p.local_size == 1);
  CHECK(p.launcher.empty());
  CHECK_FALSE(p.mpi());
}

TEST_CASE("launch_place: OpenMPI's, PMI's and moesim's own variables") {
  {
    Env e({{"OMPI_COMM_WORLD_RANK", "3"}, {"OMPI_COMM_WORLD_SIZE", "8"}, {"OMPI_COMM_WORLD_LOCAL_RANK", "1"},
           {"OMPI_COMM_WORLD_LOCAL_SIZE", "2"}});
    const auto p = launch_place();
    CHECK(p.rank == 3);
    CHECK(p.size == 8);
    CHECK(p.local_rank == 1);
    CHECK(p.local_size == 2);
    CHECK(p.mpi());
  }
  {
    Env e({{"PMI_RANK", "1"}, {"PMI_SIZE", "2"}});
    const auto p = launch_place();
    CHECK(p.rank == 1);
    CHECK(p.size == 2);
    CHECK(p.local_size == 2);  // no local variables: all on one machine
    CHECK(p.launcher == "pmi");
  }
  {
    Env e({{"MOESIM_RANK", "1"}, {"MOESIM_WORLD_SIZE", "2"}});
    const auto p = launch_place();
    CHECK(p.rank == 1);
    CHECK(p.size == 2);
    CHECK(p.launcher == "moesim");
    CHECK_FALSE(p.mpi());
  }
}

TEST_CASE("launch_place: a malformed or out-of-range rank names the variable") {
  {
    Env e({{"OMPI_COMM_WORLD_RANK", "x"}, {"OMPI_COMM_WORLD_SIZE", "2"}});
    CHECK_THROWS_WITH(launch_place(), Catch::Contains("OMPI_COMM_WORLD_RANK='x'"));
  }
  {
    Env e({{"MOESIM_RANK", "2"}, {"MOESIM_WORLD_SIZE", "2"}});
    CHECK_THROWS_WITH(launch_place(), Catch::Contains("MOESIM_RANK=2 is outside MOESIM_WORLD_SIZE=2"));
  }
}
