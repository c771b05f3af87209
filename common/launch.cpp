#include "common/launch.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>

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

int free_loopback_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw Error(std::string("cannot open a socket to find a free port: ") + std::strerror(errno));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw Error(std::string("cannot bind a loopback port: ") + std::strerror(errno));
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

namespace {

int exit_code(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

int run_local_workers(int n, const std::vector<std::string>& argv) {
  if (n < 1) throw Error("--nproc " + std::to_string(n) + ": need at least 1 process");
  if (argv.empty()) throw Error("run_local_workers: no program");
  const std::string port = std::to_string(free_loopback_port());
  std::vector<char*> args;
  for (const auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
  args.push_back(nullptr);
  std::vector<pid_t> pids;
  for (int r = 0; r < n; ++r) {
    const pid_t pid = ::fork();
    if (pid < 0) throw Error(std::string("fork: ") + std::strerror(errno));
    if (pid == 0) {
      ::setenv("MOESIM_RANK", std::to_string(r).c_str(), 1);
      ::setenv("MOESIM_WORLD_SIZE", std::to_string(n).c_str(), 1);
      ::setenv("MASTER_ADDR", "127.0.0.1", 1);
      ::setenv("MASTER_PORT", port.c_str(), 1);
      ::execv(args[0], args.data());
      std::fprintf(stderr, "cannot run %s: %s\n", args[0], std::strerror(errno));
      ::_exit(127);
    }
    pids.push_back(pid);
  }
  int first_failure = 0;
  for (std::size_t left = pids.size(); left > 0; --left) {
    int status = 0;
    const pid_t done = ::wait(&status);
    if (done < 0) break;
    for (auto& p : pids)
      if (p == done) p = -1;
    const int code = exit_code(status);
    if (code != 0 && first_failure == 0) {
      first_failure = code;
      for (const auto p : pids)
        if (p > 0) ::kill(p, SIGTERM);
    }
  }
  return first_failure;
}

}  // namespace moesim
