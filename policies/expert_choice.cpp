#include "policies/expert_choice.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "policies/capacity.hpp"
#include "policies/select.hpp"

namespace moesim {

ExpertChoicePolicy::ExpertChoicePolicy(int experts, int k, const Knobs& kn)
    : Policy("expert_choice", experts, k, kn),
      factor_(kn.real("capacity_factor")),
      min_capacity_(kn.integer("min_capacity")) {
  spec_.rule = kn.choice("score_fn") == "sigmoid" ? WeightRule::SigmoidGather : WeightRule::SoftmaxGather;
  spec_.renormalize = kn.flag("renormalize");
  // Expert choice has no dropless mode: C is the whole mechanism.
  if (!(factor_ > 0.0)) fail_knob(name(), "capacity_factor", "= " + format_real(factor_) + ": must be > 0");
}

void ExpertChoicePolicy::do_route(const RouteInput& in, Rng&, Assignment& out) {
  const int T = in.tokens, E = experts();
  out.reset(T, E, E);
  CapacityConfig cfg;
  cfg.factor = factor_;
  cfg.min_capacity = min_capacity_;
  // An expert cannot pick more tokens than the batch holds.
  const std::int64_t C = std::min<std::int64_t>(expert_capacity(cfg, T, k(), E), T);
  out.capacity = C;
  out.routed = static_cast<std::int64_t>(E) * C;
  if (T == 0) return;

  // Scores in double: a float softmax would tie tokens whose logits differ.
  const auto nT = static_cast<std::size_t>(T);
  score_.resize(nT * static_cast<std::size_t>(E));
  for (int t = 0; t < T; ++t) {
    const float* z = in.logits + static_cast<std::size_t>(t) * E;
    if (spec_.rule == WeightRule::SoftmaxGather) {
      const double m = *std::max_element(z, z + E);
      double s = 0.0;
      for (int e = 0; e < E; ++e) s += std::exp(static_cast<double>(z[e]) - m);
      for (int e = 0; e < E; ++e) score_[static_cast<std::size_t>(e) * nT + t] = std::exp(static_cast<double>(z[e]) - m) / s;
    } else {
      for (int e = 0; e < E; ++e)
        score_[static_cast<std::size_t>(e) * nT + t] = 1.0 / (1.0 + std::exp(-static_cast<double>(z[e])));
    }
  }

  chosen_.assign(nT * static_cast<std::size_t>(E), 0);
  order_.resize(nT);
  for (int e = 0; e < E; ++e) {
    const double* col = score_.data() + static_cast<std::size_t>(e) * nT;
    std::iota(order_.begin(), order_.end(), 0);
    if (C < T) {
      // Only the set of the C best matters, not their order: selection, not a sort.
      std::nth_element(order_.begin(), order_.begin() + C, order_.end(), [col](std::int32_t a, std::int32_t b) {
        return col[a] > col[b] || (col[a] == col[b] && a < b);
      });
    }
    for (std::int64_t i = 0; i < C; ++i) chosen_[static_cast<std::size_t>(order_[i]) * E + e] = 1;
    out.counts[e] = C;
  }

  for (int t = 0; t < T; ++t) {
    const char* ch = chosen_.data() + static_cast<std::size_t>(t) * E;
    std::int32_t* ex = out.expert.data() + static_cast<std::size_t>(t) * E;
    int n = 0;
    for (int e = 0; e < E; ++e)
      if (ch[e]) ex[n++] = e;
    out.dropped_tokens += n == 0;
  }
  out.requested = out.expert;  // nothing is refused after selection
  compute_weights(spec_, in.logits, out);
}

PolicyInfo expert_choice_info() {
  std::vector<KnobSpec> knobs = {
      real_knob("capacity_factor", 1.0,
                "tokens per expert C = max(min_capacity, ceil(cf*T*k/E)), at most T; must be > 0", -1e300, 1e6),
      int_knob("min_capacity", 1, "lower bound on the tokens each expert picks", 0, 1L << 40),
      choice_knob("score_fn", "softmax", {"softmax", "sigmoid"},
                  "token-expert affinity: softmax over experts (paper) or per-expert sigmoid"),
      bool_knob("renormalize", false,
                "divide a token's weights by their sum (off in the paper: weight = gate probability)"),
  };
  return {"expert_choice", "expert choice: each expert picks its top-C tokens by gate probability (Zhou et al. 2022)",
          knobs, [](int E, int k, const Knobs& kn) { return std::make_unique<ExpertChoicePolicy>(E, k, kn); }};
}

}  // namespace moesim
