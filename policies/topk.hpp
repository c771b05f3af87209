#pragma once
// Top-k gating (Shazeer 2017, GShard, Mixtral, DeepSeek-V3, Megatron-Core's
// TopKRouter): softmax, sigmoid or sqrt-softplus scores, optional renormalisation
// and scaling, optional group-limited selection.
//
// Group-limited routing (DeepSeek-V2/V3, Megatron-Core group_limited_topk): the E
// experts form G equal groups; a group's score is the sum of its top
// m = k / topk_groups selection values (group_score sum_topk; max: m = 1,
// top2sum: m = 2); the topk_groups best groups are kept and the top-k runs inside
// them. The selection values are what Megatron-Core's top-k runs on: the logits
// when the softmax follows the top-k (renormalize = true), the probabilities when
// it precedes it (renormalize = false), sigmoid or sqrt-softplus scores otherwise,
// plus the expert bias in loss_free (DeepSeek-V3). k < topk_groups is refused: m
// would be 0 and every group score equal.
#include <vector>

#include "policies/capacity.hpp"
#include "policies/policy.hpp"
#include "policies/registry.hpp"
#include "policies/select.hpp"
#include "policies/token_choice.hpp"

namespace moesim {

// What group scores sum: the selection values as given, or their softmax,
// sigmoid or sqrt-softplus transform (the top-k inside groups is the same either
// way, every transform being monotone).
enum class GroupValues { Identity, Softmax, Sigmoid, SqrtSoftplus };

// Selection on (possibly perturbed) values shared by top-k, noisy top-k and loss-free.
struct TopKSelector {
  int experts = 0;
  int k = 1;
  int groups = 1;        // group-limited routing off when 1
  int topk_groups = 1;
  int group_top = 1;     // m: values summed per group
  GroupValues group_values = GroupValues::Identity;
  TieBreak tie = TieBreak::LowIndex;
  // Writes the wanted experts (tokens x k) for `sel` values into out.expert, and,
  // when slot_logits is given, the `logits` of those experts into it (tokens x k).
  // Returns false when a `sel` value was NaN or infinite, as far as it looked:
  // always true unless scans_finite().
  bool select(const float* sel, int tokens, Assignment& out, Rng& rng, const float* logits = nullptr,
              float* slot_logits = nullptr);
  // Whether select() checks every `sel` value for finiteness in its selection pass
  // (no groups, k <= 8, lower-index ties) and consumes no randomness.
  bool scans_finite() const { return (groups <= 1 || groups16_applies()) && k <= 8 && tie == TieBreak::LowIndex; }
  // One token: the k best of z[0..experts) into idx, their values into val.
  void select_row(const float* z, std::int32_t* idx, float* val, Rng& rng);
  // n <= 16 consecutive rows of z (idx, val: n x k), through the row-parallel
  // kernel where it applies; with slot_logits, also the `logits` rows' values at
  // the chosen experts (n x k), gathered while the block is in L1. Returns false
  // when a z value was not finite (as far as scans_finite() looks).
  bool select_block(const float* z, int n, std::int32_t* idx, float* val, Rng& rng, const float* logits = nullptr,
                    float* slot_logits = nullptr);
  void configure(const Knobs& knobs, const std::string& owner, GroupValues values);

 private:
  // Group-limited selection of 16 rows with the groups' best values found row-parallel.
  // Returns false, writing nothing, when a value was not finite; only where
  // groups16_applies() (AVX-512, k <= 8, lower-index ties, m <= 4, at most 64 groups).
  bool select_groups16(const float* z, std::int32_t* idx, float* val);
  bool groups16_applies() const;
  std::vector<float> gtop_;    // select_groups16: each group's best values, 16 lanes
  std::vector<float> cols_;    // select_groups16: the rows transposed, expert e of row r at e * 16 + r
  std::vector<double> gscore16_;  // select_groups16: group g of row r at g * 16 + r
  std::vector<double> gscore_;
  std::vector<std::int32_t> midx_;
  std::vector<float> mval_;
  std::vector<char> allowed_;
};

std::vector<KnobSpec> score_knobs();  // score_fn, renormalize, topk_scaling_factor
std::vector<KnobSpec> group_knobs();  // n_groups, topk_groups, group_score
KnobSpec tie_break_knob();
TieBreak tie_break_from(const Knobs& knobs);
WeightSpec score_weight_spec(const Knobs& knobs);
// The group values that match the score rule (see the header comment).
GroupValues group_values_for(const WeightSpec& spec);
// Megatron-Core TopKRouter's conventions (preset megatron of topk and loss_free):
// renormalise only for k > 1 (k = 1 softmax needs pre-softmax there), drop by
// combine weight, position drops by token, drops only mask, float capacity, no minimum.
KnobMap megatron_router_knobs(int k);

class TopKPolicy : public Policy {
 public:
  TopKPolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<TopKPolicy>(*this); }

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;
  bool checks_logits() const override { return sel_.scans_finite(); }

 private:
  CapacityConfig cap_;
  WeightSpec spec_;
  TopKSelector sel_;
  TokenChoiceTail tail_;
};

PolicyInfo topk_info();

}  // namespace moesim
