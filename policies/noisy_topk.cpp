#include "policies/noisy_topk.hpp"

#include <Eigen/Core>

#include <cmath>
#include <limits>

#include "policies/select.hpp"

namespace moesim {

void jittered_logits(const RouteInput& in, double eps, Rng& rng, const std::string& owner,
                     std::vector<float>& out) {
  if (in.tokens > 0 && (!in.gate_input || !in.gate_weight || in.gate_dim < 1))
    throw Error(owner + ": knob 'jitter_eps' > 0 needs the gate input (RouteInput::gate_input, "
                        "gate_weight, gate_dim)");
  using RowMat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const int T = in.tokens, E = in.experts, d = in.gate_dim;
  RowMat x = Eigen::Map<const RowMat>(in.gate_input, T, d);
  for (Eigen::Index i = 0; i < x.size(); ++i)
    x.data()[i] *= static_cast<float>(rng.uniform(1.0 - eps, 1.0 + eps));
  out.resize(static_cast<std::size_t>(T) * E);
  Eigen::Map<RowMat>(out.data(), T, E).noalias() = x * Eigen::Map<const RowMat>(in.gate_weight, E, d).transpose();
  // Route() checked the caller's logits, not these: a NaN gate input lands here.
  check_finite(out.data(), T, E, (owner + " (jittered logits)").c_str());
}

NoisyTopKPolicy::NoisyTopKPolicy(int experts, int k, const Knobs& kn)
    : Policy("noisy_topk", experts, k, kn),
      std_(kn.real("noise_std")),
      jitter_(kn.real("jitter_eps")),
      weights_noisy_(kn.choice("weights_from") == "noisy"),
      spec_(score_weight_spec(kn)),
      cap_(capacity_from(kn, "noisy_topk")) {
  const auto& n = kn.choice("noise");
  noise_ = n == "gaussian" ? Noise::Gaussian : n == "gumbel" ? Noise::Gumbel : Noise::None;
  // Shazeer's gate is softmax(KeepTopK(H(x))): softmax over the selected noisy logits.
  if (weights_noisy_) spec_ = {WeightRule::SoftmaxSelected, true, false, spec_.scale};
  spec_ = with_drop_weights(spec_, cap_);
  sel_.experts = experts;
  sel_.k = k;
  sel_.configure(kn, "noisy_topk", group_values_for(spec_));
}

void NoisyTopKPolicy::do_route(const RouteInput& in, Rng& rng, Assignment& out) {
  const int T = in.tokens, E = experts(), k = this->k();
  const float* base = in.logits;
  if (jitter_ > 0.0) {
    jittered_logits(in, jitter_, rng, name(), jittered_);
    base = jittered_.data();
  }
  const bool noisy = noise_ != Noise::None && std_ > 0.0;
  // A refused batch leaves the caller's Rng as it found it, as when the logits
  // are checked before routing (the check runs inside the noise pass below).
  const Rng before = rng;
  // One draw keys the batch's noise; row t takes values t*ceil(E/2) onwards of
  // it, so each row is drawn, perturbed and selected while it is in L1.
  const std::uint64_t key = noisy ? rng.next_u64() : 0;
  const std::uint64_t per_row = (static_cast<std::uint64_t>(E) + 1) / 2;
  const auto sd = static_cast<float>(std_);
  out.reset(T, E, k);
  // Blocks of 16 rows: drawn, perturbed and selected while they are in L1.
  noisy_.resize(static_cast<std::size_t>(16) * E);
  std::vector<float> vals(static_cast<std::size_t>(16) * k);
  float* slots = tail_.slot_logits(T, k);
  // Without jitter the logits are checked here, in the pass that adds them
  // (checks_logits()); with it, Policy::route checked them first.
  int bad = 0;
  for (int t0 = 0; t0 < T; t0 += 16) {
    const int n = T - t0 < 16 ? T - t0 : 16;
    const float* b = base + static_cast<std::size_t>(t0) * E;
    const std::size_t len = static_cast<std::size_t>(n) * E;
    float* rows = noisy_.data();
    if (noisy && noise_ == Noise::Gaussian) {
      normal_.fill_rows(key, static_cast<std::uint64_t>(t0) * per_row, rows, n, E, sd);
    } else if (noisy) {
      for (int r = 0; r < n; ++r)
        fill_gumbel(key, static_cast<std::uint64_t>(t0 + r) * per_row, rows + static_cast<std::size_t>(r) * E,
                    static_cast<std::size_t>(E), sd);
    }
    for (std::size_t i = 0; i < len; ++i) {
      rows[i] = noisy ? rows[i] + b[i] : b[i];
      bad |= !(std::fabs(b[i]) <= std::numeric_limits<float>::max());
    }
    std::int32_t* idx0 = out.expert.data() + static_cast<std::size_t>(t0) * k;
    sel_.select_block(noisy_.data(), n, idx0, vals.data(), rng, in.logits + static_cast<std::size_t>(t0) * E,
                      slots + static_cast<std::size_t>(t0) * k);
    if (!weights_noisy_) continue;
    // Shazeer's weights: the offset of each chosen noisy logit from the clean one.
    for (int r = 0; r < n; ++r) {
      const std::size_t zr = static_cast<std::size_t>(t0 + r) * E, s = static_cast<std::size_t>(t0 + r) * k;
      const std::int32_t* idx = idx0 + r * k;
      for (int j = 0; j < k; ++j)  // an unselectable slot is refused by the tail by name
        if (idx[j] >= 0)
          out.offset[s + static_cast<std::size_t>(j)] =
              noisy_[static_cast<std::size_t>(r) * E + static_cast<std::size_t>(idx[j])] - in.logits[zr + static_cast<std::size_t>(idx[j])];
    }
  }
  if (bad && jitter_ <= 0.0) {
    rng = before;
    check_finite(in.logits, T, E, name().c_str());
  }
  tail_.finish(in.logits, cap_, spec_, out);
}

PolicyInfo noisy_topk_info() {
  auto knobs = score_knobs();
  knobs.push_back(choice_knob("noise", "gaussian", {"gaussian", "gumbel", "none"},
                              "additive logit noise: Gaussian (Shazeer) or Gumbel (DeepSpeed RSample)"));
  knobs.push_back(real_knob("noise_std", 1.0, "scale of the additive logit noise", 0.0, 1e6));
  knobs.push_back(real_knob("jitter_eps", 0.0,
                            "multiplicative input jitter x*U(1-eps,1+eps); needs the gate input; 0 = off", 0.0, 1.0));
  knobs.push_back(choice_knob("weights_from", "noisy", {"noisy", "clean"},
                              "weights: softmax over the selected noisy logits (Shazeer) or the clean score rule"));
  for (auto& g : group_knobs()) knobs.push_back(g);
  knobs.push_back(tie_break_knob());
  for (auto& c : capacity_knobs()) knobs.push_back(c);
  return {"noisy_topk", "top-k on noisy logits (Gaussian/Gumbel noise, multiplicative input jitter)", knobs,
          [](int E, int k, const Knobs& kn) { return std::make_unique<NoisyTopKPolicy>(E, k, kn); }};
}

}  // namespace moesim
