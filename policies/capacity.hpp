#pragma once
// Capacity handling shared by every token-choice policy (Switch, GShard,
// Megatron-Core, DeepSpeed): C = max(min_capacity, ceil(cf * T * k / E)).
#include <cstdint>
#include <vector>

#include "policies/knobs.hpp"
#include "policies/types.hpp"

namespace moesim {

enum class DropBy {
  Position,     // GShard/Switch: all first choices before second choices, earlier tokens first
  Probability,  // Megatron-Core "probs": each expert keeps its C highest-scoring requests
};

struct CapacityConfig {
  double factor = 1.25;
  long min_capacity = 4;
  bool dropless = false;
  DropBy drop = DropBy::Position;
};

// The four capacity knobs every token-choice policy carries.
std::vector<KnobSpec> capacity_knobs(double default_factor = 1.25, bool default_dropless = false);
// Reads and validates them (factor > 0 unless dropless).
CapacityConfig capacity_from(const Knobs& knobs, const std::string& owner);

// Per-expert capacity for a batch; 0 means unlimited (dropless).
std::int64_t expert_capacity(const CapacityConfig& cfg, int tokens, int k, int experts);

class CapacityFilter {
 public:
  // `out.expert` holds the wanted experts (tokens x k, rank order, all valid);
  // `priority` (tokens x k) ranks requests for DropBy::Probability. Marks refused
  // slots kNoExpert and fills counts, routed, dropped, dropped_tokens, capacity.
  void apply(const CapacityConfig& cfg, const float* priority, Assignment& out);

 private:
  std::vector<std::int32_t> order_, start_;
};

}  // namespace moesim
