// End-to-end throughput (stream + gate + policy + world + metrics), hidden from
// the default run: `test_sim "[.bench]"`. Reports token-routings per second of
// wall time and of process CPU time (the honest figure on a shared machine).
#include <catch2/catch.hpp>

#include <cstdio>
#include <ctime>

#include "policies/registry.hpp"
#include "sim/simulator.hpp"

using namespace moesim;

namespace {

double cpu_seconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

}  // namespace

TEST_CASE("throughput at E=64, k=2, batch 4096", "[.bench]") {
  for (const char* name : {"topk", "rdesi", "loss_free", "noisy_topk", "expert_choice"}) {
    bool known = false;
    for (const auto& p : policy_registry()) known = known || p.name == name;
    if (!known) continue;
    SimConfig c;  // defaults: E=64, k=2, T=4096, d=32, 8 clusters, log_every=10
    c.steps = 300;
    c.policy.name = name;
    const Simulator sim(c);
    const double c0 = cpu_seconds();
    const auto r = sim.run();
    const double cpu = cpu_seconds() - c0;
    std::printf("%-14s %6.2f M routings/s wall, %6.2f M per CPU-second\n", name,
                static_cast<double>(r.routings) / r.seconds * 1e-6, static_cast<double>(r.routings) / cpu * 1e-6);
    CHECK(r.routings == 300LL * 4096 * 2);
  }
}
