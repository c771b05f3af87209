#pragma once
// Balanced assignment (BASE layers, Lewis et al. 2021): every expert gets
// exactly T*k/E token slots and every token k distinct experts. Slots are filled
// in k rounds, each an auction (Bertsekas) giving every token one more expert so
// as to maximise that round's total gate logit (BASE itself has k = 1).
#include <cstdint>
#include <vector>

#include "policies/policy.hpp"
#include "policies/registry.hpp"

namespace moesim {

class BalancedPolicy : public Policy {
 public:
  BalancedPolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<BalancedPolicy>(*this); }

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;

 private:
  struct Copy {  // one of an expert's T/E seats in a round
    double price;
    std::int32_t holder;  // token, or -1 while free
  };
  void auction_round(int T, int round);

  WeightSpec spec_;
  double eps_;
  std::vector<double> value_;        // tokens x experts: logits scaled to [0, 1], -inf once held
  std::vector<Copy> seat_;           // experts x (T/E): one min-heap by price per expert
  std::vector<double> min_price_;    // per expert: its cheapest seat, kept dense for the bid scan
  std::vector<double> bid_;          // per expert: a token's profit, scratch
  std::vector<std::int32_t> owner_;  // per token: expert won this round, -1 if none
  std::vector<std::int32_t> queue_;  // ring buffer of tokens without a seat
  std::vector<std::int32_t> held_;   // tokens x k: experts won, by round
};

PolicyInfo balanced_info();

}  // namespace moesim
