#include "sim/mpi_world.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "common/error.hpp"
#include "common/launch.hpp"

#ifdef MOESIM_HAVE_MPI
#include <mpi.h>
#endif

namespace moesim {

void SweepMessage::set_text(const std::string& s) {
  const std::size_t n = std::min(s.size(), sizeof text - 1);
  std::memcpy(text, s.data(), n);
  text[n] = '\0';
}

std::string SweepMessage::get_text() const { return std::string(text, strnlen(text, sizeof text)); }

bool MpiWorld::built_with_mpi() {
#ifdef MOESIM_HAVE_MPI
  return true;
#else
  return false;
#endif
}

MpiWorld& MpiWorld::get() {
  static MpiWorld world;
  return world;
}

#ifdef MOESIM_HAVE_MPI

namespace {

void check(int rc, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  throw Error(std::string("MPI ") + what + ": " + std::string(msg, static_cast<std::size_t>(len)));
}

}  // namespace

MpiWorld::MpiWorld() {
  if (!launch_place().mpi()) return;
  int provided = 0;
  check(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_SERIALIZED, &provided), "init");
  joined_ = true;
  if (provided < MPI_THREAD_SERIALIZED) throw Error("this MPI library does not allow calls from several threads (MPI_THREAD_SERIALIZED)");
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &size_);
}

MpiWorld::~MpiWorld() {
  if (joined_) MPI_Finalize();
}

void MpiWorld::send(int to, int tag, const SweepMessage& m) {
  check(MPI_Send(&m, sizeof m, MPI_BYTE, to, tag, MPI_COMM_WORLD), "send");
}

bool MpiWorld::poll(int tag, SweepMessage& m, int& from) {
  int flag = 0;
  MPI_Status st;
  check(MPI_Iprobe(MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, &flag, &st), "probe");
  if (!flag) return false;
  from = st.MPI_SOURCE;
  check(MPI_Recv(&m, sizeof m, MPI_BYTE, from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "receive");
  return true;
}

SweepMessage MpiWorld::wait(int from, int tag) {
  SweepMessage m;
  for (;;) {
    int flag = 0;
    check(MPI_Iprobe(from, tag, MPI_COMM_WORLD, &flag, MPI_STATUS_IGNORE), "probe");
    if (flag) break;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  check(MPI_Recv(&m, sizeof m, MPI_BYTE, from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "receive");
  return m;
}

#else

MpiWorld::MpiWorld() {
  const LaunchPlace p = launch_place();
  if (p.mpi() && p.size > 1)
    throw Error("started by " + p.launcher + " as one of " + std::to_string(p.size) +
                " processes, but this moesim was built without MPI (install libopenmpi-dev and rebuild)");
}
MpiWorld::~MpiWorld() = default;
void MpiWorld::send(int, int, const SweepMessage&) { throw Error("MPI: not built in"); }
bool MpiWorld::poll(int, SweepMessage&, int&) { return false; }
SweepMessage MpiWorld::wait(int, int) { throw Error("MPI: not built in"); }

#endif

}  // namespace moesim
