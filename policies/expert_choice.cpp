#include "policies/expert_choice.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <utility>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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

// Per token: the row max and log of the softmax denominator (both 0 for the
// sigmoid rule), reading every logit once; that pass also checks finiteness.
void ExpertChoicePolicy::row_constants(const float* logits, int T) {
  const int E = experts();
  shift_.resize(2 * static_cast<std::size_t>(T));
  const bool softmax = spec_.rule == WeightRule::SoftmaxGather;
  bool finite = true;
  for (int t = 0; t < T; ++t) {
    const float* z = logits + static_cast<std::size_t>(t) * E;
    finite &= all_finite(z, E);
    double m = 0.0, log_sum = 0.0;
    if (softmax && finite) {
      const float mf = row_max(z, E);
      m = mf;
      log_sum = std::log(row_sum_exp_padded(z, E, mf));
    }
    shift_[2 * static_cast<std::size_t>(t)] = m;
    shift_[2 * static_cast<std::size_t>(t) + 1] = log_sum;
  }
  if (!finite) check_finite(logits, T, E, name().c_str());
}

// (z - m) - log S, never z - (m + log S): at |m| near FLT_MAX the log S would
// round away and three tied maxima would each score 1.
inline double ExpertChoicePolicy::key(const float* logits, int t, int e) const {
  const auto i = static_cast<std::size_t>(t);
  return (static_cast<double>(logits[i * static_cast<std::size_t>(experts()) + static_cast<std::size_t>(e)]) -
          shift_[2 * i]) - shift_[2 * i + 1];
}

// Per expert, a bracket [lo, hi] around its C-th best key from every stride-th
// token: the sample ranks C*S/T -+ a margin of 3 standard deviations of a
// binomial count (plus 2), so the true C-th key falls inside but for about one
// expert in a thousand (resolve() then orders its whole column); a sample of
// every token brackets it exactly.
void ExpertChoicePolicy::bracket(const float* logits, int T, std::int64_t C) {
  const int E = experts();
  const int stride = std::max(1, T / 1024);
  const int S = (T + stride - 1) / stride;
  sample_.resize(static_cast<std::size_t>(E) * static_cast<std::size_t>(S));
  for (int i = 0; i < S; ++i)
    for (int e = 0; e < E; ++e)
      sample_[static_cast<std::size_t>(e) * S + static_cast<std::size_t>(i)] = key(logits, i * stride, e);
  hi_.resize(static_cast<std::size_t>(E));
  lo_.resize(static_cast<std::size_t>(E));
  std::int64_t r_hi = C - 1, r_lo = C - 1;  // ranks, 0 = best
  if (stride > 1) {
    const std::int64_t rc = C * S / T;
    const auto margin = static_cast<std::int64_t>(std::ceil(3.0 * std::sqrt(static_cast<double>(rc) + 1.0))) + 2;
    r_hi = rc - margin;
    r_lo = rc + margin;
  }
  constexpr double kInf = std::numeric_limits<double>::infinity();
  for (int e = 0; e < E; ++e) {
    double* col = sample_.data() + static_cast<std::size_t>(e) * S;
    double* end = col + S;
    hi_[e] = kInf;
    lo_[e] = -kInf;
    double* top = end;  // [col, top) holds the sample's best r_lo + 1
    if (r_lo < S) {
      std::nth_element(col, col + r_lo, end, std::greater<double>());
      lo_[e] = col[r_lo];
      top = col + r_lo + 1;
    }
    if (r_hi >= 0) {
      std::nth_element(col, col + r_hi, top, std::greater<double>());
      hi_[e] = col[r_hi];
    }
  }
}

// One pass over the keys: above hi, the expert takes the token (a bit in
// chosen_); inside [lo, hi], the token is a candidate; below lo, out.
void ExpertChoicePolicy::classify(const float* logits, int T) {
  const int E = experts();
  const auto nE = static_cast<std::size_t>(E);
  chosen_.assign(static_cast<std::size_t>(T) * words_, 0);
  above_.assign(nE, 0);
  cand_.resize(nE);
  for (auto& c : cand_) c.clear();
  for (int t = 0; t < T; ++t) {
    const float* z = logits + static_cast<std::size_t>(t) * nE;
    const double m = shift_[2 * static_cast<std::size_t>(t)], ls = shift_[2 * static_cast<std::size_t>(t) + 1];
    std::uint64_t* bits = chosen_.data() + static_cast<std::size_t>(t) * words_;
    int e = 0;
#if defined(__AVX512F__)
    const __m512d vm = _mm512_set1_pd(m), vls = _mm512_set1_pd(ls);
    const __m512i one = _mm512_set1_epi64(1);
    for (; e + 8 <= E; e += 8) {
      const __m512d k = _mm512_sub_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(z + e)), vm), vls);
      const __mmask8 in = _mm512_cmp_pd_mask(k, _mm512_loadu_pd(hi_.data() + e), _CMP_GT_OQ);
      unsigned near = _mm512_cmp_pd_mask(k, _mm512_loadu_pd(lo_.data() + e), _CMP_GE_OQ) & ~in & 0xffu;
      bits[e / 64] |= static_cast<std::uint64_t>(in) << (e % 64);
      __m512i* ab = reinterpret_cast<__m512i*>(above_.data() + e);
      _mm512_storeu_si512(ab, _mm512_mask_add_epi64(_mm512_loadu_si512(ab), in, _mm512_loadu_si512(ab), one));
      if (near) {
        alignas(64) double kk[8];
        _mm512_store_pd(kk, k);
        for (; near; near &= near - 1) {
          const int j = __builtin_ctz(near);
          cand_[static_cast<std::size_t>(e + j)].emplace_back(kk[j], t);
        }
      }
    }
#endif
    for (; e < E; ++e) {
      const double k = (static_cast<double>(z[e]) - m) - ls;
      if (k > hi_[e]) {
        bits[e / 64] |= std::uint64_t{1} << (e % 64);
        ++above_[e];
      } else if (k >= lo_[e]) {
        cand_[static_cast<std::size_t>(e)].emplace_back(k, t);
      }
    }
  }
}

// Each expert's C - above best candidates (higher key, then lower token). A
// bracket that missed (more than C above it, or too few inside) is redone over
// the expert's whole column.
void ExpertChoicePolicy::resolve(const float* logits, int T, std::int64_t C) {
  const int E = experts();
  std::vector<std::pair<double, std::int32_t>> pool;
  auto best_first = [](const std::pair<double, std::int32_t>& a, const std::pair<double, std::int32_t>& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  for (int e = 0; e < E; ++e) {
    const std::int64_t need = C - above_[e];
    const auto& cand = cand_[static_cast<std::size_t>(e)];
    const std::uint64_t bit = std::uint64_t{1} << (e % 64);
    const std::size_t w = static_cast<std::size_t>(e / 64);
    const bool missed = need < 0 || need > static_cast<std::int64_t>(cand.size());
    pool.clear();
    if (missed) {
      for (int t = 0; t < T; ++t) {
        pool.emplace_back(key(logits, t, e), t);
        chosen_[static_cast<std::size_t>(t) * words_ + w] &= ~bit;
      }
    } else {
      pool.assign(cand.begin(), cand.end());
    }
    const std::int64_t take = missed ? C : need;
    if (take <= 0) continue;
    std::nth_element(pool.begin(), pool.begin() + (take - 1), pool.end(), best_first);
    for (std::int64_t i = 0; i < take; ++i)
      chosen_[static_cast<std::size_t>(pool[static_cast<std::size_t>(i)].second) * words_ + w] |= bit;
  }
}

// Slots from the bits (experts in index order), the width the widest token
// needs, and the weights by the declared rule straight from the keys: exp(log p)
// is the softmax probability, sigmoid(z) for the sigmoid rule; renormalised over
// the token's chosen experts when asked.
void ExpertChoicePolicy::emit(const float* logits, int T, Assignment& out) {
  const int E = experts();
  int width = 1;
  for (int t = 0; t < T; ++t) {
    int n = 0;
    for (int w = 0; w < words_; ++w) n += std::popcount(chosen_[static_cast<std::size_t>(t) * words_ + w]);
    width = std::max(width, n);
  }
  out.reset(T, E, width);
  const bool softmax = spec_.rule == WeightRule::SoftmaxGather;
  for (int t = 0; t < T; ++t) {
    std::int32_t* ex = out.expert.data() + static_cast<std::size_t>(t) * width;
    float* wt = out.weight.data() + static_cast<std::size_t>(t) * width;
    double sum = 0.0;
    int n = 0;
    for (int wd = 0; wd < words_; ++wd)
      for (std::uint64_t b = chosen_[static_cast<std::size_t>(t) * words_ + wd]; b; b &= b - 1) {
        const int e = wd * 64 + std::countr_zero(b);
        const double x = key(logits, t, e);
        const double v = softmax ? std::exp(x) : 1.0 / (1.0 + std::exp(-x));
        ex[n] = e;
        wt[n++] = static_cast<float>(v);
        sum += v;
      }
    if (spec_.renormalize && sum > 0.0)
      for (int j = 0; j < n; ++j) {
        const double x = key(logits, t, ex[j]);
        wt[j] = static_cast<float>((softmax ? std::exp(x) : 1.0 / (1.0 + std::exp(-x))) / sum);
      }
    out.dropped_tokens += n == 0;
  }
}

void ExpertChoicePolicy::do_route(const RouteInput& in, Rng&, Assignment& out) {
  const int T = in.tokens, E = experts();
  CapacityConfig cfg;
  cfg.factor = factor_;
  cfg.min_capacity = min_capacity_;
  // An expert cannot pick more tokens than the batch holds.
  const std::int64_t C = std::min<std::int64_t>(expert_capacity(cfg, T, k(), E), T);
  words_ = (E + 63) / 64;
  if (T > 0) {
    row_constants(in.logits, T);
    if (C >= T) {
      chosen_.assign(static_cast<std::size_t>(T) * words_, 0);  // every expert takes the whole batch
      for (int t = 0; t < T; ++t)
        for (int e = 0; e < E; ++e) chosen_[static_cast<std::size_t>(t) * words_ + e / 64] |= std::uint64_t{1} << (e % 64);
    } else {
      bracket(in.logits, T, C);
      classify(in.logits, T);
      resolve(in.logits, T, C);
    }
    emit(in.logits, T, out);
  } else {
    out.reset(T, E, 1);
  }
  out.capacity = C;
  out.routed = static_cast<std::int64_t>(E) * C;
  for (int e = 0; e < E; ++e) out.counts[e] = T > 0 ? C : 0;
  out.requested = out.expert;  // nothing is refused after selection
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
