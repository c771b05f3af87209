#pragma once
// The tail every token-choice policy shares: capacity filtering by position or
// by probability, then combine weights over the served slots by the declared rule.
#include <vector>

#include "policies/capacity.hpp"
#include "policies/types.hpp"

namespace moesim {

class TokenChoiceTail {
 public:
  // `out.expert` (tokens x k) holds the wanted experts; `out.offset` the per-slot
  // selection-minus-logit offsets. `logits` are the gate logits weights derive from.
  void finish(const float* logits, const CapacityConfig& cfg, const WeightSpec& spec,
              Assignment& out);

 private:
  CapacityFilter filter_;
  std::vector<float> priority_;
};

}  // namespace moesim
