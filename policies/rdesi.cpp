#include "policies/rdesi.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "policies/capacity.hpp"
#include "policies/select.hpp"
#include "policies/topk.hpp"

namespace moesim {

static std::vector<KnobPreset> rdesi_presets() {
  return {
      {"moesim", "load divided by the capacity, capacity 1.25, N over served slots, idle-only decay",
       [](int) { return KnobMap{}; }},
      {"reference", "GT-MoE src/rd_esi/router.py: decay of every expert before the EMA, raw-count load, "
                    "dropless, N over routed slots",
       [](int) {
         return KnobMap{{"beta", "0.1"},          {"gamma", "0.1"},          {"alpha", "0.9"},
                        {"ucb_c", "0.1"},         {"ucb_eps", "1e-10"},      {"decay_rate", "0.99"},
                        {"decay_on", "all_before_ema"}, {"idle_perf", "zero"}, {"load_ema_alpha", "0.9"},
                        {"load_normalize", "none"}, {"count_slots", "routed"}, {"epsilon", "0"},
                        {"score_noise", "0"},     {"weights_over", "scores"}, {"initial_reputation", "0"},
                        {"dropless", "true"}};
       }},
  };
}

static std::vector<KnobSpec> rdesi_knobs() {
  std::vector<KnobSpec> k = {
      preset_knob(rdesi_presets()),
      real_knob("beta", 0.1, "weight of reputation R_i in the selection score"),
      real_knob("gamma", 0.1, "weight of the load penalty L_i in the selection score"),
      real_knob("alpha", 0.9, "reputation EMA rate: R <- alpha*perf + (1-alpha)*R", 0.0, 1.0),
      real_knob("ucb_c", 0.1, "exploration constant c of c*sqrt(ln(N+1)/(N_i+eps)); 0 = off", 0.0, 1e6),
      real_knob("ucb_eps", 1e-10, "eps in the UCB denominator (reference: 1e-10)", 1e-30),
      real_knob("decay_rate", 0.99, "reputation decay R <- decay_rate*R each step; 1 = off", 0.0, 1.0),
      choice_knob("decay_on", "idle", {"idle", "all_before_ema", "all_after_ema", "none"},
                  "which experts decay and when: idle ones (reference reputation_scorer.py), every expert "
                  "before the EMA (reference router.py, the one its model uses), every expert after it"),
      choice_knob("idle_perf", "zero", {"zero", "keep"},
                  "idle expert's perf: 0, dragging R down (reference), or keep R unchanged"),
      real_knob("load_ema_alpha", 0.9, "load EMA rate: L <- a*demand + (1-a)*L", 0.0, 1.0),
      choice_knob("load_normalize", "capacity", {"capacity", "none"},
                  "divide per-batch demand by the expert capacity (fair share when dropless), or raw counts "
                  "(reference)"),
      choice_knob("count_slots", "served", {"served", "routed"},
                  "what the UCB counts N_i, N add up: served slots, or every routed slot (reference)"),
      real_knob("epsilon", 0.0, "epsilon-greedy: a token takes k uniformly random experts with this probability",
                0.0, 1.0),
      real_knob("score_noise", 0.0, "std of Gaussian noise added to every selection score", 0.0, 1e6),
      choice_knob("weights_over", "scores", {"scores", "logits"},
                  "combine weights: softmax over the selected scores (reference) or over their gate logits"),
      real_knob("initial_reputation", 0.0, "R_i at the start"),
  };
  k.push_back(tie_break_knob());
  for (auto& c : capacity_knobs()) k.push_back(c);
  return k;
}

RdesiPolicy::RdesiPolicy(int experts, int k, const Knobs& kn)
    : Policy("rdesi", experts, k, kn),
      beta_(kn.real("beta")),
      gamma_(kn.real("gamma")),
      alpha_(kn.real("alpha")),
      ucb_c_(kn.real("ucb_c")),
      ucb_eps_(kn.real("ucb_eps")),
      decay_rate_(kn.real("decay_rate")),
      load_alpha_(kn.real("load_ema_alpha")),
      epsilon_(kn.real("epsilon")),
      noise_(kn.real("score_noise")),
      cap_(capacity_from(kn, "rdesi")) {
  const auto& d = kn.choice("decay_on");
  decay_on_ = d == "idle"             ? Decay::Idle
              : d == "all_before_ema" ? Decay::AllBeforeEma
              : d == "all_after_ema"  ? Decay::AllAfterEma
                                      : Decay::None;
  idle_perf_zero_ = kn.choice("idle_perf") == "zero";
  count_routed_ = kn.choice("count_slots") == "routed";
  tie_ = tie_break_from(kn);
  load_by_capacity_ = kn.choice("load_normalize") == "capacity";
  weights_on_scores_ = kn.choice("weights_over") == "scores";
  const auto E = static_cast<std::size_t>(experts);
  R_.assign(E, kn.real("initial_reputation"));
  L_.assign(E, 0.0);
  N_i_.assign(E, 0.0);
  demand_.assign(E, 0.0);
}

std::vector<double> RdesiPolicy::score_bias() const {
  const int E = experts();
  std::vector<double> b(static_cast<std::size_t>(E));
  const double lnN = std::log(N_ + 1.0);
  for (int e = 0; e < E; ++e) {
    b[e] = beta_ * R_[e] - gamma_ * L_[e];
    if (ucb_c_ > 0.0) b[e] += ucb_c_ * std::sqrt(lnN / (N_i_[e] + ucb_eps_));
  }
  return b;
}

std::vector<NamedVector> RdesiPolicy::state_vectors() const {
  return {{"reputation", R_}, {"load", L_}, {"counts", N_i_}, {"score_bias", score_bias()}};
}

// Per row, for exploration or score noise: the draw order is fixed (epsilon
// coin, then noise, then the random pick) so a knob that is off consumes no
// randomness and cannot shift the others.
void RdesiPolicy::route_rows(const RouteInput& in, Rng& rng, Assignment& out, float* slots) {
  const int T = in.tokens, E = experts(), k = this->k();
  const float* bias = bias_.data();
  float val_small[64];
  std::vector<float> val_big(k > 64 ? static_cast<std::size_t>(k) : 0);
  float* val = k > 64 ? val_big.data() : val_small;
  if (noise_ > 0.0) scores_.resize(static_cast<std::size_t>(E));
  if (epsilon_ > 0.0) perm_.resize(static_cast<std::size_t>(E));

  for (int t = 0; t < T; ++t) {
    const float* z = in.logits + static_cast<std::size_t>(t) * E;
    std::int32_t* ex = out.expert.data() + static_cast<std::size_t>(t) * k;
    float* off = out.offset.data() + static_cast<std::size_t>(t) * k;
    const bool explore = epsilon_ > 0.0 && rng.uniform() < epsilon_;
    if (noise_ > 0.0) {
      for (int e = 0; e < E; ++e)
        scores_[e] = z[e] + bias[e] + static_cast<float>(noise_ * rng.normal());
    }
    if (explore) {
      // k distinct experts uniformly: partial Fisher-Yates.
      std::iota(perm_.begin(), perm_.end(), 0);
      for (int j = 0; j < k; ++j) {
        const auto r = j + static_cast<int>(rng.below(static_cast<std::uint64_t>(E - j)));
        std::swap(perm_[j], perm_[r]);
        ex[j] = perm_[j];
      }
    } else if (noise_ > 0.0) {
      topk_row(scores_.data(), E, k, ex, val);
      if (tie_ == TieBreak::Random) shuffle_ties(E, k, [this](int e) { return scores_[e]; }, ex, val, rng);
    } else {
      topk_row(z, E, k, ex, val, bias);
      if (tie_ == TieBreak::Random) shuffle_ties(E, k, [z, bias](int e) { return z[e] + bias[e]; }, ex, val, rng);
    }
    if (weights_on_scores_) {
      for (int j = 0; j < k; ++j)
        if (ex[j] >= 0) off[j] = noise_ > 0.0 ? scores_[ex[j]] - z[ex[j]] : bias[ex[j]];
    }
    gather_slot_logits(z, ex, k, slots + static_cast<std::size_t>(t) * k);
  }
}

void RdesiPolicy::do_route(const RouteInput& in, Rng& rng, Assignment& out) {
  const int T = in.tokens, E = experts(), k = this->k();
  out.reset(T, E, k);
  const auto b = score_bias();
  bias_.assign(b.begin(), b.end());
  for (int e = 0; e < E; ++e)
    if (!std::isfinite(bias_[e]))
      fail("selection-score bias of expert " + std::to_string(e) + " (beta*R - gamma*L + UCB bonus) = " +
           std::to_string(b[e]) + " is not a finite float; reduce beta, gamma or ucb_c");
  const float* bias = bias_.data();

  float* slots = tail_.slot_logits(T, k);
  if (noise_ > 0.0 || epsilon_ > 0.0) {
    route_rows(in, rng, out, slots);
  } else {
    // Blocks of 16 rows through the row-parallel kernel (z + bias), which also
    // checks every logit (checks_logits()); offsets, ties and slot logits while
    // the block is in L1.
    std::vector<float> vals(static_cast<std::size_t>(16) * k);
    bool finite = true;
    for (int t0 = 0; t0 < T; t0 += 16) {
      const int n = T - t0 < 16 ? T - t0 : 16;
      const std::size_t row0 = static_cast<std::size_t>(t0) * E, slot0 = static_cast<std::size_t>(t0) * k;
      finite &= topk_rows(in.logits + row0, n, E, k, out.expert.data() + slot0, vals.data(), bias);
      for (int r = 0; r < n; ++r) {
        const float* z = in.logits + row0 + static_cast<std::size_t>(r) * E;
        std::int32_t* ex = out.expert.data() + slot0 + static_cast<std::size_t>(r) * k;
        if (tie_ == TieBreak::Random)
          shuffle_ties(E, k, [z, bias](int e) { return z[e] + bias[e]; }, ex, vals.data() + r * k, rng);
        if (weights_on_scores_)
          for (int j = 0; j < k; ++j)
            if (ex[j] >= 0) out.offset[slot0 + static_cast<std::size_t>(r) * k + j] = bias[ex[j]];
        gather_slot_logits(z, ex, k, slots + slot0 + static_cast<std::size_t>(r) * k);
      }
    }
    if (!finite) check_finite(in.logits, T, E, name().c_str());
  }
  tail_.finish(in.logits, cap_, weight_spec(), out);
  // The requests before capacity, as the tail counted them (an unselectable slot
  // is refused there, so a refused batch leaves the demand as it was).
  const auto& req = tail_.requested_counts();
  for (int e = 0; e < E; ++e) demand_[static_cast<std::size_t>(e)] = static_cast<double>(req[static_cast<std::size_t>(e)]);
  last_tokens_ = T;
  last_capacity_ = out.capacity;
}

void RdesiPolicy::do_observe(const Assignment& a, const float* perf) {
  const int E = experts();
  // One spare entry, E, takes the dropped slots: no branch on drops, which are
  // unpredictable, and each expert's sum still runs in slot order.
  std::vector<double> sum(static_cast<std::size_t>(E) + 1, 0.0), cnt(static_cast<std::size_t>(E) + 1, 0.0);
  if (perf) {
    const std::int32_t* ex = a.expert.data();
    double* s = sum.data();
    double* c = cnt.data();
    const auto spare = static_cast<std::uint32_t>(E);
    for (std::size_t i = 0; i < a.expert.size(); ++i) {
      const auto e = static_cast<std::uint32_t>(ex[i]);
      const std::uint32_t keep = 0u - static_cast<std::uint32_t>(ex[i] >= 0);
      const std::uint32_t at = (e & keep) | (spare & ~keep);
      s[at] += perf[i];
      c[at] += 1.0;
    }
  } else {
    for (int e = 0; e < E; ++e) cnt[e] = static_cast<double>(a.counts[e]);
  }
  // Capacity in force for the batch; when dropless, the fair share T*k/E.
  double capacity = static_cast<double>(last_capacity_);
  if (capacity <= 0.0) capacity = static_cast<double>(last_tokens_) * k() / E;
  double slots = 0.0;
  for (int e = 0; e < E; ++e) {
    const bool served = cnt[e] > 0.0;
    if (decay_on_ == Decay::AllBeforeEma) R_[e] *= decay_rate_;
    if (perf && (served || idle_perf_zero_)) {
      const double p = served ? sum[e] / cnt[e] : 0.0;
      R_[e] = alpha_ * p + (1.0 - alpha_) * R_[e];
    }
    if (decay_on_ == Decay::AllAfterEma || (decay_on_ == Decay::Idle && !served)) R_[e] *= decay_rate_;
    const double d = load_by_capacity_ ? (capacity > 0.0 ? demand_[e] / capacity : 0.0) : demand_[e];
    L_[e] = load_alpha_ * d + (1.0 - load_alpha_) * L_[e];
    const double n = count_routed_ ? demand_[e] : static_cast<double>(a.counts[e]);
    N_i_[e] += n;
    slots += n;
  }
  N_ += slots;
}

void RdesiPolicy::save_state(StateWriter& w) const {
  w.put("reputation", R_);
  w.put("load", L_);
  w.put("counts", N_i_);
  w.put("total", N_);
  w.put("demand", demand_);
  w.put("last_capacity", static_cast<std::int64_t>(last_capacity_));
  w.put("last_tokens", static_cast<std::int64_t>(last_tokens_));
}

void RdesiPolicy::load_state(StateReader& r) {
  const auto E = static_cast<std::size_t>(experts());
  // Read everything before assigning: a failed load leaves the policy untouched.
  auto R = r.get_vec("reputation", E);
  auto L = r.get_vec("load", E);
  auto Ni = r.get_vec("counts", E);
  const double N = r.get_real("total");
  auto dem = r.get_vec("demand", E);
  const auto cap = r.get_int("last_capacity");
  const auto tok = r.get_int("last_tokens");
  R_ = std::move(R), L_ = std::move(L), N_i_ = std::move(Ni), N_ = N, demand_ = std::move(dem);
  last_capacity_ = cap;
  last_tokens_ = static_cast<int>(tok);
}

PolicyInfo rdesi_info() {
  PolicyInfo info{"rdesi", "RD-ESI: gate logit + beta*reputation - gamma*load + UCB bonus, top-k on the sum",
                  rdesi_knobs(), [](int E, int k, const Knobs& kn) { return std::make_unique<RdesiPolicy>(E, k, kn); }};
  info.presets = rdesi_presets();
  return info;
}

}  // namespace moesim
