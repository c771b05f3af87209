#include "policies/capacity.hpp"

#include <algorithm>
#include <cmath>

namespace moesim {

std::vector<KnobSpec> capacity_knobs(double default_factor, bool default_dropless) {
  return {
      real_knob("capacity_factor", default_factor,
                "expert capacity C = max(min_capacity, ceil(cf*T*k/E)); must be > 0 unless dropless",
                -1e300, 1e6),
      int_knob("min_capacity", 4, "lower bound on the per-expert capacity", 0, 1L << 40),
      bool_knob("dropless", default_dropless, "no capacity limit: never drop a token"),
      choice_knob("drop_policy", "position", {"position", "probability"},
                  "who loses when an expert is full: later positions (first choices win) or lower scores"),
  };
}

CapacityConfig capacity_from(const Knobs& knobs, const std::string& owner) {
  CapacityConfig c;
  c.factor = knobs.real("capacity_factor");
  c.min_capacity = knobs.integer("min_capacity");
  c.dropless = knobs.flag("dropless");
  c.drop = knobs.choice("drop_policy") == "probability" ? DropBy::Probability : DropBy::Position;
  if (!c.dropless && !(c.factor > 0.0))
    throw Error(owner + ": knob 'capacity_factor' = " + format_real(c.factor) +
                ": must be > 0 outside dropless mode");
  return c;
}

std::int64_t expert_capacity(const CapacityConfig& cfg, int tokens, int k, int experts) {
  if (cfg.dropless) return 0;
  const double raw = cfg.factor * static_cast<double>(tokens) * k / experts;
  // Guard against 2.0000000000000004 becoming 3: round to 1e-9 before ceil.
  const auto c = static_cast<std::int64_t>(std::ceil(raw - 1e-9));
  return std::max<std::int64_t>(std::max<std::int64_t>(c, cfg.min_capacity), 1);
}

void CapacityFilter::apply(const CapacityConfig& cfg, const float* priority, Assignment& out) {
  const int T = out.tokens, k = out.width, E = out.experts;
  auto& counts = out.counts;
  std::fill(counts.begin(), counts.end(), 0);
  out.routed = static_cast<std::int64_t>(T) * k;
  out.dropped = 0;
  out.dropped_tokens = 0;
  out.capacity = expert_capacity(cfg, T, k, E);
  std::int32_t* ex = out.expert.data();
  const std::int64_t C = out.capacity;

  if (C == 0) {
    for (std::size_t i = 0, n = out.expert.size(); i < n; ++i) ++counts[ex[i]];
    return;
  }
  if (cfg.drop == DropBy::Position) {
    for (int j = 0; j < k; ++j)
      for (int t = 0; t < T; ++t) {
        std::int32_t& e = ex[static_cast<std::size_t>(t) * k + j];
        if (counts[e] < C)
          ++counts[e];
        else
          e = kNoExpert, ++out.dropped;
      }
  } else {
    // Bucket requests by expert (counting sort keeps slot order inside a bucket).
    start_.assign(static_cast<std::size_t>(E) + 1, 0);
    const std::size_t n = out.expert.size();
    for (std::size_t i = 0; i < n; ++i) ++start_[ex[i] + 1];
    for (int e = 0; e < E; ++e) start_[e + 1] += start_[e];
    order_.resize(n);
    std::vector<std::int32_t> fill(start_.begin(), start_.end() - 1);
    for (std::size_t i = 0; i < n; ++i) order_[fill[ex[i]]++] = static_cast<std::int32_t>(i);
    for (int e = 0; e < E; ++e) {
      auto b = order_.begin() + start_[e], en = order_.begin() + start_[e + 1];
      const auto size = en - b;
      if (size > C) {
        // Higher score kept; ties go to the earlier slot (lower token index).
        std::nth_element(b, b + C, en, [priority](std::int32_t x, std::int32_t y) {
          return priority[x] > priority[y] || (priority[x] == priority[y] && x < y);
        });
        for (auto it = b + C; it != en; ++it) ex[*it] = kNoExpert;
        out.dropped += size - C;
      }
      counts[e] = std::min<std::int64_t>(size, C);
    }
  }
  for (int t = 0; t < T; ++t) {
    bool any = false;
    for (int j = 0; j < k; ++j) any |= ex[static_cast<std::size_t>(t) * k + j] >= 0;
    out.dropped_tokens += !any;
  }
}

}  // namespace moesim
