#include "reports/plotter.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <filesystem>
#include <sstream>

#include "common/error.hpp"
#include "common/files.hpp"

namespace fs = std::filesystem;

namespace moesim {

namespace {

// Runs a program (no shell) in cwd with stdout and stderr to log; the exit status, 127 when it cannot start.
int run_program(const std::vector<std::string>& args, const std::string& cwd, const std::string& log) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    // The log path is relative to the caller's folder: open it before changing folder.
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    if (::chdir(cwd.c_str()) != 0) ::_exit(126);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return 127;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

}  // namespace

Plotter::Plotter(std::string dir, bool enabled, std::string program, std::vector<std::string>& warnings)
    : dir_(std::move(dir)), program_(std::move(program)), warnings_(warnings), enabled_(enabled) {
  if (!enabled_) return;
  std::error_code ec;
  fs::create_directories(dir_ + "/data", ec);
  if (ec || !fs::is_directory(dir_ + "/data")) throw Error(dir_ + ": cannot create the plots folder: " + ec.message());
  const std::string log = dir_ + "/data/probe.log";
  if (run_program({program_, "-e", "set terminal pngcairo"}, dir_, log) == 0) {
    png_ = "pngcairo";
  } else if (run_program({program_, "-e", "set terminal png"}, dir_, log) == 0) {
    png_ = "png";
  } else {
    warnings_.push_back("cannot run '" + program_ + "' with a PNG terminal (install gnuplot-nox): plots skipped");
    enabled_ = false;
  }
  fs::remove(log, ec);
}

void Plotter::data(const std::string& name, const std::string& content) {
  if (enabled_) write_file_atomic(dir_ + "/data/" + name, content);
}

bool Plotter::plot(const std::string& name, int w, int h, const std::string& body) {
  if (!enabled_) return false;
  const std::string size = std::to_string(w) + "," + std::to_string(h);
  std::ostringstream s;
  s << "# moesim report: " << name << ".png and " << name << ".svg. Re-make inside this folder: gnuplot " << name
    << ".gp\n"
    << "if (!exists('suffix')) suffix = ''\n"
    << "set terminal " << png_ << " size " << size << (png_ == "pngcairo" ? " font ',10'" : "") << " noenhanced\n"
    << "set output " << gq(name + ".png") << ".suffix\nreset\n"
    << body << "\nunset output\n"
    << "set terminal svg size " << size << " font 'sans,10' noenhanced background rgb 'white'\n"
    << "set output " << gq(name + ".svg") << ".suffix\nreset\n"
    << body << "\nunset output\n";
  write_file_atomic(dir_ + "/" + name + ".gp", s.str());
  const std::string log = dir_ + "/data/" + name + ".log";
  const int rc = run_program({program_, "-e", "suffix='.tmp'", name + ".gp"}, dir_, log);
  std::error_code ec;
  const std::string png = dir_ + "/" + name + ".png", svg = dir_ + "/" + name + ".svg";
  if (rc != 0 || !fs::exists(png + ".tmp", ec) || !fs::exists(svg + ".tmp", ec)) {
    std::string first;
    try {
      std::istringstream in(read_file(log));
      std::string line;
      while (std::getline(in, line))
        if (!line.empty()) first += (first.empty() ? "" : " / ") + line;
    } catch (const Error&) {
    }
    if (first.size() > 300) first = first.substr(0, 300) + "...";
    warnings_.push_back("gnuplot failed on " + dir_ + "/" + name + ".gp (exit " + std::to_string(rc) + "): " + first);
    fs::remove(png + ".tmp", ec);
    fs::remove(svg + ".tmp", ec);
    return false;
  }
  fs::remove(log, ec);
  commit_file(png + ".tmp", png);
  commit_file(svg + ".tmp", svg);
  ++count_;
  return true;
}

std::string gq(const std::string& s) {
  std::string o = "'";
  for (char c : s) {
    if (c == '\'') o += "''";
    else if (c == '\n' || c == '\r') o += ' ';  // a line break would end the command
    else o += c;
  }
  return o + "'";
}

std::string data_file(const std::string& name) { return gq("data/" + name); }

void panel_layout(std::size_t n, int& rows, int& cols) {
  cols = n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : 4;
  rows = static_cast<int>((n + static_cast<std::size_t>(cols) - 1) / static_cast<std::size_t>(cols));
}

std::size_t per_image(std::size_t n, std::size_t most) {
  const std::size_t images = (n + most - 1) / most;
  return images ? (n + images - 1) / images : most;
}

std::string line_style(std::size_t i) {
  return "lw 2 lc " + std::to_string(i % 8 + 1) + " dt " + std::to_string(i / 8 % 5 + 1);
}

}  // namespace moesim
