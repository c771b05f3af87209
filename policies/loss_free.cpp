#include "policies/loss_free.hpp"

#include <algorithm>
#include <cmath>

#include "policies/fast_math.hpp"
#include "policies/select.hpp"
#include "policies/topk.hpp"

namespace moesim {

LossFreePolicy::LossFreePolicy(int experts, int k, const Knobs& kn)
    : Policy("loss_free", experts, k, kn),
      spec_(score_weight_spec(kn)),
      cap_(capacity_from(kn, "loss_free")),
      rate_(kn.real("bias_rate")) {
  bias_.assign(static_cast<std::size_t>(experts), 0.0);
  demand_.assign(static_cast<std::size_t>(experts), 0.0);
}

void LossFreePolicy::do_route(const RouteInput& in, Rng&, Assignment& out) {
  const int T = in.tokens, E = experts(), k = this->k();
  out.reset(T, E, k);
  s_.resize(static_cast<std::size_t>(E));
  fbias_.assign(bias_.begin(), bias_.end());
  const bool sigmoid = spec_.rule == WeightRule::SigmoidGather;
  float val_small[64];
  std::vector<float> val_big(k > 64 ? static_cast<std::size_t>(k) : 0);
  float* val = k > 64 ? val_big.data() : val_small;
  for (int t = 0; t < T; ++t) {
    const float* z = in.logits + static_cast<std::size_t>(t) * E;
    // The bias is added to scores, not logits, so s must be materialised; the
    // vectorised exp keeps this at the cost of the top-k itself.
    if (sigmoid) {
      for (int e = 0; e < E; ++e) s_[e] = 1.0f / (1.0f + exp_fast(-z[e])) + fbias_[e];
    } else {
      const float m = *std::max_element(z, z + E);
      float sum = 0.0f;
      for (int e = 0; e < E; ++e) s_[e] = exp_fast(z[e] - m);
      for (int e = 0; e < E; ++e) sum += s_[e];
      for (int e = 0; e < E; ++e) s_[e] = s_[e] / sum + fbias_[e];
    }
    topk_row(s_.data(), E, k, out.expert.data() + static_cast<std::size_t>(t) * k, val);
  }
  std::fill(demand_.begin(), demand_.end(), 0.0);
  for (auto e : out.expert)
    if (e >= 0) demand_[e] += 1.0;  // an unselectable slot is refused by the tail below
  tail_.finish(in.logits, cap_, spec_, out);
}

void LossFreePolicy::do_observe(const Assignment&, const float*) {
  // Balances what the router asks for (selections before capacity): counting only
  // served slots would hide overload behind the capacity cap.
  const int E = experts();
  double mean = 0.0;
  for (double d : demand_) mean += d;
  mean /= E;
  for (int e = 0; e < E; ++e) {
    const double err = mean - demand_[e];
    bias_[e] += rate_ * static_cast<double>((err > 0) - (err < 0));
  }
}

void LossFreePolicy::save_state(StateWriter& w) const {
  w.put("bias", bias_);
  w.put("demand", demand_);
}

void LossFreePolicy::load_state(StateReader& r) {
  const auto E = static_cast<std::size_t>(experts());
  auto b = r.get_vec("bias", E);
  auto d = r.get_vec("demand", E);
  bias_ = std::move(b);
  demand_ = std::move(d);
}

PolicyInfo loss_free_info() {
  auto knobs = score_knobs();
  knobs[0].default_value = "sigmoid";  // DeepSeek-V3 pairs the bias with sigmoid scores
  knobs.push_back(real_knob("bias_rate", 1e-3, "bias update speed u: b_i += u*sign(mean load - load_i)", 0.0));
  for (auto& c : capacity_knobs()) knobs.push_back(c);
  return {"loss_free", "auxiliary-loss-free balancing: select on score + bias, weight on score, sign update of bias",
          knobs, [](int E, int k, const Knobs& kn) { return std::make_unique<LossFreePolicy>(E, k, kn); }};
}

}  // namespace moesim
