#include "policies/expert_choice.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <utility>

#if defined(__AVX512F__) || defined(__AVX2__)
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

// One row of row_constants by the row kernels (bitwise row_max_sum_exp16's at
// E % 16 == 0); false for a row holding NaN or inf. Inline: at E = 8 the call
// and the flag through memory were half of a batch's time.
inline bool ExpertChoicePolicy::row_constant(const float* logits, int t) {
  const int E = experts();
  const float* z = logits + static_cast<std::size_t>(t) * E;
  const bool finite = all_finite(z, E);
  double m = 0.0, log_sum = 0.0;
  if (spec_.rule == WeightRule::SoftmaxGather && finite) {
    const float mf = row_max(z, E);
    m = mf;
    log_sum = std::log(row_sum_exp_padded(z, E, mf));
  }
  shift_[2 * static_cast<std::size_t>(t)] = m;
  shift_[2 * static_cast<std::size_t>(t) + 1] = log_sum;
  return finite;
}

// Per token of [t0, t1): the row max and log of the softmax denominator (both 0
// for the sigmoid rule), reading every logit once; that pass also checks
// finiteness (an Error naming the first bad logit of the batch).
void ExpertChoicePolicy::row_constants(const float* logits, int t0, int t1) {
  const int E = experts();
  const bool softmax = spec_.rule == WeightRule::SoftmaxGather;
  bool finite = true;
  int t = t0;
  if (softmax && E % 16 == 0) {
    float m[16];
    double sum[16];
    for (; t + 16 <= t1; t += 16) {
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
  for (; t < t1 && finite; ++t) finite = row_constant(logits, t);
  if (!finite) check_finite(logits, t1, E, name().c_str());  // rows before t0 are finite
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
int ExpertChoicePolicy::sample_stride(int T) { return std::max(1, T / 1024); }

void ExpertChoicePolicy::bracket(const float* logits, int T, std::int64_t C) {
  const int E = experts();
  const int stride = sample_stride(T);
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

// The selection up to the candidates: the sample rows' constants, the brackets,
// then one pass over 16-row blocks that computes each block's row constants and
// classifies its keys while the rows are in L1 (a second pass read the T x E
// logits back from L3): above hi, the expert takes the token (a bit in chosen_);
// inside [lo, hi], the token is a candidate; below lo, out.
void ExpertChoicePolicy::select_candidates(const float* logits, int T, std::int64_t C) {
  const int E = experts();
  const auto nE = static_cast<std::size_t>(E);
  const int stride = sample_stride(T);
  const double cmax = sample_constants(logits, T, stride);
  bracket(logits, T, C);
  chosen_.resize(static_cast<std::size_t>(T) * words_);  // each row's classifier writes its words
  above_.assign(nE, 0);
  cand_.resize(nE);
  for (auto& c : cand_) c.clear();
  sure_count_.assign(nE + 16, 0);
  pe_.resize(16 * (nE + 16));  // a block's open keys; +16 a row: a full-vector store's slack
  pt_.resize(16 * (nE + 16));
  // Rows whose |m| + |log S| stays within twice the sample's go through the float
  // test (whose margin that bound sets); the others through the double one.
  const double cbound = 2.0 * cmax + 1.0;
  const bool fast = prefilter_ && float_bounds(cbound);
  for (int t0 = 0; t0 < T; t0 += 16) {
    const int t1 = std::min(T, t0 + 16);
    if (t1 + 16 <= T) {  // the next block's lines, while this one computes
      const char* next = reinterpret_cast<const char*>(logits + static_cast<std::size_t>(t1) * nE);
      for (std::size_t b = 0; b < 16 * nE * sizeof(float); b += 64) __builtin_prefetch(next + b);
    }
    row_constants(logits, t0, t1);
    std::size_t n = 0;
    if (fast) {
      n = classify_rows_float(logits, t0, t1, cbound);
    } else {
      for (int t = t0; t < t1; ++t) n = classify_row_double(logits, t, n);
    }
    deal_checked(logits, n);
  }
  for (std::size_t e = 0; e < nE; ++e) above_[e] += sure_count_[e];
}

// row_constants of the rows t = 0, stride, 2 stride, ... (the bracket's sample),
// copied 16 at a time into one block for the 16-row kernels: the same bits as
// the block pass gives those rows later, at a sixth of the per-row kernels' cost.
// Returns the sample's max |m_t| + |log S_t|.
double ExpertChoicePolicy::sample_constants(const float* logits, int T, int stride) {
  const int E = experts();
  const auto nE = static_cast<std::size_t>(E);
  const int S = (T + stride - 1) / stride;
  int i = 0;
  if (spec_.rule == WeightRule::SoftmaxGather && E % 16 == 0) {
    sample_rows_.resize(16 * nE);
    float m[16];
    double sum[16];
    for (; i + 16 <= S; i += 16) {
      for (int r = 0; r < 16; ++r)
        std::memcpy(sample_rows_.data() + static_cast<std::size_t>(r) * nE,
                    logits + static_cast<std::size_t>(i + r) * static_cast<std::size_t>(stride) * nE, nE * sizeof(float));
      if (!all_finite(sample_rows_.data(), 16 * E)) check_finite(logits, T, E, name().c_str());
      row_max_sum_exp16(sample_rows_.data(), E, m, sum);
      for (int r = 0; r < 16; ++r) {
        const auto t = static_cast<std::size_t>(i + r) * static_cast<std::size_t>(stride);
        shift_[2 * t] = m[r];
        shift_[2 * t + 1] = std::log(sum[r]);
      }
    }
  }
  for (; i < S; ++i)
    if (!row_constant(logits, i * stride)) check_finite(logits, T, E, name().c_str());
  double cmax = 0.0;
  for (int t = 0; t < T; t += stride)
    cmax = std::max(cmax, std::fabs(shift_[2 * static_cast<std::size_t>(t)]) +
                              std::fabs(shift_[2 * static_cast<std::size_t>(t) + 1]));
  return cmax;
}

// The float test's bounds: lo_f[e] below lo[e] and hi_f[e] above hi[e] by
// 2^-20 (|bound| + cmax + 1), rounded outwards. With c_t = float(m_t + log S_t),
// a key is surely above hi[e] where z - c_t > hi_f[e], and surely below lo[e]
// where z - c_t < lo_f[e], for every row with |m_t| + |log S_t| <= cmax. Why:
// the float difference and the double key K each stay within 2^-24 (|K| + cmax
// + 1) of the exact z - m - log S, so |float - K| <= 2^-23 (|K| + cmax + 1), and
// K + 2^-23 (|K| + ...) is increasing in K: K <= hi gives float <= hi_f, K >= lo
// gives float >= lo_f. False (no float test) above cmax = 2^100, where the float
// difference could overflow, and without AVX-512 or AVX2.
bool ExpertChoicePolicy::float_bounds(double cmax) {
#if defined(__AVX512F__) || defined(__AVX2__)
  if (!(cmax <= 0x1p100)) return false;
  const auto nE = static_cast<std::size_t>(experts());
  constexpr float kInf = std::numeric_limits<float>::infinity();
  constexpr double kMax = std::numeric_limits<float>::max();
  lo_f_.assign(nE + 16, 0.0f);  // +16: the last block's masked lanes
  hi_f_.assign(nE + 16, 0.0f);
  for (std::size_t e = 0; e < nE; ++e) {
    const double lo = lo_[e], hi = hi_[e];
    const double x = lo - 0x1p-20 * (std::fabs(lo) + cmax + 1.0);
    const double y = hi + 0x1p-20 * (std::fabs(hi) + cmax + 1.0);
    // Past the float range the bound is the infinity (the conversion would be undefined).
    float f = x >= -kMax ? static_cast<float>(x) : -kInf, g = y <= kMax ? static_cast<float>(y) : kInf;
    if (static_cast<double>(f) > x) f = std::nextafter(f, -kInf);
    if (static_cast<double>(g) < y) g = std::nextafter(g, kInf);
    lo_f_[e] = f;
    hi_f_[e] = g;
  }
  return true;
#else
  (void)cmax;
  return false;
#endif
}

// Rows [t0, t1) by the float test, 16 keys at a time with AVX-512 and 8 with
// AVX2 (the last block masked); a row whose |m| + |log S| exceeds cbound goes
// to the double test. The sure
// ones set their bits (a word gathered in a register, stored once) and are
// counted per expert in vector lanes; the open ones, neither sure above nor sure
// below, are packed by a register compress into pe_/pt_ (no branch on whether
// any lane is open: about a third of the blocks hold one, at random). Returns
// their number. One compare per 16 keys and no conversion to double: the double
// test's conversions, compares and compresses saturated the shuffle port.
namespace {

// One row of the float test: z - c against the float bounds, the sure keys'
// bits into bits and their counts into count, the open ones appended to pe/pt
// from n; returns the new n.
struct FloatRow {
  const float* z;
  float c;
  std::int32_t t;
  std::uint64_t* bits;
};
struct FloatTables {
  int E;
  std::int32_t* pe;
  std::int32_t* pt;
  std::int32_t* count;
  const float* lof;
  const float* hif;
};

#if defined(__AVX512F__)
inline std::size_t float_row(const FloatTables& f, const FloatRow& r, std::size_t n) {
  const __m512 c = _mm512_set1_ps(r.c);
  const __m512i tok = _mm512_set1_epi32(r.t);
  __m512i ids = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  std::uint64_t word = 0;
  for (int e = 0; e < f.E; e += 16) {
    const auto live = static_cast<__mmask16>(f.E - e >= 16 ? 0xffff : (1u << (f.E - e)) - 1);
    const __m512 d = _mm512_sub_ps(_mm512_maskz_loadu_ps(live, r.z + e), c);
    const __mmask16 sure = _mm512_mask_cmp_ps_mask(live, d, _mm512_loadu_ps(f.hif + e), _CMP_GT_OQ);
    const __mmask16 open = _mm512_mask_cmp_ps_mask(static_cast<__mmask16>(live & ~sure), d, _mm512_loadu_ps(f.lof + e),
                                                   _CMP_GE_OQ);
    word |= static_cast<std::uint64_t>(sure) << (e % 64);
    if (e % 64 == 48 || e + 16 >= f.E) {
      r.bits[e / 64] = word;
      word = 0;
    }
    const __m512i cnt = _mm512_loadu_si512(f.count + e);
    _mm512_storeu_si512(f.count + e, _mm512_mask_add_epi32(cnt, sure, cnt, _mm512_set1_epi32(1)));
    _mm512_storeu_si512(f.pe + n, _mm512_maskz_compress_epi32(open, ids));
    _mm512_storeu_si512(f.pt + n, tok);
    n += static_cast<std::size_t>(std::popcount(static_cast<unsigned>(open)));
    ids = _mm512_add_epi32(ids, _mm512_set1_epi32(16));
  }
  return n;
}
#elif defined(__AVX2__)
// The same test 8 keys at a time. AVX2 has no compress: the open keys (about
// one in ten) are written out bit by bit from their mask.
inline std::size_t float_row(const FloatTables& f, const FloatRow& r, std::size_t n) {
  const __m256 c = _mm256_set1_ps(r.c);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  std::uint64_t word = 0;
  for (int e = 0; e < f.E; e += 8) {
    const __m256i lm = _mm256_cmpgt_epi32(_mm256_set1_epi32(f.E - e), lane);
    const __m256 live = _mm256_castsi256_ps(lm);
    const __m256 d = _mm256_sub_ps(_mm256_maskload_ps(r.z + e, lm), c);
    const __m256 sure = _mm256_and_ps(live, _mm256_cmp_ps(d, _mm256_loadu_ps(f.hif + e), _CMP_GT_OQ));
    const __m256 open = _mm256_andnot_ps(sure, _mm256_and_ps(live, _mm256_cmp_ps(d, _mm256_loadu_ps(f.lof + e), _CMP_GE_OQ)));
    word |= static_cast<std::uint64_t>(static_cast<unsigned>(_mm256_movemask_ps(sure))) << (e % 64);
    if (e % 64 == 56 || e + 8 >= f.E) {
      r.bits[e / 64] = word;
      word = 0;
    }
    // A true compare lane is -1: subtracting it counts the sure keys.
    const __m256i cnt = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(f.count + e));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(f.count + e), _mm256_sub_epi32(cnt, _mm256_castps_si256(sure)));
    for (unsigned om = static_cast<unsigned>(_mm256_movemask_ps(open)); om != 0; om &= om - 1) {
      f.pe[n] = e + std::countr_zero(om);
      f.pt[n] = r.t;
      ++n;
    }
  }
  return n;
}
#endif

}  // namespace

std::size_t ExpertChoicePolicy::classify_rows_float(const float* logits, int t0, int t1, double cbound) {
  std::size_t n = 0;
#if defined(__AVX512F__) || defined(__AVX2__)
  const int E = experts();
  // Plain pointers: stores through the vectors' pointers would otherwise reload them.
  const FloatTables f{E, pe_.data(), pt_.data(), sure_count_.data(), lo_f_.data(), hi_f_.data()};
  for (int t = t0; t < t1; ++t) {
    const std::size_t i = 2 * static_cast<std::size_t>(t);
    if (!(std::fabs(shift_[i]) + std::fabs(shift_[i + 1]) <= cbound)) {
      n = classify_row_double(logits, t, n);
      continue;
    }
    ++stats_.float_rows;
    const FloatRow r{logits + static_cast<std::size_t>(t) * static_cast<std::size_t>(E),
                     static_cast<float>(shift_[i] + shift_[i + 1]), t,
                     chosen_.data() + static_cast<std::size_t>(t) * words_};
    n = float_row(f, r, n);
  }
#else
  for (int t = t0; t < t1; ++t) n = classify_row_double(logits, t, n);
  (void)cbound;
#endif
  return n;
}

// Row t by the double keys (key()'s operations): above hi sets the bit and
// counts, inside [lo, hi] goes to pe_/pt_ like the float test's open keys.
std::size_t ExpertChoicePolicy::classify_row_double(const float* logits, int t, std::size_t n) {
  const int E = experts();
  std::uint64_t* const bits = chosen_.data() + static_cast<std::size_t>(t) * words_;
  std::fill(bits, bits + words_, 0);
  for (int e = 0; e < E; ++e) {
    const double k = key(logits, t, e);
    if (k > hi_[static_cast<std::size_t>(e)]) {
      bits[e / 64] |= std::uint64_t{1} << (e % 64);
      ++sure_count_[static_cast<std::size_t>(e)];
    } else if (k >= lo_[static_cast<std::size_t>(e)]) {
      pe_[n] = e;
      pt_[n] = t;
      ++n;
    }
  }
  return n;
}

// The first n (expert, token) pairs of pe_ and pt_ that a row test left open,
// by their double keys, in (token, expert) order: above hi the expert takes the
// token (rare: only keys within the float margin of hi come here), inside
// [lo, hi] a candidate.
void ExpertChoicePolicy::deal_checked(const float* logits, std::size_t n) {
  const auto words = static_cast<std::size_t>(words_);
  for (std::size_t i = 0; i < n; ++i) {
    const auto e = static_cast<std::size_t>(pe_[i]);
    const auto t = static_cast<std::size_t>(pt_[i]);
    const double k = key(logits, pt_[i], pe_[i]);
    if (k > hi_[e]) {
      chosen_[t * words + e / 64] |= std::uint64_t{1} << (e % 64);
      ++above_[e];
    } else if (k >= lo_[e]) {
      cand_[e].emplace_back(k, static_cast<std::int32_t>(t));
    }
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
  const auto nE = static_cast<std::size_t>(E);
  constexpr int kAhead = 16;  // tokens: the logits come from memory, and the exps hide little of its latency
  for (int t = 0; t < T; ++t) {
    if (t + kAhead < T && !spec_.renormalize)  // the lines of the first and last chosen expert, rows ahead
      for (int wd = 0; wd < words_; ++wd)
        if (const std::uint64_t b = chosen_[static_cast<std::size_t>(t + kAhead) * words_ + wd]) {
          const float* row = logits + static_cast<std::size_t>(t + kAhead) * nE + static_cast<std::size_t>(wd) * 64;
          __builtin_prefetch(row + std::countr_zero(b));
          __builtin_prefetch(row + (63 - std::countl_zero(b)));
        }
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
    shift_.resize(2 * static_cast<std::size_t>(T));
    if (C >= T) {
      row_constants(in.logits, 0, T);
      chosen_.assign(static_cast<std::size_t>(T) * words_, 0);  // every expert takes the whole batch
      for (int t = 0; t < T; ++t)
        for (int e = 0; e < E; ++e) chosen_[static_cast<std::size_t>(t) * words_ + e / 64] |= std::uint64_t{1} << (e % 64);
    } else {
      select_candidates(in.logits, T, C);
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
