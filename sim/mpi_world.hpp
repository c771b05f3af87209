#pragma once
// The MPI processes of a sweep, reduced to the few point-to-point messages the
// sweep's dispatcher needs (sweep.cpp has the protocol). MPI is joined only when
// the process was started by an MPI launcher (common/launch.hpp) and the build
// found MPI (MOESIM_HAVE_MPI); otherwise this is rank 0 of 1 and never calls MPI.
// Waiting sleeps between probes instead of spinning in MPI_Recv, so a rank's own
// sweep threads keep the cores.
#include <cstdint>
#include <string>

namespace moesim {

// One fixed-size message; what `a` and `b` mean depends on the tag.
struct SweepMessage {
  std::int32_t ok = 1;
  std::int64_t a = 0, b = 0;
  double seconds = 0;
  char text[480] = {};
  void set_text(const std::string& s);  // truncated to fit
  std::string get_text() const;
};

class MpiWorld {
 public:
  // The process's world, joining MPI (thread level SERIALIZED) on first use when
  // launched by mpirun. Finalized at exit.
  static MpiWorld& get();
  // Whether this build can join MPI at all.
  static bool built_with_mpi();
  int rank() const { return rank_; }
  int size() const { return size_; }

  void send(int to, int tag, const SweepMessage& m);
  // A waiting message with `tag` from any rank, without blocking; false when none.
  bool poll(int tag, SweepMessage& m, int& from);
  // The next message with `tag` from rank `from`, sleeping between probes.
  SweepMessage wait(int from, int tag);

  ~MpiWorld();
  MpiWorld(const MpiWorld&) = delete;
  MpiWorld& operator=(const MpiWorld&) = delete;

 private:
  MpiWorld();
  int rank_ = 0, size_ = 1;
  bool joined_ = false;
};

}  // namespace moesim
