#include "policies/token_choice.hpp"

#include "policies/fast_math.hpp"
#include "policies/select.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

namespace moesim {

float* TokenChoiceTail::slot_logits(int tokens, int k) {
  slot_z_.resize(static_cast<std::size_t>(tokens) * static_cast<std::size_t>(k));
  have_slots_ = true;
  return slot_z_.data();
}

RowSoftmax* TokenChoiceTail::row_softmax(int tokens) {
  rows_.resize(static_cast<std::size_t>(tokens));
  have_rows_ = true;
  return rows_.data();
}

void TokenChoiceTail::finish(const float* logits, const CapacityConfig& cfg, const WeightSpec& spec,
                             Assignment& out) {
  const int T = out.tokens, k = out.width, E = out.experts;
  const float* slots = have_slots_ && slot_z_.size() == out.expert.size() ? slot_z_.data() : nullptr;
  have_slots_ = false;
  const RowSoftmax* rows = have_rows_ && rows_.size() == static_cast<std::size_t>(T) ? rows_.data() : nullptr;
  have_rows_ = false;
  // Every wanted expert must be valid before the capacity counts index with it: a
  // selection score that is NaN or -inf everywhere (computed past Policy::route's
  // logits check: jittered gate input, overflowing noise or bias) leaves kNoExpert.
  for (std::size_t i = 0, n = out.expert.size(); i < n; ++i)
    if (static_cast<std::uint32_t>(out.expert[i]) >= static_cast<std::uint32_t>(E))
      throw Error("no expert selectable at token " + std::to_string(i / static_cast<std::size_t>(k)) + ", slot " +
                  std::to_string(i % static_cast<std::size_t>(k)) +
                  ": the selection scores are not finite (NaN or infinite gate input, or noise/bias overflowing)");
  out.requested = out.expert;
  const float* prio = nullptr;
  if (!cfg.dropless && cfg.drop == DropBy::Probability && cfg.priority == DropPriority::Weight) {
    // Megatron-Core ranks by the combine weight the request would get, formed
    // before any drop (expert == requested here).
    compute_weights(spec, logits, out, slots, rows);
    priority_ = out.weight;
    prio = priority_.data();
  } else if (!cfg.dropless && cfg.drop == DropBy::Probability) {
    // Requests compete across tokens, so rank by the gate probability the rule defines.
    priority_.resize(static_cast<std::size_t>(T) * k);
    for (int t = 0; t < T; ++t) {
      const float* z = logits + static_cast<std::size_t>(t) * E;
      // Softmax as exp(z - m) / s: through lse = m + log(s) the log(s) term is lost
      // once |m| dwarfs it (logits {1e30, 1e30} gave probability 1, not 0.5).
      float m = 0.0f, s = 1.0f;
      if (spec.rule == WeightRule::SoftmaxGather) {
        m = rows ? rows[t].max : row_max(z, E);
        s = static_cast<float>(rows ? rows[t].sum : row_sum_exp(z, E, m));
      }
      for (int j = 0; j < k; ++j) {
        const std::size_t i = static_cast<std::size_t>(t) * k + j;
        const float zj = slots ? slots[i] : z[out.expert[i]];
        switch (spec.rule) {
          case WeightRule::SoftmaxSelected: priority_[i] = zj + out.offset[i]; break;
          case WeightRule::SoftmaxGather: priority_[i] = std::exp(zj - m) / s; break;
          case WeightRule::SigmoidGather: priority_[i] = 1.0f / (1.0f + std::exp(-zj)); break;
          case WeightRule::SqrtSoftplusGather:
            priority_[i] = static_cast<float>(std::sqrt(std::log1p(std::exp(static_cast<double>(zj)))));
            break;
        }
      }
    }
    prio = priority_.data();
  }
  filter_.apply(cfg, prio, out);
  compute_weights(spec, logits, out, slots, rows);
}

}  // namespace moesim
