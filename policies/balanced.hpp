#pragma once
// Balanced assignment (BASE layers, Lewis et al. 2021): every expert gets
// exactly T*k/E token slots and every token k distinct experts. Slots are filled
// in k rounds, each an assignment giving every token one more expert (never one
// it holds) so as to maximise that round's total gate logit (BASE itself has
// k = 1). solver=exact (default) solves each round to optimality by successive
// shortest paths (ssp_assign.hpp); solver=auction is the eps-approximate auction
// BASE's own code uses (auction_assign.hpp), within T*eps*range of the optimum.
#include <cstdint>
#include <vector>

#include "policies/auction_assign.hpp"
#include "policies/policy.hpp"
#include "policies/registry.hpp"
#include "policies/ssp_assign.hpp"

namespace moesim {

class BalancedPolicy : public Policy {
 public:
  BalancedPolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<BalancedPolicy>(*this); }

 protected:
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;

 private:
  void solve_rounds(const float* logits, int T);

  WeightSpec spec_;
  bool auction_;
  double eps_;
  SspAssigner exact_;
  AuctionAssigner auction_solver_;
  std::vector<float> logit_;         // exact: tokens x experts, -inf once held
  std::vector<double> value_;        // auction: logits scaled to [0, 1], -inf once held
  std::vector<std::int32_t> owner_;  // per token: the expert of this round
  std::vector<std::int32_t> held_;   // tokens x k: experts won, by round
};

PolicyInfo balanced_info();

}  // namespace moesim
