#include "policies/switch.hpp"

#include "policies/noisy_topk.hpp"
#include "policies/select.hpp"
#include "policies/fast_math.hpp"
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
  out.reset(T, E, 1);
  float* slots = tail_.slot_logits(T, 1);
  if (jitter_ > 0.0) {
    jittered_logits(in, jitter_, rng, name(), jittered_);
    float v;
    for (int t = 0; t < T; ++t) {
      const float* z = jittered_.data() + static_cast<std::size_t>(t) * E;
      topk_row(z, E, 1, &out.expert[t], &v);
      if (tie_ == TieBreak::Random) shuffle_ties(E, 1, [z](int e) { return z[e]; }, &out.expert[t], &v, rng);
      gather_slot_logits(in.logits + static_cast<std::size_t>(t) * E, &out.expert[t], 1, slots + t);
    }
  } else {
    // Selection on the logits themselves, 16 rows at a time: the chosen logit is
    // the row's maximum, so the weight's softmax normaliser is summed while the
    // block is in L1, and the finiteness check rides along (checks_logits()).
    RowSoftmax* rows = tail_.row_softmax(T);
    bool finite = true;
    for (int t0 = 0; t0 < T; t0 += 16) {
      const int n = T - t0 < 16 ? T - t0 : 16;
      const float* z0 = in.logits + static_cast<std::size_t>(t0) * E;
      finite &= topk_rows(z0, n, E, 1, &out.expert[static_cast<std::size_t>(t0)], slots + t0);
      if (tie_ == TieBreak::Random)
        for (int r = 0; r < n; ++r) {
          const float* z = z0 + static_cast<std::size_t>(r) * E;
          shuffle_ties(E, 1, [z](int e) { return z[e]; }, &out.expert[static_cast<std::size_t>(t0 + r)], slots + t0 + r, rng);
        }
      const float* m = slots + t0;
      if (finite && n == 16) {  // the block's sums with one fold (bitwise row_sum_exp)
        double s[16];
        row_sum_exp16(z0, E, m, s);
        for (int r = 0; r < 16; ++r) rows[t0 + r] = {m[r], s[r]};
      } else {
        for (int r = 0; r < n; ++r)
          rows[t0 + r] = {m[r], finite ? row_sum_exp(z0 + static_cast<std::size_t>(r) * E, E, m[r]) : 1.0};
      }
    }
    if (!finite) check_finite(in.logits, T, E, name().c_str());
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
