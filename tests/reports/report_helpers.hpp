#pragma once
// A small finished sweep to report on (a 2-D grid plus a reference point), for the report tests.
#include <cstdlib>
#include <string>

#include "scenario_helpers.hpp"
#include "sim/scenario.hpp"
#include "sim/sweep.hpp"

namespace moesim::test {

// scripts/setup.sh installs gnuplot-nox: the plot tests need it and say so.
inline bool have_gnuplot() { return std::system("gnuplot -e 'set terminal png' > /dev/null 2>&1") == 0; }

inline std::string make_sweep(const std::string& dir, const std::string& out_name = "out", const std::string& extra = "") {
  test::write_text(dir + "/grid.yaml",
                   "name: grid\ndescription: a 2-D grid plus a reference point\nsteps: 40\nbatch: 128\nexperts: 8\n"
                   "k: 2\nlog_every: 5\nstream: {clusters: 4, vocab: 50}\nmetrics: {window: 10, dead_window: 10}\n"
                   "seeds: [1, 2]\npolicy: {name: rdesi, knobs: {dropless: true}}\n"
                   "sweep:\n  - policy.knobs.beta: [0, 1]\n    policy.knobs.gamma: [0, 0.5, 2]\n"
                   "  - policy: [{name: topk, label: plain-topk}" + extra + "]\n");
  const auto sc = load_scenario(dir + "/grid.yaml");
  SweepOptions o;
  o.out_dir = dir + "/" + out_name;
  o.threads = 2;
  o.progress = false;
  run_sweep(sc, expand_sweep(sc), o);
  return o.out_dir;
}

}  // namespace moesim::test
