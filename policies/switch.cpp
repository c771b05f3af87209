#include "policies/switch.hpp"

#include "policies/noisy_topk.hpp"
#include "policies/select.hpp"
#include "policies/topk.hpp"

namespace moesim {

SwitchPolicy::SwitchPolicy(int experts, int k, const Knobs& kn)
    : Policy("switch", experts, k, kn),
      jitter_(kn.real("jitter_eps")),
      cap_(capacity_from(kn, "switch")),
      tie_(tie_break_from(kn)) {
  if (k != 1) fail_k("routes exactly one expert per token: set k=1 (topk routes k > 1)");
}

void SwitchPolicy::do_route(const RouteInput& in, Rng& rng, Assignment& out) {
  const int T = in.tokens, E = experts();
  const float* sel = in.logits;
  if (jitter_ > 0.0) {
    jittered_logits(in, jitter_, rng, name(), jittered_);
    sel = jittered_.data();
  }
  out.reset(T, E, 1);
  float v;
  float* slots = tail_.slot_logits(T, 1);
  for (int t = 0; t < T; ++t) {
    const float* z = sel + static_cast<std::size_t>(t) * E;
    topk_row(z, E, 1, &out.expert[t], &v);
    if (tie_ == TieBreak::Random) shuffle_ties(E, 1, [z](int e) { return z[e]; }, &out.expert[t], &v, rng);
    gather_slot_logits(in.logits + static_cast<std::size_t>(t) * E, &out.expert[t], 1, slots + t);
  }
  tail_.finish(in.logits, cap_, weight_spec(), out);
}

PolicyInfo switch_info() {
  auto knobs = std::vector<KnobSpec>{
      real_knob("jitter_eps", 0.0, "multiplicative input jitter (Switch uses 0.01); needs the gate input; 0 = off",
                0.0, 1.0),
      tie_break_knob()};
  for (auto& c : capacity_knobs()) knobs.push_back(c);
  return PolicyInfo("switch", "Switch Transformer top-1: weight = softmax probability, capacity-limited, input jitter",
                  knobs, [](int E, int k, const Knobs& kn) { return std::make_unique<SwitchPolicy>(E, k, kn); });
}

}  // namespace moesim
