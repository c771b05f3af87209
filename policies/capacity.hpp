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

// Occurrences of each expert in ex[0, n) into counts[0, E) (int64 or double,
// exact either way), values outside [0, E) ignored. Four interleaved tables: in
// one, the increments of an expert wait on each other through memory.
template <class Count>
void count_experts(const std::int32_t* ex, std::size_t n, int E, Count* counts) {
  std::vector<std::uint32_t> part(4 * static_cast<std::size_t>(E), 0);
  const auto nE = static_cast<std::uint32_t>(E);
  std::size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (std::size_t q = 0; q < 4; ++q) {
      const auto e = static_cast<std::uint32_t>(ex[i + q]);
      if (e < nE) ++part[q * nE + e];
    }
  for (; i < n; ++i) {
    const auto e = static_cast<std::uint32_t>(ex[i]);
    if (e < nE) ++part[e];
  }
  for (std::uint32_t e = 0; e < nE; ++e)
    counts[e] = static_cast<Count>(static_cast<std::int64_t>(part[e]) + part[nE + e] + part[2 * nE + e] +
                                   part[3 * nE + e]);
}

class CapacityFilter {
 public:
  // `out.expert` holds the wanted experts (tokens x k, rank order, all valid);
  // `priority` (tokens x k) ranks requests for DropBy::Probability. Marks refused
  // slots kNoExpert and fills counts, routed, dropped, dropped_tokens, capacity, padded.
  void apply(const CapacityConfig& cfg, const float* priority, Assignment& out);
  // The last apply()'s requests per expert, before any drop.
  const std::vector<std::int64_t>& requested_counts() const { return requested_; }

 private:
  // The drops, once some expert got more than C requests (flagged in over_).
  void drop_over_capacity(const CapacityConfig& cfg, const float* priority, Assignment& out);
  // DropBy::Position: each over-full expert keeps its first C requests, in
  // choice-rank order (rank j, then token) or in slot order.
  void drop_by_position(bool choice_rank, Assignment& out);

  std::vector<std::int32_t> order_, start_;
  std::vector<std::int64_t> cum_, cut_;
  std::vector<std::uint32_t> part_;
  std::vector<char> over_;
  std::vector<std::int64_t> requested_;
};

}  // namespace moesim
