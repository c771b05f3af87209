#include "policies/switch.hpp"

#include "policies/noisy_topk.hpp"
#include "policies/select.hpp"

namespace moesim {

SwitchPolicy::SwitchPolicy(int experts, int k, const Knobs& kn)
    : Policy("switch", experts, k, kn), jitter_(kn.real("jitter_eps")), cap_(capacity_from(kn, "switch")) {
  if (k != 1) fail("routes exactly one expert per token; k=" + std::to_string(k) + " given (use topk for k > 1)");
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
  for (int t = 0; t < T; ++t) topk_row(sel + static_cast<std::size_t>(t) * E, E, 1, &out.expert[t], &v);
  tail_.finish(in.logits, cap_, weight_spec(), out);
}

PolicyInfo switch_info() {
  auto knobs = std::vector<KnobSpec>{
      real_knob("jitter_eps", 0.0, "multiplicative input jitter (Switch uses 0.01); needs the gate input; 0 = off",
                0.0, 1.0)};
  for (auto& c : capacity_knobs()) knobs.push_back(c);
  return {"switch", "Switch Transformer top-1: weight = softmax probability, capacity-limited, input jitter", knobs,
          [](int E, int k, const Knobs& kn) { return std::make_unique<SwitchPolicy>(E, k, kn); }, true};
}

}  // namespace moesim
