#pragma once
// The policy contract's data types: plain arrays, no LibTorch, so the simulator
// and the LibTorch layer hand the very same buffers to the very same objects.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace moesim {

// Every user-facing error: one line naming the argument, file, line or key.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

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
};

// How combine weights derive from gate logits z over a token's *served* slots S,
// so the LibTorch layer can recompute them differentiably (o = slot offset):
//   SoftmaxSelected: w_j = exp(z_j + o_j) / sum_{l in S} exp(z_l + o_l)
//   SoftmaxGather:   w_j = softmax(z)_j, divided by sum_{l in S} softmax(z)_l if renormalize
//   SigmoidGather:   w_j = sigmoid(z_j), divided by sum_{l in S} sigmoid(z_l) if renormalize
enum class WeightRule { SoftmaxSelected, SoftmaxGather, SigmoidGather };

struct WeightSpec {
  WeightRule rule = WeightRule::SoftmaxSelected;
  bool renormalize = true;
  // True when every served token's weights sum to 1.
  bool normalized() const { return rule == WeightRule::SoftmaxSelected || renormalize; }
};

const char* to_string(WeightRule r);

// The result of routing one batch. Slots are per token, `width` of them:
// k for token-choice policies (slot j = j-th choice, kNoExpert when dropped by
// capacity), E for expert choice (chosen experts first, then kNoExpert).
struct Assignment {
  int tokens = 0;
  int experts = 0;
  int width = 0;
  std::vector<std::int32_t> expert;  // tokens*width
  std::vector<float> weight;         // tokens*width, 0 on empty slots
  std::vector<float> offset;         // tokens*width: selection score minus gate logit
  std::vector<std::int64_t> counts;  // per expert: slots served
  std::int64_t routed = 0;           // slot requests made by the policy
  std::int64_t dropped = 0;          // requests refused by capacity
  std::int64_t dropped_tokens = 0;   // tokens left with no expert at all
  std::int64_t capacity = 0;         // per-expert capacity in force, 0 = unlimited

  void reset(int T, int E, int w);
  std::int64_t served() const;
  std::int32_t at(int t, int j) const { return expert[static_cast<std::size_t>(t) * width + j]; }
  float weight_at(int t, int j) const { return weight[static_cast<std::size_t>(t) * width + j]; }
};

}  // namespace moesim
