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
#include "policies/transpose_avx512.hpp"

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
  int t = 0;
  if (softmax && E % 16 == 0) {
    float m[16];
    double sum[16];
    for (; t + 16 <= T; t += 16) {
      const float* z = logits + static_cast<std::size_t>(t) * E;
      finite &= all_finite(z, 16 * E);
      if (!finite) break;
      row_max_sum_exp16(z, E, m, sum);
      for (int r = 0; r < 16; ++r) {
        shift_[2 * static_cast<std::size_t>(t + r)] = m[r];
        shift_[2 * static_cast<std::size_t>(t + r) + 1] = std::log(sum[r]);
      }
    }
  }
  for (; t < T; ++t) {
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
  const int done = sample_keys8(logits, stride, S);
  for (int i = done; i < S; ++i)
    for (int e = 0; e < E; ++e)
      sample_[static_cast<std::size_t>(e) * S + static_cast<std::size_t>(i)] = key(logits, i * stride, e);
  for (int i = 0; i < done; ++i)  // the experts past the last full 8
    for (int e = E - E % 8; e < E; ++e)
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
      const int n = best_keys(col, S, static_cast<int>(r_lo) + 1);
      end = col + n;
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

// The bracket's sample keys for samples [0, S - S % 8) and experts [0, E - E % 8),
// 8 x 8 at a time: each block of keys is computed along the rows (key()'s
// operations, lane by lane) and transposed in registers, so the column-major
// sample is written a vector per expert, where it was a scalar store per key.
// Returns the samples done (0 without AVX-512).
int ExpertChoicePolicy::sample_keys8(const float* logits, int stride, int S) {
#if defined(__AVX512F__)
  const int E = experts(), vecE = E - E % 8, vecS = S - S % 8;
  if (vecE == 0) return 0;
  const auto nE = static_cast<std::size_t>(E);
  for (int i0 = 0; i0 < vecS; i0 += 8) {
    __m512d m[8], ls[8];
    for (int r = 0; r < 8; ++r) {
      const auto t = static_cast<std::size_t>(i0 + r) * static_cast<std::size_t>(stride);
      m[r] = _mm512_set1_pd(shift_[2 * t]);
      ls[r] = _mm512_set1_pd(shift_[2 * t + 1]);
    }
    for (int e0 = 0; e0 < vecE; e0 += 8) {
      __m512d k[8];
      for (int r = 0; r < 8; ++r) {
        const float* z = logits + static_cast<std::size_t>(i0 + r) * static_cast<std::size_t>(stride) * nE + e0;
        k[r] = _mm512_sub_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(z)), m[r]), ls[r]);
      }
      simd::transpose8_pd(k);
      // k[j] now holds expert e0 + j for samples i0 .. i0 + 7.
      for (int j = 0; j < 8; ++j) _mm512_storeu_pd(sample_.data() + static_cast<std::size_t>(e0 + j) * S + i0, k[j]);
    }
  }
  return vecS;
#else
  (void)logits;
  (void)stride;
  (void)S;
  return 0;
#endif
}

// Moves to the front of col[0, S) a subset holding its `need` best keys (ties
// included) and returns its size. The need-th best of the 16-key groups' maxima
// is at most the column's need-th best key (those need groups hold need keys at
// or above it), so every key above that group maximum goes, and ordering the
// few that pass replaces ordering all S.
int ExpertChoicePolicy::best_keys(double* col, int S, int need) {
  const int G = S / 16;
  if (need > G) return S;  // fewer groups than keys wanted: no bound
  gmax_.resize(static_cast<std::size_t>(G));
  for (int g = 0; g < G; ++g) {
    double m = col[16 * g];
    for (int i = 1; i < 16; ++i) m = std::max(m, col[16 * g + i]);
    gmax_[static_cast<std::size_t>(g)] = m;
  }
  std::nth_element(gmax_.begin(), gmax_.begin() + (need - 1), gmax_.end(), std::greater<double>());
  const double tau = gmax_[static_cast<std::size_t>(need - 1)];
  int n = 0;
  for (int i = 0; i < S; ++i) {  // in place, branch-free: col[n] is never ahead of col[i]
    const double v = col[i];
    col[n] = v;
    n += v >= tau;
  }
  return n;
}

// One pass over the keys: above hi, the expert takes the token (a bit in
// chosen_); inside [lo, hi], the token is a candidate; below lo, out.
void ExpertChoicePolicy::classify(const float* logits, int T) {
  const int E = experts();
  const auto nE = static_cast<std::size_t>(E);
  chosen_.resize(static_cast<std::size_t>(T) * words_);  // classify_float writes every word
  above_.assign(nE, 0);
  cand_.resize(nE);
  for (auto& c : cand_) c.clear();
  stats_.prefiltered = prefilter_ && classify_float(logits, T);
  if (stats_.prefiltered) return;
  std::fill(chosen_.begin(), chosen_.end(), 0);
  const int vecE = classify_vector(logits, T);
  for (int t = 0; t < T; ++t) {
    const float* z = logits + static_cast<std::size_t>(t) * nE;
    const double m = shift_[2 * static_cast<std::size_t>(t)], ls = shift_[2 * static_cast<std::size_t>(t) + 1];
    std::uint64_t* bits = chosen_.data() + static_cast<std::size_t>(t) * words_;
    for (int e = vecE; e < E; ++e) {
      const double k = (static_cast<double>(z[e]) - m) - ls;
      if (k > hi_[e])
        bits[e / 64] |= std::uint64_t{1} << (e % 64);
      else if (k >= lo_[e])
        cand_[static_cast<std::size_t>(e)].emplace_back(k, t);
    }
  }
  // Counted from the bits: about one per token, where a counter update per
  // expert and token was a store-to-load chain in the pass above.
  for (std::size_t i = 0, n = chosen_.size(); i < n; ++i)
    for (std::uint64_t b = chosen_[i]; b; b &= b - 1)
      ++above_[(i % static_cast<std::size_t>(words_)) * 64 + static_cast<std::size_t>(std::countr_zero(b))];
}

// classify() for experts [0, E - E % 8), sixteen keys at a time (eight in a
// last half block); returns where the scalar remainder starts. The candidates'
// experts are packed into a flat buffer by a register compress, with their
// token beside them (no branch on whether any lane is a candidate: about a third
// of the groups of eight hold one, at random), and dealt to the experts' lists in
// token order, so every list is as the scalar pass builds it. Their keys are
// recomputed in the deal: one compress of 16 lanes of int32 per 16 keys, where
// the keys' and ids' compresses per 8 kept the shuffle port saturated.
int ExpertChoicePolicy::classify_vector(const float* logits, int T) {
#if defined(__AVX512F__)
  const int E = experts(), vecE = E - E % 8;
  if (vecE == 0) return 0;
  const auto nE = static_cast<std::size_t>(E);
  const std::size_t cap = 64 * nE + 16;  // flushed when a token might not fit; +16: a full-vector store's slack
  pe_.resize(cap);
  pt_.resize(cap);
  std::int32_t* const pe = pe_.data();
  std::int32_t* const pt = pt_.data();
  const double* const hi = hi_.data();
  const double* const lo = lo_.data();
  std::size_t n = 0;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  for (int t = 0; t < T; ++t) {
    if (n + nE + 16 > cap) {
      deal_recomputed(logits, n);
      n = 0;
    }
    const float* z = logits + static_cast<std::size_t>(t) * nE;
    const __m512d vm = _mm512_set1_pd(shift_[2 * static_cast<std::size_t>(t)]);
    const __m512d vls = _mm512_set1_pd(shift_[2 * static_cast<std::size_t>(t) + 1]);
    auto key8 = [&](int e) { return _mm512_sub_pd(_mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(z + e)), vm), vls); };
    std::uint64_t* bits = chosen_.data() + static_cast<std::size_t>(t) * words_;
    const __m512i tok = _mm512_set1_epi32(t);
    __m512i ids = lane;
    // A word's bits gather in a register: a store per block was a store-to-load
    // chain through the same word.
    std::uint64_t word = 0;
    for (int e = 0; e < vecE; e += 16) {
      const __m512d ka = key8(e);
      const __mmask8 in_a = _mm512_cmp_pd_mask(ka, _mm512_loadu_pd(hi + e), _CMP_GT_OQ);
      const __mmask8 near_a = _mm512_mask_cmp_pd_mask(static_cast<__mmask8>(~in_a), ka, _mm512_loadu_pd(lo + e), _CMP_GE_OQ);
      __mmask8 in_b = 0, near_b = 0;
      if (e + 16 <= vecE) {
        const __m512d kb = key8(e + 8);
        in_b = _mm512_cmp_pd_mask(kb, _mm512_loadu_pd(hi + e + 8), _CMP_GT_OQ);
        near_b = _mm512_mask_cmp_pd_mask(static_cast<__mmask8>(~in_b), kb, _mm512_loadu_pd(lo + e + 8), _CMP_GE_OQ);
      }
      const auto in = static_cast<unsigned>(in_a) | static_cast<unsigned>(in_b) << 8;
      const auto near = static_cast<__mmask16>(near_a | static_cast<unsigned>(near_b) << 8);
      word |= static_cast<std::uint64_t>(in) << (e % 64);
      if (e % 64 == 48 || e + 16 >= vecE) {
        bits[e / 64] = word;  // classify() zeroed the bits; its scalar tail ORs in after
        word = 0;
      }
      _mm512_storeu_si512(pe + n, _mm512_maskz_compress_epi32(near, ids));
      _mm512_storeu_si512(pt + n, tok);
      n += static_cast<std::size_t>(std::popcount(static_cast<unsigned>(near)));
      ids = _mm512_add_epi32(ids, _mm512_set1_epi32(16));
    }
  }
  deal_recomputed(logits, n);
  return vecE;
#else
  (void)logits;
  (void)T;
  return 0;
#endif
}

// The first n candidates of pe_ (experts) and pt_ (tokens), in their order, onto
// the experts' lists with their keys: key()'s operations, the vector pass's bits.
void ExpertChoicePolicy::deal_recomputed(const float* logits, std::size_t n) {
  const auto nE = static_cast<std::size_t>(experts());
  for (std::size_t i = 0; i < n; ++i) {
    const auto e = static_cast<std::size_t>(pe_[i]);
    const auto t = static_cast<std::size_t>(pt_[i]);
    const double k = (static_cast<double>(logits[t * nE + e]) - shift_[2 * t]) - shift_[2 * t + 1];
    cand_[e].emplace_back(k, static_cast<std::int32_t>(t));
  }
}

// classify() in 16-lane float, for every expert (the last block masked): with
// c_t = float(m_t + log S_t), a key is surely above hi[e] where z - c_t > hi_f[e],
// and surely below lo[e] where z - c_t < lo_f[e]; the bounds sit outside hi and
// lo by 2^-20 (|bound| + max_t |c_t| + 1). Why that suffices: the float
// difference and the double key K each stay within 2^-24 (|K| + max |c| + 1) of
// the exact z - m - log S, so |float - K| <= 2^-23 (|K| + max |c| + 1), and
// K + 2^-23 (|K| + ...) is increasing in K: K <= hi gives float <= hi_f, K >= lo
// gives float >= lo_f. The sure ones set their bits in the vector pass; the rest
// that are not surely below (the candidates, and the few near a bound) get the
// double key and the exact tests in the deal (deal_checked), in the order the
// double path deals them. One compare per 16 keys and no conversion to double:
// the double path's conversions, compares and compresses kept the shuffle port
// saturated. The sure ones are counted per expert in vector lanes as they go.
// Off (returns false) when some |c_t| exceeds 2^100, where the float difference
// could overflow.
bool ExpertChoicePolicy::classify_float(const float* logits, int T) {
#if defined(__AVX512F__)
  const int E = experts();
  double cmax = 0.0;
  for (int t = 0; t < T; ++t)
    cmax = std::max(cmax, std::fabs(shift_[2 * static_cast<std::size_t>(t)]) +
                              std::fabs(shift_[2 * static_cast<std::size_t>(t) + 1]));
  if (!(cmax <= 0x1p100)) return false;
  const auto nE = static_cast<std::size_t>(E);
  constexpr float kInf = std::numeric_limits<float>::infinity();
  lo_f_.resize(nE);
  hi_f_.resize(nE);
  for (std::size_t e = 0; e < nE; ++e) {
    const double lo = lo_[e], hi = hi_[e];
    const double x = lo - 0x1p-20 * (std::fabs(lo) + cmax + 1.0);
    const double y = hi + 0x1p-20 * (std::fabs(hi) + cmax + 1.0);
    // Past the float range the bound is the infinity (the conversion would be undefined).
    constexpr double kMax = std::numeric_limits<float>::max();
    float f = x >= -kMax ? static_cast<float>(x) : -kInf, g = y <= kMax ? static_cast<float>(y) : kInf;
    if (static_cast<double>(f) > x) f = std::nextafter(f, -kInf);
    if (static_cast<double>(g) < y) g = std::nextafter(g, kInf);
    lo_f_[e] = f;
    hi_f_[e] = g;
  }
  const std::size_t cap = 64 * nE + 16;  // dealt when a token might not fit; +16: a full-vector store's slack
  pe_.resize(cap);
  pt_.resize(cap);
  // Locals: stores through the vectors' pointers would otherwise reload them.
  std::int32_t* const pe = pe_.data();
  std::int32_t* const pt = pt_.data();
  const float* const lof = lo_f_.data();
  const float* const hif = hi_f_.data();
  const double* const shift = shift_.data();
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const int blocks = (E + 15) / 16;
  sure_count_.assign(static_cast<std::size_t>(blocks) * 16, 0);
  std::int32_t* const count = sure_count_.data();
  std::size_t n = 0;
  for (int t = 0; t < T; ++t) {
    if (n + nE + 16 > cap) {
      deal_checked(logits, n);
      n = 0;
    }
    const float* z = logits + static_cast<std::size_t>(t) * nE;
    const std::size_t i = 2 * static_cast<std::size_t>(t);
    const __m512 c = _mm512_set1_ps(static_cast<float>(shift[i] + shift[i + 1]));
    const __m512i tok = _mm512_set1_epi32(t);
    std::uint64_t* bits = chosen_.data() + static_cast<std::size_t>(t) * words_;
    __m512i ids = lane;
    std::uint64_t word = 0;  // a word's sure bits gather in a register, stored once
    for (int e = 0; e < E; e += 16) {
      const auto live = static_cast<__mmask16>(E - e >= 16 ? 0xffff : (1u << (E - e)) - 1);
      const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(live, z + e), c);
      const __mmask16 sure = _mm512_mask_cmp_ps_mask(live, d, _mm512_maskz_loadu_ps(live, hif + e), _CMP_GT_OQ);
      const __mmask16 keep = _mm512_mask_cmp_ps_mask(static_cast<__mmask16>(live & ~sure), d,
                                                     _mm512_maskz_loadu_ps(live, lof + e), _CMP_GE_OQ);
      word |= static_cast<std::uint64_t>(sure) << (e % 64);
      if (e % 64 == 48 || e + 16 >= E) {
        bits[e / 64] = word;
        word = 0;
      }
      const __m512i cnt = _mm512_loadu_si512(count + e);
      _mm512_storeu_si512(count + e, _mm512_mask_add_epi32(cnt, sure, cnt, _mm512_set1_epi32(1)));
      _mm512_storeu_si512(pe + n, _mm512_maskz_compress_epi32(keep, ids));
      _mm512_storeu_si512(pt + n, tok);
      n += static_cast<std::size_t>(std::popcount(static_cast<unsigned>(keep)));
      ids = _mm512_add_epi32(ids, _mm512_set1_epi32(16));
    }
  }
  deal_checked(logits, n);
  for (int e = 0; e < E; ++e) above_[static_cast<std::size_t>(e)] += count[e];
  return true;
#else
  (void)logits;
  (void)T;
  return false;
#endif
}

// The first n (expert, token) pairs of pe_ and pt_ that the float tests left
// open, by their double keys: above hi the expert takes the token (rare: only
// keys within the margin of hi come here), inside [lo, hi] a candidate.
void ExpertChoicePolicy::deal_checked(const float* logits, std::size_t n) {
  const auto nE = static_cast<std::size_t>(experts());
  const auto words = static_cast<std::size_t>(words_);
  for (std::size_t i = 0; i < n; ++i) {
    const auto e = static_cast<std::size_t>(pe_[i]);
    const auto t = static_cast<std::size_t>(pt_[i]);
    const double k = (static_cast<double>(logits[t * nE + e]) - shift_[2 * t]) - shift_[2 * t + 1];
    if (k > hi_[e]) {
      chosen_[t * words + e / 64] |= std::uint64_t{1} << (e % 64);
      ++above_[e];
    } else if (k >= lo_[e])
      cand_[e].emplace_back(k, static_cast<std::int32_t>(t));
  }
}

// Each expert's C - above best candidates (higher key, then lower token). A
// bracket that missed (more than C above it, or too few inside) is redone over
// the expert's whole column.
void ExpertChoicePolicy::resolve(const float* logits, int T, std::int64_t C) {
  const int E = experts();
  for (int e = 0; e < E; ++e) {
    const std::int64_t need = C - above_[e];
    auto& cand = cand_[static_cast<std::size_t>(e)];
    const std::uint64_t bit = std::uint64_t{1} << (e % 64);
    const std::size_t w = static_cast<std::size_t>(e / 64);
    const bool missed = need < 0 || need > static_cast<std::int64_t>(cand.size());
    stats_.candidates += static_cast<std::int64_t>(cand.size());
    stats_.fallbacks += missed;
    if (missed) {
      cand.clear();
      for (int t = 0; t < T; ++t) {
        cand.emplace_back(key(logits, t, e), t);
        chosen_[static_cast<std::size_t>(t) * words_ + w] &= ~bit;
      }
    }
    const std::int64_t take = missed ? C : need;
    if (take <= 0) continue;
    best_keyed(cand, static_cast<std::size_t>(take), picked_);
    for (const std::int32_t t : picked_) chosen_[static_cast<std::size_t>(t) * words_ + w] |= bit;
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
    int n = 0;
    for (int wd = 0; wd < words_; ++wd)
      for (std::uint64_t b = chosen_[static_cast<std::size_t>(t) * words_ + wd]; b; b &= b - 1) {
        const int e = wd * 64 + std::countr_zero(b);
        if (!spec_.renormalize) {
          const double x = key(logits, t, e);
          wt[n] = static_cast<float>(softmax ? std::exp(x) : 1.0 / (1.0 + std::exp(-x)));
        }
        ex[n++] = e;
      }
    out.dropped_tokens += n == 0;
  }
  // Renormalised over the chosen experts, the weights are the library's rule,
  // which stays exact where every chosen probability underflows (extreme logits).
  if (spec_.renormalize) compute_weights(spec_, logits, out);
}

void ExpertChoicePolicy::do_route(const RouteInput& in, Rng&, Assignment& out) {
  const int T = in.tokens, E = experts();
  CapacityConfig cfg;
  cfg.factor = factor_;
  cfg.min_capacity = min_capacity_;
  // An expert cannot pick more tokens than the batch holds.
  const std::int64_t C = std::min<std::int64_t>(expert_capacity(cfg, T, k(), E), T);
  words_ = (E + 63) / 64;
  stats_ = {};
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
