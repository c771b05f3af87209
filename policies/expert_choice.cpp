#include "policies/expert_choice.hpp"

#include <algorithm>
#include <cmath>

#include "policies/capacity.hpp"
#include "policies/fast_math.hpp"
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

// Selection keys in double, row-major like the logits (every pass below reads
// them in order): a float softmax would tie tokens whose logits differ.
// Softmax: the log-probability, from an 8-lane double exp (relative error
// < 1e-15), which orders tokens as the probability does; sigmoid: the logit
// itself, its monotone preimage.
void ExpertChoicePolicy::score_keys(const float* logits, int T) {
  const int E = experts();
  score_.resize(static_cast<std::size_t>(T) * static_cast<std::size_t>(E));
  const bool softmax = spec_.rule == WeightRule::SoftmaxGather;
  for (int t = 0; t < T; ++t) {
    const float* z = logits + static_cast<std::size_t>(t) * E;
    double* key = score_.data() + static_cast<std::size_t>(t) * E;
    // (z - m) - log(sum), never z - (m + log(sum)): at |m| near FLT_MAX the
    // log(sum) would round away and three tied maxima would each score 1.
    double m = 0.0, log_sum = 0.0;
    if (softmax) {
      m = row_max(z, E);
      f64x8 acc{};
      int e = 0;
      for (; e + 8 <= E; e += 8) {
        f64x8 v;
        for (int l = 0; l < 8; ++l) v[l] = static_cast<double>(z[e + l]) - m;
        acc += exp_neg_d8(v);
      }
      double sum = 0.0;
      for (int l = 0; l < 8; ++l) sum += acc[l];
      for (; e < E; ++e) sum += std::exp(static_cast<double>(z[e]) - m);
      log_sum = std::log(sum);
    }
    for (int e = 0; e < E; ++e) key[e] = (static_cast<double>(z[e]) - m) - log_sum;
  }
}

// Marks every expert's C best tokens (higher key, then lower token index) in
// chosen_ without sorting: per expert, a 1024-bin histogram of its keys between
// their min and max finds the bin holding the C-th best; every token above it
// is taken and only that bin's few tokens are ordered. The bin map is monotone
// in the key, so this is exactly the top-C set. Two row-major passes.
void ExpertChoicePolicy::choose(int T, std::int64_t C) {
  const int E = experts();
  const auto nE = static_cast<std::size_t>(E);
  constexpr int kBins = 1024;
  lo_.assign(score_.begin(), score_.begin() + E);
  scale_.assign(score_.begin(), score_.begin() + E);  // the max, until turned into the scale
  for (int t = 1; t < T; ++t) {
    const double* key = score_.data() + static_cast<std::size_t>(t) * nE;
    for (int e = 0; e < E; ++e) {
      lo_[e] = key[e] < lo_[e] ? key[e] : lo_[e];
      scale_[e] = key[e] > scale_[e] ? key[e] : scale_[e];
    }
  }
  // All tied, or keys a few subnormals apart: the scale 0 puts the whole column
  // in bin 0 and the candidate order decides it.
  for (int e = 0; e < E; ++e) {
    const double sc = (kBins - 0.5) / (scale_[e] - lo_[e]);
    scale_[e] = sc < 1e300 ? sc : 0.0;
  }
  hist_.assign(nE * kBins, 0);
  bin_.resize(static_cast<std::size_t>(T) * nE);
  for (int t = 0; t < T; ++t) {
    const std::size_t r = static_cast<std::size_t>(t) * nE;
    for (int e = 0; e < E; ++e) {
      const auto b = static_cast<std::uint16_t>((score_[r + e] - lo_[e]) * scale_[e]);
      bin_[r + e] = b;
      ++hist_[static_cast<std::size_t>(e) * kBins + b];
    }
  }
  top_bin_.resize(nE);
  need_.resize(nE);
  cand_.resize(nE);
  for (int e = 0; e < E; ++e) {
    const std::int32_t* h = hist_.data() + static_cast<std::size_t>(e) * kBins;
    int tb = kBins - 1;
    std::int64_t above = 0;
    while (above + h[tb] < C) above += h[tb--];
    top_bin_[e] = tb;
    need_[e] = C - above;
    cand_[e].clear();
  }
  for (int t = 0; t < T; ++t) {
    const std::size_t r = static_cast<std::size_t>(t) * nE;
    for (int e = 0; e < E; ++e) {
      const int b = bin_[r + e], tb = top_bin_[e];
      chosen_[r + e] = b > tb;
      if (b == tb) cand_[e].push_back(t);
    }
  }
  for (int e = 0; e < E; ++e) {
    auto& c = cand_[e];
    const double* key = score_.data() + e;
    std::nth_element(c.begin(), c.begin() + (need_[e] - 1), c.end(), [key, nE](std::int32_t a, std::int32_t b) {
      const double ka = key[static_cast<std::size_t>(a) * nE], kb = key[static_cast<std::size_t>(b) * nE];
      return ka > kb || (ka == kb && a < b);
    });
    for (std::int64_t i = 0; i < need_[e]; ++i) chosen_[static_cast<std::size_t>(c[static_cast<std::size_t>(i)]) * nE + e] = 1;
  }
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

  chosen_.resize(static_cast<std::size_t>(T) * static_cast<std::size_t>(E));
  for (int e = 0; e < E; ++e) out.counts[e] = C;
  if (C >= T) {
    // Every expert takes the whole batch.
    std::fill(chosen_.begin(), chosen_.end(), 1);
    collect(T, out);
    out.requested = out.expert;
    compute_weights(spec_, in.logits, out);
    return;
  }
  score_keys(in.logits, T);
  choose(T, C);
  collect(T, out);
  out.requested = out.expert;  // nothing is refused after selection
  weights_from_keys(T, out);
}

// Each token's chosen experts, in expert order, then empty slots.
void ExpertChoicePolicy::collect(int T, Assignment& out) {
  const int E = experts();
  for (int t = 0; t < T; ++t) {
    const char* ch = chosen_.data() + static_cast<std::size_t>(t) * E;
    std::int32_t* ex = out.expert.data() + static_cast<std::size_t>(t) * E;
    int n = 0;
    for (int e = 0; e < E; ++e)
      if (ch[e]) ex[n++] = e;
    out.dropped_tokens += n == 0;
  }
}

// The weights by the declared rule, straight from the selection keys: exp(log p)
// is the softmax probability (to 1e-15), sigmoid(z) for the sigmoid rule;
// renormalised over the token's chosen experts when asked. No second pass over
// the T x E logits.
void ExpertChoicePolicy::weights_from_keys(int T, Assignment& out) {
  const int E = experts();
  const bool softmax = spec_.rule == WeightRule::SoftmaxGather;
  std::vector<double> w(static_cast<std::size_t>(E));
  for (int t = 0; t < T; ++t) {
    const double* key = score_.data() + static_cast<std::size_t>(t) * E;
    const std::int32_t* ex = out.expert.data() + static_cast<std::size_t>(t) * E;
    float* wt = out.weight.data() + static_cast<std::size_t>(t) * E;
    double sum = 0.0;
    int n = 0;
    for (; n < E && ex[n] >= 0; ++n) {
      const double x = key[ex[n]];
      w[static_cast<std::size_t>(n)] = softmax ? std::exp(x) : 1.0 / (1.0 + std::exp(-x));
      sum += w[static_cast<std::size_t>(n)];
    }
    const double inv = spec_.renormalize && sum > 0.0 ? 1.0 / sum : 1.0;
    for (int j = 0; j < n; ++j) wt[j] = static_cast<float>(w[static_cast<std::size_t>(j)] * inv);
  }
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
