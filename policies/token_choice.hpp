#pragma once
// The tail every token-choice policy shares: capacity filtering by position or
// by probability, then combine weights over the served slots by the declared rule.
#include <vector>

#include "policies/capacity.hpp"
#include "policies/select.hpp"
#include "policies/types.hpp"

namespace moesim {

class TokenChoiceTail {
 public:
  // `out.expert` (tokens x k) holds the wanted experts; `out.offset` the per-slot
  // selection-minus-logit offsets. `logits` are the gate logits weights derive from.
  void finish(const float* logits, const CapacityConfig& cfg, const WeightSpec& spec,
              Assignment& out);
  // Optional: room for the logit of every wanted slot (tokens x k), for the
  // selector to fill (gather_slot_logits) while each row is still in cache; the
  // next finish() then reads these instead of gathering from the T x E logits
  // again, which at E = 64 cost a quarter of top-k's time.
  float* slot_logits(int tokens, int k);
  // Optional, likewise: each token's full-row softmax normaliser (RowSoftmax),
  // for the rules that need it (SoftmaxGather without renormalisation).
  RowSoftmax* row_softmax(int tokens);
  // The last finish()'s requests per expert before capacity (every wanted slot
  // is a valid expert once finish() returns).
  const std::vector<std::int64_t>& requested_counts() const { return filter_.requested_counts(); }

 private:
  CapacityFilter filter_;
  std::vector<float> priority_;
  std::vector<float> slot_z_;
  bool have_slots_ = false;
  std::vector<RowSoftmax> rows_;
  bool have_rows_ = false;
};

}  // namespace moesim
