#pragma once
// Selection kernels shared by the policies. Tie-breaking everywhere: higher
// score first, then lower expert index.
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

#include "policies/rng.hpp"
#include "policies/select_avx2.hpp"
#include "policies/select_avx512.hpp"
#include "policies/types.hpp"

namespace moesim {

// The k best indices of value(0..n-1), best first, written to idx[0..k).
// One pass, insertion into a sorted k-buffer: O(n*k) worst case but branch-
// predictable for small k, and no allocation (this is the routing hot path).
// Scanning in index order and inserting only on a strict '>' means an equal
// value never overtakes an earlier (lower) index.
template <class ValueFn>
inline void topk_by(int n, int k, ValueFn&& value, std::int32_t* idx, float* val) {
  constexpr float kNeg = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < k; ++j) {
    idx[j] = kNoExpert;
    val[j] = kNeg;
  }
  if (k == 1) {
    float best = kNeg;
    std::int32_t bi = kNoExpert;
    for (int i = 0; i < n; ++i) {
      const float v = value(i);
      if (v > best) best = v, bi = i;
    }
    idx[0] = bi;
    val[0] = best;
    return;
  }
  if (k == 2) {
    float v0 = kNeg, v1 = kNeg;
    std::int32_t i0 = kNoExpert, i1 = kNoExpert;
    for (int i = 0; i < n; ++i) {
      const float v = value(i);
      if (v > v1) {
        if (v > v0) {
          v1 = v0, i1 = i0;
          v0 = v, i0 = i;
        } else {
          v1 = v, i1 = i;
        }
      }
    }
    idx[0] = i0, idx[1] = i1, val[0] = v0, val[1] = v1;
    return;
  }
  for (int i = 0; i < n; ++i) {
    const float v = value(i);
    if (v > val[k - 1]) {
      int p = k - 1;
      while (p > 0 && v > val[p - 1]) {
        val[p] = val[p - 1];
        idx[p] = idx[p - 1];
        --p;
      }
      val[p] = v;
      idx[p] = i;
    }
  }
}

// The k best of row (+ bias when non-null), best first. The AVX-512 kernels
// handle k in {1,2,3,4,6,8}; everything else takes the scalar kernel. Both give
// identical output (tests compare them).
inline void topk_row(const float* row, int n, int k, std::int32_t* idx, float* val,
                     const float* bias = nullptr) {
#if defined(__AVX512F__)
  // The SIMD kernels pad with -inf, so a k-th best of -inf is ambiguous there:
  // such rows (only from overflowing scores) take the scalar kernel, which
  // leaves kNoExpert for the unselectable slots.
  if (simd::topk_dispatch(row, bias, n, k, idx, val)) return;
#endif
  if (bias)
    topk_by(n, k, [row, bias](int i) { return row[i] + bias[i]; }, idx, val);
  else
    topk_by(n, k, [row](int i) { return row[i]; }, idx, val);
}

// The rows of a block whose k-th best was -inf (only from overflowing scores;
// bit r of short_rows for row r), redone by topk_row, which leaves kNoExpert
// where nothing is selectable.
inline void redo_short_rows(const float* zt, int n, int k, std::int32_t* it, float* vt, const float* bias,
                            unsigned short_rows) {
  for (; __builtin_expect(short_rows != 0, 0); short_rows &= short_rows - 1) {
    const int r = __builtin_ctz(short_rows);
    topk_row(zt + static_cast<std::size_t>(r) * n, n, k, it + r * k, vt + r * k, bias);
  }
}

// topk_row for rows z[t*n ..] of t in [0, T): idx and val are T x k. The same
// output; for k <= 8, 16 rows at a time with AVX-512 (topk_rows16), else 8 rows
// at a time with AVX2 (topk_rows8). Returns whether every z read was finite
// (the bias is not checked).
inline bool topk_rows(const float* z, int T, int n, int k, std::int32_t* idx, float* val, const float* bias = nullptr) {
  int t = 0;
  bool finite = true;
#if defined(__AVX512F__)
  if (k >= 1 && k <= 8) {
    for (; t + 16 <= T; t += 16) {
      const float* zt = z + static_cast<std::size_t>(t) * n;
      std::int32_t* it = idx + static_cast<std::size_t>(t) * k;
      float* vt = val + static_cast<std::size_t>(t) * k;
      unsigned short_rows = 0;
      switch (k) {
        case 1: finite &= simd::topk_rows16<1>(zt, bias, n, it, vt, &short_rows); break;
        case 2: finite &= simd::topk_rows16<2>(zt, bias, n, it, vt, &short_rows); break;
        case 3: finite &= simd::topk_rows16<3>(zt, bias, n, it, vt, &short_rows); break;
        case 4: finite &= simd::topk_rows16<4>(zt, bias, n, it, vt, &short_rows); break;
        case 5: finite &= simd::topk_rows16<5>(zt, bias, n, it, vt, &short_rows); break;
        case 6: finite &= simd::topk_rows16<6>(zt, bias, n, it, vt, &short_rows); break;
        case 7: finite &= simd::topk_rows16<7>(zt, bias, n, it, vt, &short_rows); break;
        default: finite &= simd::topk_rows16<8>(zt, bias, n, it, vt, &short_rows); break;
      }
      redo_short_rows(zt, n, k, it, vt, bias, short_rows);
    }
  }
#elif defined(__AVX2__) && defined(__FMA__)
  if (k >= 1 && k <= 8) {
    for (; t + 8 <= T; t += 8) {
      const float* zt = z + static_cast<std::size_t>(t) * n;
      std::int32_t* it = idx + static_cast<std::size_t>(t) * k;
      float* vt = val + static_cast<std::size_t>(t) * k;
      unsigned short_rows = 0;
      bool fin = true;
      simd2::topk_rows8_dispatch(zt, bias, n, k, it, vt, &short_rows, &fin);
      finite &= fin;
      redo_short_rows(zt, n, k, it, vt, bias, short_rows);
    }
  }
#endif
  for (; t < T; ++t) {
    const float* zt = z + static_cast<std::size_t>(t) * n;
    for (int e = 0; e < n; ++e) finite &= std::fabs(zt[e]) <= std::numeric_limits<float>::max();
    topk_row(zt, n, k, idx + static_cast<std::size_t>(t) * k, val + static_cast<std::size_t>(t) * k, bias);
  }
  return finite;
}

// The scalar kernel alone, for tests that compare the two.
inline void topk_row_scalar(const float* row, int n, int k, std::int32_t* idx, float* val) {
  topk_by(n, k, [row](int i) { return row[i]; }, idx, val);
}

// How equal selection scores are ordered. LowIndex: the lower expert index wins
// (torch.topk on CPU and most kernels in practice). Random: every order of the
// tied experts equally likely, drawn from the policy's Rng, so still one result
// per seed. Ties are rare in fp32 but common in bf16 routing (Megatron-Core routes
// in the model's dtype), where LowIndex piles load onto low-index experts.
enum class TieBreak { LowIndex, Random };

inline double softplus(double x) { return x > 30.0 ? x : std::log1p(std::exp(x)); }

// Turns a lower-index top-k result (idx/val: the kk <= k valid best of value(0..n-1),
// best first) into a uniformly random tie-break: inside every run of equal values
// the order is shuffled, and the last run (the k-th value v*) is refilled with a
// uniform choice among *all* experts scoring v*. Draws only where ties exist, so
// tie-free rows consume no randomness.
template <class ValueFn, class V>
void shuffle_ties(int n, int k, ValueFn&& value, std::int32_t* idx, const V* val, Rng& rng) {
  int kk = 0;
  while (kk < k && idx[kk] >= 0) ++kk;
  if (kk == 0) return;
  auto shuffle = [&](int a, int b) {  // Fisher-Yates on idx[a, b)
    for (int i = b - 1; i > a; --i) std::swap(idx[i], idx[a + static_cast<int>(rng.below(static_cast<std::uint64_t>(i - a + 1)))]);
  };
  const V vstar = val[kk - 1];
  int a0 = kk - 1;
  while (a0 > 0 && val[a0 - 1] == vstar) --a0;
  for (int a = 0; a < a0;) {
    int b = a + 1;
    while (b < a0 && val[b] == val[a]) ++b;
    if (b - a > 1) shuffle(a, b);
    a = b;
  }
  int m = 0;
  for (int e = 0; e < n; ++e) m += value(e) == vstar;
  const int q = kk - a0;
  if (m == q) {
    if (q > 1) shuffle(a0, kk);
    return;
  }
  std::vector<std::int32_t> tied;
  tied.reserve(static_cast<std::size_t>(m));
  for (int e = 0; e < n; ++e)
    if (value(e) == vstar) tied.push_back(e);
  for (int j = 0; j < q; ++j) {
    const auto r = j + static_cast<int>(rng.below(static_cast<std::uint64_t>(m - j)));
    std::swap(tied[static_cast<std::size_t>(j)], tied[static_cast<std::size_t>(r)]);
    idx[a0 + j] = tied[static_cast<std::size_t>(j)];
  }
}

// Reference: the straightforward full sort per token, kept for the benchmark's
// side-by-side comparison and as a second implementation for tests.
void topk_row_sorted(const float* row, int n, int k, std::int32_t* idx);

// An item of best_keyed: a key and the id it belongs to.
using KeyedItem = std::pair<double, std::int32_t>;

// out = the ids of the min(take, size) best items (higher key, then lower id),
// in no particular order; keys must not be NaN, and items is scratch (reordered
// and overwritten). A radix select on the keys' order-preserving bits: each pass
// histograms the live items on 8 bits of their remaining range and keeps the
// bucket holding the take-th, without a branch on the data; the last few items
// go through nth_element. Why: nth_element's comparisons over a few hundred
// random keys mispredict about every other branch.
void best_keyed(std::vector<KeyedItem>& items, std::size_t take, std::vector<std::int32_t>& out);

// Throws Error naming the first token and expert whose score is NaN or infinite.
void check_finite(const float* logits, int tokens, int experts, const char* who);

// Combine weights for every served slot of `a` from the logits, by `spec`
// (see WeightRule). Empty slots get 0. Tokens with no served slot get nothing.
// slot_logits, when given (tokens x width), holds the logit of every requested
// slot, so the weights need no second gather from the T x E logits (only the
// full-row softmax denominator still reads the rows).
// rows, when given (one per token), holds each row's max and sum of exp(z - max),
// the full-row softmax normaliser, so SoftmaxGather without renormalisation
// does not read the rows either.
struct RowSoftmax {
  float max;
  double sum;
};
void compute_weights(const WeightSpec& spec, const float* logits, Assignment& a,
                     const float* slot_logits = nullptr, const RowSoftmax* rows = nullptr);

// The logits of the k selected experts of one row (0 where none), for the
// slot_logits of compute_weights, gathered while the row is in cache.
inline void gather_slot_logits(const float* z, const std::int32_t* idx, int k, float* dst) {
  for (int j = 0; j < k; ++j) dst[j] = idx[j] >= 0 ? z[idx[j]] : 0.0f;
}

}  // namespace moesim
