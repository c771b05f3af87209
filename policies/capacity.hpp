#pragma once
// Capacity handling shared by every token-choice policy (Switch, GShard,
// Megatron-Core, DeepSpeed): C = max(min_capacity, ceil(cf * T * k / E)).
// The conventions the field disagrees on are choices, each with its source:
//   rounding  exact: ceil of the exact value cf*T*k/E (moesim);
//             float: ceil((T*k/E) * cf) in double, as Megatron-Core's get_capacity
//             computes it, which lands one above where the product rounds up
//             (T*k/E = 50, cf = 1.1 gives 55.00000000000001, so 56).
//   who loses when an expert is full (drop_policy):
//     position, order choice_rank: every first choice before any second choice,
//               earlier tokens first within a rank (GShard, Mesh-TF);
//     position, order token: earlier tokens first whatever the choice rank
//               (Megatron-Core "position");
//     probability: each expert keeps its C highest-priority requests, priority
//               the gate probability of the request (moesim) or the combine
//               weight the token would give it (Megatron-Core "probs").
//   pad: every expert processes exactly C slots, the missing ones as padding that
//        weighs 0 (Megatron-Core moe_pad_expert_input_to_capacity): routing and
//        outputs are unchanged, Assignment::padded counts the wasted slots.
// Whether the weights of a token that lost a choice are renormalised over the
// slots it kept or only masked is a weight convention (WeightSpec::over_requested,
// knob drop_weights).
#include <cstdint>
#include <vector>

#include "policies/knobs.hpp"
#include "policies/types.hpp"

namespace moesim {

enum class DropBy { Position, Probability };
enum class DropOrder { ChoiceRank, Token };
enum class DropPriority { Probability, Weight };
enum class CapacityRounding { Exact, Float };

struct CapacityConfig {
  double factor = 1.25;
  long min_capacity = 4;
  bool dropless = false;
  DropBy drop = DropBy::Position;
  DropOrder order = DropOrder::ChoiceRank;
  DropPriority priority = DropPriority::Probability;
  CapacityRounding rounding = CapacityRounding::Exact;
  bool pad = false;
  bool mask_weights = false;  // drop_weights = mask: WeightSpec::over_requested
};

// The capacity knobs every token-choice policy carries.
std::vector<KnobSpec> capacity_knobs(double default_factor = 1.25, bool default_dropless = false);
// Reads and validates them (factor > 0 unless dropless).
CapacityConfig capacity_from(const Knobs& knobs, const std::string& owner);
// The policy's weight rule with the capacity's weight convention applied.
WeightSpec with_drop_weights(WeightSpec spec, const CapacityConfig& cfg);

// Per-expert capacity for a batch; 0 means unlimited (dropless).
std::int64_t expert_capacity(const CapacityConfig& cfg, int tokens, int k, int experts);

class CapacityFilter {
 public:
  // `out.expert` holds the wanted experts (tokens x k, rank order, all valid);
  // `priority` (tokens x k) ranks requests for DropBy::Probability. Marks refused
  // slots kNoExpert and fills counts, routed, dropped, dropped_tokens, capacity, padded.
  void apply(const CapacityConfig& cfg, const float* priority, Assignment& out);

 private:
  std::vector<std::int32_t> order_, start_;
};

}  // namespace moesim
