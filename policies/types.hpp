#pragma once
// The policy contract's data types: plain arrays, no LibTorch, so the simulator
// and the LibTorch layer hand the very same buffers to the very same objects.
#include <cstdint>
#include <string>
#include <vector>

#include "common/error.hpp"

namespace moesim {

inline constexpr std::int32_t kNoExpert = -1;

// A batch of gate logits, tokens x experts, row-major. Optional extras let
// policies that need them (hash routing, input jitter) see more than logits.
struct RouteInput {
  const float* logits = nullptr;
  int tokens = 0;
  int experts = 0;
  const std::int64_t* token_ids = nullptr;  // hash routing: one id per token
  const float* gate_input = nullptr;        // jitter: tokens x gate_dim
  const float* gate_weight = nullptr;       // jitter: experts x gate_dim
  int gate_dim = 0;
  bool training = true;                     // false at evaluation (Sinkhorn's eval_mode)
};

// How combine weights derive from gate logits z, so the LibTorch layer can
// recompute them differentiably. For a served slot j of a token (o = slot offset,
// N = the token's served slots, or its requested slots when over_requested):
//   SoftmaxSelected:    w_j = s * exp(z_j + o_j) / sum_{l in N} exp(z_l + o_l)
//   SoftmaxGather:      w_j = s * softmax(z)_j  [/ sum_{l in N} softmax(z)_l if renormalize]
//   SigmoidGather:      w_j = s * sigmoid(z_j)  [/ sum_{l in N} sigmoid(z_l)  if renormalize]
//   SqrtSoftplusGather: w_j = s * sqrt(softplus(z_j)) [/ sum over N if renormalize]
// s = scale (Megatron-Core's moe_router_topk_scaling_factor). Empty slots weigh 0.
// over_requested: weights are formed over every slot the policy asked for and the
// slots capacity refused are then only masked (Megatron-Core, Mesh-TF); otherwise
// they are formed over the served slots alone (a token that lost a choice to
// capacity puts its whole weight on the rest).
enum class WeightRule { SoftmaxSelected, SoftmaxGather, SigmoidGather, SqrtSoftplusGather };

struct WeightSpec {
  WeightRule rule = WeightRule::SoftmaxSelected;
  bool renormalize = true;
  bool over_requested = false;
  double scale = 1.0;
  // Whether the rule divides by a sum over the token's slots.
  bool divides() const { return rule == WeightRule::SoftmaxSelected || renormalize; }
  // True when every served token's weights sum to 1.
  bool normalized() const { return divides() && !over_requested && scale == 1.0; }
};

const char* to_string(WeightRule r);

// The result of routing one batch. Slots are per token, `width` of them:
// k for token-choice policies (slot j = j-th choice, kNoExpert when dropped by
// capacity), E for expert choice (chosen experts first, then kNoExpert).
struct Assignment {
  int tokens = 0;
  int experts = 0;
  int width = 0;
  std::vector<std::int32_t> expert;     // tokens*width, after capacity
  std::vector<std::int32_t> requested;  // tokens*width: what the policy asked for, before capacity
  std::vector<float> weight;            // tokens*width, 0 on empty slots
  std::vector<float> offset;            // tokens*width: selection score minus gate logit, on requested slots
  std::vector<std::int64_t> counts;  // per expert: slots served
  std::int64_t routed = 0;           // slot requests made by the policy
  std::int64_t dropped = 0;          // requests refused by capacity
  std::int64_t dropped_tokens = 0;   // tokens left with no expert at all
  std::int64_t capacity = 0;         // per-expert capacity in force, 0 = unlimited
  std::int64_t padded = 0;           // padding slots when experts are padded to capacity (E*C - served)

  void reset(int T, int E, int w);
  std::int64_t served() const;
  std::int32_t at(int t, int j) const { return expert[static_cast<std::size_t>(t) * width + j]; }
  float weight_at(int t, int j) const { return weight[static_cast<std::size_t>(t) * width + j]; }
};

}  // namespace moesim
