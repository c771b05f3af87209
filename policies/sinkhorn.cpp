#include "policies/sinkhorn.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "policies/fast_math.hpp"
#include "policies/topk.hpp"

namespace moesim {

SinkhornPolicy::SinkhornPolicy(int experts, int k, const Knobs& kn)
    : Policy("sinkhorn", experts, k, kn),
      spec_(score_weight_spec(kn)),
      cap_(capacity_from(kn, "sinkhorn")),
      iterations_(kn.integer("iterations")),
      tol_(kn.real("tol")),
      eval_topk_(kn.choice("eval_mode") == "topk"),
      tie_(tie_break_from(kn)) {
  spec_ = with_drop_weights(spec_, cap_);
}

// Balances P[t][e] = exp(z[t][e]) * u[t] * v[e] to rows summing to 1 and columns
// to T/E; leaves log v in col_ (all that selection needs).
void SinkhornPolicy::balance(const float* logits, int T) {
  const int E = experts();
  const auto nT = static_cast<std::size_t>(T), nE = static_cast<std::size_t>(E);
  const double col_target = static_cast<double>(T) / E;
  col_.assign(nE, 0.0);
  colsum_.resize(nE);
  double spread = 0.0;
  for (int t = 0; t < T; ++t)
    spread = std::max(spread, static_cast<double>(row_max(logits + t * nE, E)) - row_min(logits + t * nE, E));
  if (spread <= kLinearSpread) {
    // Every entry of exp(z - rowmax) is >= e^-100, so plain scaling vectors stay
    // far inside double range and each round costs multiplies, not exp() calls.
    kexp_.resize(nT * nE);
    for (int t = 0; t < T; ++t) {
      const float* z = logits + t * nE;
      const double m = row_max(z, E);
      double* k = kexp_.data() + t * nE;
      int e = 0;
      for (; e + 8 <= E; e += 8) {  // exp in 8 double lanes, relative error < 1e-15
        f64x8 v;
        for (int l = 0; l < 8; ++l) v[l] = z[e + l] - m;
        const f64x8 x = exp_neg_d8(v);
        std::memcpy(k + e, &x, sizeof x);
      }
      for (; e < E; ++e) k[e] = std::exp(z[e] - m);
    }
    row_.assign(nT, 1.0);
    colscale_.assign(nE, 1.0);
    for (long it = 0; it < iterations_; ++it) {
      std::fill(colsum_.begin(), colsum_.end(), 0.0);
      for (int t = 0; t < T; ++t)
        for (int e = 0; e < E; ++e) colsum_[e] += row_[t] * kexp_[t * nE + e];
      // Rows are exact after every completed round, so the column sums measure
      // how far from balanced we are (relative error, worst expert).
      if (it > 0) {
        double dev = 0.0;
        for (int e = 0; e < E; ++e) dev = std::max(dev, std::fabs(colscale_[e] * colsum_[e] / col_target - 1.0));
        if (dev < tol_) break;
      }
      for (int e = 0; e < E; ++e) colscale_[e] = col_target / colsum_[e];
      for (int t = 0; t < T; ++t) row_[t] = 1.0 / dot_d(kexp_.data() + t * nE, colscale_.data(), E);
    }
    for (int e = 0; e < E; ++e) col_[e] = std::log(colscale_[e]);
    return;
  }
  // Log domain for wide logits: an expert whose every logit sits 800 below the
  // row maxima must stay finite and balanceable, where exp() would underflow its
  // whole column to 0.
  const double kNegInf = -std::numeric_limits<double>::infinity();
  const double log_col_target = std::log(col_target);
  // Start from exp(z - rowmax) like the linear path: the first column step
  // depends on the starting row scaling.
  row_.resize(nT);
  for (int t = 0; t < T; ++t) row_[t] = -static_cast<double>(*std::max_element(logits + t * nE, logits + (t + 1) * nE));
  colmax_.resize(nE);
  for (long it = 0; it < iterations_; ++it) {
    std::fill(colmax_.begin(), colmax_.end(), kNegInf);
    std::fill(colsum_.begin(), colsum_.end(), 0.0);
    for (int t = 0; t < T; ++t) {
      const float* z = logits + t * nE;
      for (int e = 0; e < E; ++e) colmax_[e] = std::max(colmax_[e], z[e] + row_[t]);
    }
    for (int t = 0; t < T; ++t) {
      const float* z = logits + t * nE;
      for (int e = 0; e < E; ++e) colsum_[e] += std::exp(z[e] + row_[t] - colmax_[e]);
    }
    if (it > 0) {
      double dev = 0.0;
      for (int e = 0; e < E; ++e)
        dev = std::max(dev, std::fabs(std::expm1(col_[e] + colmax_[e] + std::log(colsum_[e]) - log_col_target)));
      if (dev < tol_) break;
    }
    for (int e = 0; e < E; ++e) col_[e] = log_col_target - (colmax_[e] + std::log(colsum_[e]));
    for (int t = 0; t < T; ++t) {
      const float* z = logits + t * nE;
      double m = kNegInf;
      for (int e = 0; e < E; ++e) m = std::max(m, z[e] + col_[e]);
      double s = 0.0;
      for (int e = 0; e < E; ++e) s += std::exp(z[e] + col_[e] - m);
      row_[t] = -(m + std::log(s));
    }
  }
}

void SinkhornPolicy::do_route(const RouteInput& in, Rng& rng, Assignment& out) {
  const int T = in.tokens, E = experts(), k = this->k();
  out.reset(T, E, k);
  if (T > 0) {
    if (eval_topk_ && !in.training)
      col_.assign(static_cast<std::size_t>(E), 0.0);  // plain top-k of the logits
    else
      balance(in.logits, T);
    // Top-k of the balanced row; its row scaling is a per-token constant, so the
    // column scaling alone decides. Double precision, ties to the lower expert.
    std::vector<double> v(static_cast<std::size_t>(k));
    float* slots = tail_.slot_logits(T, k);
    for (int t = 0; t < T; ++t) {
      const float* z = in.logits + static_cast<std::size_t>(t) * E;
      std::int32_t* idx = out.expert.data() + static_cast<std::size_t>(t) * k;
      int filled = 0;
      for (int e = 0; e < E; ++e) {
        const double x = z[e] + col_[e];
        if (filled == k && !(x > v[k - 1])) continue;
        int p = filled < k ? filled++ : k - 1;
        while (p > 0 && x > v[p - 1]) {
          v[p] = v[p - 1];
          idx[p] = idx[p - 1];
          --p;
        }
        v[p] = x;
        idx[p] = e;
      }
      if (tie_ == TieBreak::Random)
        shuffle_ties(E, k, [this, z](int e) { return z[e] + col_[static_cast<std::size_t>(e)]; }, idx, v.data(), rng);
      gather_slot_logits(z, idx, k, slots + static_cast<std::size_t>(t) * k);
    }
  }
  tail_.finish(in.logits, cap_, spec_, out);
}

static std::vector<KnobPreset> sinkhorn_presets() {
  return {
      {"moesim", "balances at evaluation too", [](int) { return KnobMap{}; }},
      {"megatron",
       "Megatron-Core sinkhorn_load_balancing: weights sigmoid (k = 1) or the full softmax (k > 1), not "
       "renormalised; plain top-k at evaluation; dropless",
       [](int k) {
         return KnobMap{{"score_fn", k == 1 ? "sigmoid" : "softmax"},
                        {"renormalize", "false"},
                        {"eval_mode", "topk"},
                        {"iterations", "1000"},
                        {"dropless", "true"}};
       }},
  };
}

PolicyInfo sinkhorn_info() {
  std::vector<KnobSpec> knobs = {preset_knob(sinkhorn_presets())};
  for (auto& s : score_knobs()) knobs.push_back(s);
  knobs.push_back(int_knob("iterations", 20,
                           "most Sinkhorn rounds (column then row normalisation); 0 = plain top-k", 0, 1L << 30));
  knobs.push_back(real_knob("tol", 1e-4,
                            "stop early once every column sum is within this relative error of T/E; 0 = never",
                            0.0));
  knobs.push_back(choice_knob("eval_mode", "sinkhorn", {"sinkhorn", "topk"},
                              "routing at evaluation: balanced as in training, or plain top-k of the logits "
                              "(Megatron-Core)"));
  knobs.push_back(tie_break_knob());
  for (auto& c : capacity_knobs()) knobs.push_back(c);
  PolicyInfo info{"sinkhorn", "top-k on Sinkhorn-balanced scores, weights from the raw logits (Megatron-Core sinkhorn)",
                  knobs, [](int E, int k, const Knobs& kn) { return std::make_unique<SinkhornPolicy>(E, k, kn); }};
  info.presets = sinkhorn_presets();
  return info;
}

}  // namespace moesim
