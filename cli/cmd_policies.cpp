// `moesim policies` and `moesim demo`: what each policy is, and what it does to a batch.
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "common/args.hpp"
#include "policies/aux_losses.hpp"
#include "policies/registry.hpp"

namespace moesim::cli {

int cmd_policies(const std::vector<std::string>& args) {
  if (wants_help(args)) {
    std::printf("usage: moesim policies [NAME]\n\nLists every routing policy (or only NAME) with its knobs,\n"
                "their defaults and one line on what each does. Knobs are set in a scenario's\n"
                "policy block or on the command line as policy.knobs.NAME=VALUE.\n");
    return 0;
  }
  for (const auto& p : policy_registry()) {
    if (!args.empty() && args[0] != p.name) continue;
    std::printf("%s%s\n  %s\n", p.name.c_str(), accepted_k(p, 8, 2) == 1 ? "  (k = 1 only)" : "", p.summary.c_str());
    for (const auto& k : p.knobs) {
      std::string def = k.default_value;
      if (k.type == KnobType::Choice) {
        std::string all;
        for (const auto& c : k.choices) all += (all.empty() ? "" : "|") + c;
        def += "  {" + all + "}";
      }
      std::printf("    %-22s %-26s %s\n", k.name.c_str(), def.c_str(), k.help.c_str());
    }
    for (const auto& pr : p.presets) {
      auto list = [](const KnobMap& m) {
        std::string s;
        for (const auto& [key, v] : m) s += (s.empty() ? "" : " ") + key + "=" + v;
        return s.empty() ? std::string("(the defaults)") : s;
      };
      const auto k2 = pr.values(2), k1 = pr.values(1);
      std::printf("  preset %s: %s\n    %s\n", pr.name.c_str(), pr.source.c_str(), list(k2).c_str());
      if (k1 != k2) std::printf("    at k = 1: %s\n", list(k1).c_str());
    }
    std::printf("\n");
  }
  if (!args.empty()) policy_info(args[0]);  // unknown name: error listing the known ones
  return 0;
}

int cmd_demo(const std::vector<std::string>& args) {
  if (wants_help(args)) {
    std::printf("usage: moesim demo [--seed N]\n\nRoutes 50 skewed synthetic batches (T=4096, E=16, k=2) through every\n"
                "policy with default knobs and prints the last batch's drop rate, load CV, MaxVio, aux losses.\n");
    return 0;
  }
  std::uint64_t seed = 1;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--seed" && i + 1 < args.size()) {
      long v;
      if (!parse_int(args[++i], v) || v < 0) throw Error("--seed: expected a non-negative integer, got '" + args[i] + "'");
      seed = static_cast<std::uint64_t>(v);
    } else {
      throw Error("unknown argument '" + args[i] + "'");
    }
  }
  const int T = 4096, E = 16, k = 2, steps = 50;
  std::vector<float> logits(static_cast<std::size_t>(T) * E);
  std::vector<std::int64_t> ids(T);
  std::printf("seed %llu, T=%d E=%d k=%d, %d batches, statistics of the last batch  (replay: moesim demo --seed %llu)\n\n",
              (unsigned long long)seed, T, E, k, steps, (unsigned long long)seed);
  std::printf("%-12s %8s %8s %8s %8s %8s\n", "policy", "drop%", "loadCV", "MaxVio", "LBloss", "zloss");
  for (const auto& p : policy_registry()) {
    const int kk = accepted_k(p, E, k);
    auto pol = p.make(E, kk, resolve_knobs(p, kk, {}));
    Rng rng(derive_seed(seed, "demo.policy." + p.name));
    Rng data(derive_seed(seed, "demo.logits"));  // every policy sees the same batches
    Assignment a;
    std::vector<float> perf;
    for (int s = 0; s < steps; ++s) {
      for (int t = 0; t < T; ++t) {
        ids[t] = static_cast<std::int64_t>(data.below(50000));
        for (int e = 0; e < E; ++e)  // expert e is favoured by 1.5*e/E: a skewed gate, so balancing matters
          logits[static_cast<std::size_t>(t) * E + e] = static_cast<float>(data.normal() + 1.5 * e / E);
      }
      RouteInput in{logits.data(), T, E, ids.data()};
      pol->route(in, rng, a);
      perf.assign(a.expert.size(), 1.0f);
      pol->observe(a, perf.data());
    }
    const double mean = static_cast<double>(a.served()) / E;
    double var = 0, mx = 0;
    for (auto c : a.counts) var += (c - mean) * (c - mean), mx = std::max(mx, static_cast<double>(c));
    const double cv = mean > 0 ? std::sqrt(var / E) / mean : 0.0;
    const double drop = a.routed ? 100.0 * static_cast<double>(a.dropped) / static_cast<double>(a.routed) : 0.0;
    std::printf("%-12s %8.2f %8.3f %8.3f %8.3f %8.3f\n", p.name.c_str(), drop, cv, mean > 0 ? (mx - mean) / mean : 0.0,
                load_balancing_loss(logits.data(), T, E, a), z_loss(logits.data(), T, E));
  }
  return 0;
}

}  // namespace moesim::cli
