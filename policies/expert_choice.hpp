#pragma once
// Expert-choice routing (Zhou et al. 2022, flaxformer): every expert picks its
// top-C tokens by gate probability, so load is balanced by construction while a
// token may get any number of experts, including none.
#include <cstdint>
#include <vector>

#include "policies/policy.hpp"
#include "policies/registry.hpp"

namespace moesim {

class ExpertChoicePolicy : public Policy {
 public:
  ExpertChoicePolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<ExpertChoicePolicy>(*this); }

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;

 private:
  WeightSpec spec_;
  double factor_;
  long min_capacity_;
  void score_keys(const float* logits, int T);
  void choose(int T, std::int64_t C);
  void collect(int T, Assignment& out);
  void weights_from_keys(int T, Assignment& out);

  // Scratch, reused across batches.
  std::vector<double> score_;                    // tokens x experts: selection keys
  std::vector<double> lo_, scale_;               // per expert: key minimum, bins per unit key
  std::vector<std::int32_t> hist_;               // experts x 1024 bins
  std::vector<std::uint16_t> bin_;               // tokens x experts: each key's bin
  std::vector<int> top_bin_;                     // per expert: the bin holding its C-th best
  std::vector<std::int64_t> need_;               // per expert: tokens still to take from that bin
  std::vector<std::vector<std::int32_t>> cand_;  // per expert: the tokens of that bin
  std::vector<char> chosen_;         // tokens x experts
};

PolicyInfo expert_choice_info();

}  // namespace moesim
