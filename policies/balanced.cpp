#include "policies/balanced.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "policies/select.hpp"
#include "policies/topk.hpp"

namespace moesim {

BalancedPolicy::BalancedPolicy(int experts, int k, const Knobs& kn)
    : Policy("balanced", experts, k, kn),
      spec_(score_weight_spec(kn)),
      auction_(kn.choice("solver") == "auction"),
      eps_(kn.real("auction_eps")) {
  if (!(eps_ > 0.0)) fail_knob(name(), "auction_eps", "= " + format_real(eps_) + ": must be > 0");
  // Values are scaled to [0, 1] and prices stay within a few units of them: a
  // much smaller step would vanish in double precision and stall the auction.
  if (eps_ < 1e-9) fail_knob(name(), "auction_eps", "= " + format_real(eps_) + ": must be >= 1e-9 (relative to the logit range)");
}

// Round r gives every token its r-th expert; what it won is -inf afterwards, so
// its k experts are distinct. The allowed graph stays biregular (each token may
// use E-r experts, each expert's T/E slots are open to T/E*(E-r) tokens), so a
// perfect assignment exists in every round.
void BalancedPolicy::solve_rounds(const float* logits, int T) {
  const int E = experts(), k = this->k(), cap = T / E;
  const std::size_t n = static_cast<std::size_t>(T) * E;
  constexpr double kNeg = -std::numeric_limits<double>::infinity();
  owner_.resize(static_cast<std::size_t>(T));
  held_.resize(static_cast<std::size_t>(T) * k);
  if (auction_) {
    // Scaled to [0, 1]: the auction's epsilon, step count and optimality gap (at
    // most T*eps) are then relative to the batch's logit range, whatever its units.
    const auto [lo, hi] = std::minmax_element(logits, logits + n);
    const double zmin = *lo, range = static_cast<double>(*hi) - zmin;
    const double scale = range > 0.0 ? 1.0 / range : 0.0;
    value_.resize(n);
    for (std::size_t i = 0; i < n; ++i) value_[i] = (logits[i] - zmin) * scale;
  } else {
    logit_.assign(logits, logits + n);
  }
  for (int r = 0; r < k; ++r) {
    if (auction_)
      auction_solver_.assign(value_.data(), T, E, cap, eps_, owner_.data());
    else
      exact_.assign(logit_.data(), T, E, cap, owner_.data());
    for (int t = 0; t < T; ++t) {
      held_[static_cast<std::size_t>(t) * k + r] = owner_[t];
      if (r + 1 == k) continue;
      const std::size_t i = static_cast<std::size_t>(t) * E + static_cast<std::size_t>(owner_[t]);
      if (auction_) value_[i] = kNeg;
      else logit_[i] = -std::numeric_limits<float>::infinity();
    }
  }
}

void BalancedPolicy::do_route(const RouteInput& in, Rng&, Assignment& out) {
  const int T = in.tokens, E = experts(), k = this->k();
  if (T % E != 0)
    fail("batch of T=" + std::to_string(T) + " tokens is not a multiple of E=" + std::to_string(E) +
         " (every expert must get T*k/E)");
  out.reset(T, E, k);
  const std::int64_t per_expert = static_cast<std::int64_t>(T) * k / E;
  out.capacity = per_expert;
  out.routed = static_cast<std::int64_t>(T) * k;
  if (T == 0) return;
  solve_rounds(in.logits, T);

  // Slots in descending logit order, ties to the lower expert.
  for (int t = 0; t < T; ++t) {
    const float* z = in.logits + static_cast<std::size_t>(t) * E;
    std::int32_t* ex = out.expert.data() + static_cast<std::size_t>(t) * k;
    std::copy_n(held_.data() + static_cast<std::size_t>(t) * k, k, ex);
    std::sort(ex, ex + k, [z](std::int32_t a, std::int32_t b) { return z[a] > z[b] || (z[a] == z[b] && a < b); });
  }
  std::fill(out.counts.begin(), out.counts.end(), per_expert);
  out.requested = out.expert;  // nothing is refused after selection
  compute_weights(spec_, in.logits, out);
}

PolicyInfo balanced_info() {
  auto knobs = score_knobs();
  knobs.push_back(choice_knob("solver", "exact", {"exact", "auction"},
                              "each round's assignment: exact (successive shortest paths, optimal) or the "
                              "eps-approximate auction of BASE's code"));
  knobs.push_back(real_knob("auction_eps", 1e-3,
                            "solver=auction: bid step, relative to the batch's logit range; total score within "
                            "T*eps of the optimum; must be > 0",
                            -1e300, 1.0));
  return {"balanced",
          "BASE layers: exactly balanced assignment (T*k/E slots per expert) maximising the total logit, solved "
          "exactly per slot round; T must be a multiple of E",
          knobs, [](int E, int k, const Knobs& kn) { return std::make_unique<BalancedPolicy>(E, k, kn); }};
}

}  // namespace moesim
