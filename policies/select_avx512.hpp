#pragma once
// AVX-512 top-k for k <= 8 (compiled only when the target has AVX-512F; the
// scalar kernel in select.hpp is the fallback and the reference it is tested
// against). Both kernels keep a sorted top-K per SIMD lane in one pass and pop
// the K best across lanes; ties always go to the lower expert index, exactly as
// in the scalar kernel. Measured (E=64): topk_lanes is ~2x topk_scan for k<=2,
// topk_scan wins for k=8 where the index registers double the network's work.
#if defined(__AVX512F__)
#include <immintrin.h>

#include <cstdint>
#include <limits>

#include "policies/transpose_avx512.hpp"

namespace moesim::simd {

inline __m512 vmax(__m512 a, __m512 b) { return _mm512_mask_max_ps(a, kAll, a, b); }
inline __m512 vmin(__m512 a, __m512 b) { return _mm512_mask_min_ps(a, kAll, a, b); }
inline __m512i vmin_i(__m512i a, __m512i b) { return _mm512_mask_min_epi32(a, kAll, a, b); }
inline __m512i vadd_i(__m512i a, __m512i b) { return _mm512_mask_add_epi32(a, kAll, a, b); }

inline __mmask16 tail_mask(int n, int i) {
  const int r = n - i;
  return r >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << r) - 1);
}

// z[i..i+16) (+ bias), padded with -inf past n.
inline __m512 load_block(const float* z, const float* b, int n, int i) {
  const __mmask16 m = tail_mask(n, i);
  __m512 v = _mm512_mask_loadu_ps(_mm512_set1_ps(-std::numeric_limits<float>::infinity()), m, z + i);
  if (b) v = _mm512_mask_add_ps(v, m, v, _mm512_maskz_loadu_ps(m, b + i));
  return v;
}

// Horizontal max (GCC 12's _mm512_reduce_max_ps trips -Wmaybe-uninitialized).
inline float hmax(__m512 v) {
  v = vmax(v, _mm512_mask_shuffle_f32x4(v, kAll, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = vmax(v, _mm512_mask_shuffle_f32x4(v, kAll, v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = vmax(v, _mm512_mask_permute_ps(v, kAll, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = vmax(v, _mm512_mask_permute_ps(v, kAll, v, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_cvtss_f32(v);
}

// First index >= from whose value equals x.
inline int first_equal(const float* z, const float* b, int n, float x, int from) {
  const __m512 vx = _mm512_set1_ps(x);
  for (int i = from & ~15; i < n; i += 16) {
    unsigned e = _mm512_mask_cmp_ps_mask(tail_mask(n, i), load_block(z, b, n, i), vx, _CMP_EQ_OQ);
    if (from > i) e &= ~0u << (from - i);
    if (e) return i + __builtin_ctz(e);
  }
  return -1;
}

// Larger K: per-lane top-K values only; a short scan per popped value recovers
// the lowest index holding it.
template <int K>
inline void topk_scan(const float* z, const float* b, int n, std::int32_t* idx, float* val) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 m[K];
  for (int j = 0; j < K; ++j) m[j] = ninf;
  for (int i = 0; i < n; i += 16) {
    __m512 v = load_block(z, b, n, i);
    // max(v, m) returns m when v is NaN, and min(m, v) passes the NaN on down
    // until it falls off: NaN never enters, as with the strict '>' elsewhere.
    for (int j = 0; j < K; ++j) {
      const __m512 hi = vmax(v, m[j]);
      if (j + 1 < K) v = vmin(m[j], v);
      m[j] = hi;
    }
  }
  for (int j = 0; j < K; ++j) {
    const float mx = hmax(m[0]);
    val[j] = mx;
    if (j + 1 == K) break;
    const __mmask16 eq = _mm512_cmp_ps_mask(m[0], _mm512_set1_ps(mx), _CMP_EQ_OQ);
    const __mmask16 one = eq & __mmask16(-eq);  // pop one lane only: values keep their multiplicity
    for (int q = 0; q + 1 < K; ++q) m[q] = _mm512_mask_mov_ps(m[q], one, m[q + 1]);
    m[K - 1] = _mm512_mask_mov_ps(m[K - 1], one, ninf);
  }
  int prev = -1;
  for (int j = 0; j < K; ++j) {
    prev = first_equal(z, b, n, val[j], (j > 0 && val[j] == val[j - 1]) ? prev + 1 : 0);
    idx[j] = prev;
  }
}

inline int hmin_i(__m512i v) {
  v = vmin_i(v, _mm512_mask_shuffle_i32x4(v, kAll, v, v, _MM_SHUFFLE(1, 0, 3, 2)));
  v = vmin_i(v, _mm512_mask_shuffle_i32x4(v, kAll, v, v, _MM_SHUFFLE(2, 3, 0, 1)));
  v = vmin_i(v, _mm512_mask_shuffle_epi32(v, kAll, v, _MM_PERM_BADC));
  v = vmin_i(v, _mm512_mask_shuffle_epi32(v, kAll, v, _MM_PERM_CDAB));
  alignas(64) std::int32_t lane[16];
  _mm512_store_si512(lane, v);
  return lane[0];
}
// Small K: every lane keeps its K best (value, index) pairs sorted by value desc,
// index asc; no rescans. A new element carries the largest index its lane has
// seen, so only displaced elements (j > 0) need the index tie check.
template <int K>
inline void topk_lanes(const float* z, const float* b, int n, std::int32_t* idx, float* val) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512i big = _mm512_set1_epi32(0x7fffffff);
  __m512 m[K]; __m512i mi[K];
  for (int j = 0; j < K; ++j) { m[j] = ninf; mi[j] = big; }
  __m512i vi = _mm512_setr_epi32(0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15);
  const __m512i sixteen = _mm512_set1_epi32(16);
  for (int i = 0; i < n; i += 16, vi = vadd_i(vi, sixteen)) {
    const __mmask16 tm = tail_mask(n, i);
    __m512 v = _mm512_mask_loadu_ps(ninf, tm, z + i);
    if (b) v = _mm512_mask_add_ps(v, tm, v, _mm512_maskz_loadu_ps(tm, b + i));
    __m512i x = _mm512_mask_mov_epi32(big, tm, vi);
    for (int j = 0; j < K; ++j) {
      const __m512 mv = m[j]; const __m512i mx = mi[j];
      __mmask16 gt = _mm512_cmp_ps_mask(v, mv, _CMP_GT_OQ);
      if (j > 0) gt |= _mm512_mask_cmp_epi32_mask(_mm512_cmp_ps_mask(v, mv, _CMP_EQ_OQ), x, mx, _MM_CMPINT_LT);
      m[j] = _mm512_mask_mov_ps(mv, gt, v); mi[j] = _mm512_mask_mov_epi32(mx, gt, x);
      if (j + 1 < K) { v = _mm512_mask_mov_ps(v, gt, mv); x = _mm512_mask_mov_epi32(x, gt, mx); }
    }
  }
  for (int j = 0; j < K; ++j) {
    const float mxv = hmax(m[0]);
    const __mmask16 eq = _mm512_cmp_ps_mask(m[0], _mm512_set1_ps(mxv), _CMP_EQ_OQ);
    const int best = hmin_i(_mm512_mask_mov_epi32(big, eq, mi[0]));
    val[j] = mxv; idx[j] = best;
    if (j + 1 == K) break;
    const __mmask16 one = _mm512_mask_cmp_epi32_mask(eq, mi[0], _mm512_set1_epi32(best), _MM_CMPINT_EQ);
    for (int q = 0; q + 1 < K; ++q) { m[q] = _mm512_mask_mov_ps(m[q], one, m[q + 1]); mi[q] = _mm512_mask_mov_epi32(mi[q], one, mi[q + 1]); }
    m[K - 1] = _mm512_mask_mov_ps(m[K - 1], one, ninf); mi[K-1] = _mm512_mask_mov_epi32(mi[K-1], one, big);
  }
}

// 16 rows at once, rows as lanes: each 16 x 16 tile (16 tokens x 16 experts) is
// transposed in registers, then every expert, in index order, enters each
// lane's sorted top-K by strict '>' exactly as the scalar kernel does, so the
// output is the scalar kernel's. No horizontal reduction per row: at E = 64 this
// is ~3x the per-row kernels.
// Rows z[0..16) of stride n (+ bias): idx/val (16 x K, row-major) as the scalar
// kernel would write them. Returns whether every logit read was finite (the
// caller's check_finite then has nothing to find); bit r of *short_rows is set
// when row r's K-th best is -inf (fewer than K selectable experts).
//
// Per expert x, with v sorted per lane: gt[j] = x > v[j], and x enters at the
// first such j. v[0] = max(x, v[0]) (the operand order keeps the old value when
// the two compare equal, +0 against -0 included, and ignores a NaN x: x86's max
// returns its second operand then), so the top value's dependency chain is one
// max per expert where a compare and a masked move were two. Below the top,
// v[j] takes min(v[j-1], x) where gt[j]: v[j-1] where x beat it, else x.
// Finiteness: x * 0 + acc turns NaN for good once any x is NaN or infinite (two
// accumulators, so the chain stays shorter than the block's work).
// A sorted top-K per lane, 16 rows at once, fed one expert at a time (the
// network described above); store() writes row r's K best as topk_row does and
// returns the rows whose K-th best is -inf.
template <int K>
struct LaneTopK {
  __m512 v[K];
  __m512i vi[K];
  LaneTopK() {
    for (int j = 0; j < K; ++j) v[j] = _mm512_set1_ps(-std::numeric_limits<float>::infinity()), vi[j] = _mm512_set1_epi32(-1);
  }
  __attribute__((always_inline)) void insert(__m512 x, __m512i xi) {
    __mmask16 gt[K];
    for (int j = 0; j < K; ++j) gt[j] = _mm512_cmp_ps_mask(x, v[j], _CMP_GT_OQ);
    for (int j = K - 1; j > 0; --j) {
      v[j] = _mm512_mask_mov_ps(v[j], gt[j], _mm512_mask_min_ps(x, kAll, v[j - 1], x));
      vi[j] = _mm512_mask_mov_epi32(vi[j], gt[j], _mm512_mask_mov_epi32(xi, gt[j - 1], vi[j - 1]));
    }
    v[0] = _mm512_mask_max_ps(v[0], kAll, x, v[0]);
    vi[0] = _mm512_mask_mov_epi32(vi[0], gt[0], xi);
  }
  unsigned store(std::int32_t* idx, float* val) const {
    if constexpr (K == 1) {
      _mm512_storeu_ps(val, v[0]);
      _mm512_storeu_si512(idx, vi[0]);
    } else if constexpr (K == 2) {  // rows interleaved by two permutes per output
      const __m512i lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
      const __m512i hi = _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
      _mm512_storeu_ps(val, _mm512_permutex2var_ps(v[0], lo, v[1]));
      _mm512_storeu_ps(val + 16, _mm512_permutex2var_ps(v[0], hi, v[1]));
      _mm512_storeu_si512(idx, _mm512_permutex2var_epi32(vi[0], lo, vi[1]));
      _mm512_storeu_si512(idx + 16, _mm512_permutex2var_epi32(vi[0], hi, vi[1]));
    } else {
      alignas(64) float fv[K][16];
      alignas(64) std::int32_t iv[K][16];
      for (int j = 0; j < K; ++j) {
        _mm512_store_ps(fv[j], v[j]);
        _mm512_store_si512(iv[j], vi[j]);
      }
      for (int r = 0; r < 16; ++r)
        for (int j = 0; j < K; ++j) {
          idx[r * K + j] = iv[j][r];
          val[r * K + j] = fv[j][r];
        }
    }
    return _mm512_cmp_ps_mask(v[K - 1], _mm512_set1_ps(-std::numeric_limits<float>::infinity()), _CMP_EQ_OQ);
  }
};

template <int K>
inline bool topk_rows16(const float* z, const float* b, int n, std::int32_t* idx, float* val, unsigned* short_rows) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512 zero = _mm512_setzero_ps();
  LaneTopK<K> best;
  __m512 col[16];
  __m512 fin[2] = {zero, zero};
  // xi: the expert's index in every lane, kept as a vector (a broadcast from a
  // general register per expert cost two moves more).
  auto insert = [&](__m512 x, std::size_t e, __m512i xi) __attribute__((always_inline)) {
    if (b) x = _mm512_add_ps(x, _mm512_set1_ps(b[e]));
    best.insert(x, xi);
  };
  const __m512i one = _mm512_set1_epi32(1);
  // Long rows (E = 256: 16 streams 1 KiB apart) outran the hardware prefetch:
  // asking for the line two blocks ahead took E = 256, k = 2 from about 4.2 to
  // 5.6-6.2 M tokens/s. Rows of 16 to 64 experts ask for the next 16-row
  // block's lines instead, one per row and column block: at E = 64 (a 4 MiB
  // batch, past the L2) k = 2 went from 41-44 to 46-50 M tokens/s, k = 1 from
  // 59-63 to 70-73; at E = 8 the 16 requests for 8 lines cost more than they saved.
  constexpr int kAhead = 32;
  for (int e0 = 0; e0 < n; e0 += 16) {
    const __mmask16 tm = tail_mask(n, e0);
    for (int r = 0; r < 16; ++r) {
      col[r] = _mm512_mask_loadu_ps(ninf, tm, z + static_cast<std::size_t>(r) * n + e0);
      if (e0 + kAhead < n)
        _mm_prefetch(reinterpret_cast<const char*>(z + static_cast<std::size_t>(r) * n + e0 + kAhead), _MM_HINT_T0);
      else if (n >= 16 && n <= 64)  // short rows: this line of the next block's row (a prefetch never faults)
        _mm_prefetch(reinterpret_cast<const char*>(z + static_cast<std::size_t>(16 + r) * n + e0), _MM_HINT_T0);
      fin[r & 1] = _mm512_mask3_fmadd_ps(col[r], zero, fin[r & 1], tm);
    }
    transpose16(col);
    const auto ue0 = static_cast<std::size_t>(e0);
    __m512i xi = _mm512_set1_epi32(e0);
    if (n - e0 >= 16) {  // a full block: no bound to test per expert
      for (int c = 0; c < 16; ++c, xi = vadd_i(xi, one)) insert(col[c], ue0 + c, xi);
    } else {
      for (int c = 0; c < n - e0; ++c, xi = vadd_i(xi, one)) insert(col[c], ue0 + c, xi);
    }
  }
  *short_rows = best.store(idx, val);
  const __m512 f = _mm512_add_ps(fin[0], fin[1]);
  return _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q) == 0;
}

// topk_rows16 on columns already transposed (cols[e * 16 + r]: expert e of row
// r), where lane r reads expert e only if bit r of kept[e / gs] is set (-inf
// otherwise): bitwise topk_rows16 on rows with the unkept groups at -inf.
template <int K>
inline unsigned topk_cols16(const float* cols, int n, int gs, const __mmask16* kept, std::int32_t* idx, float* val) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512i one = _mm512_set1_epi32(1);
  LaneTopK<K> best;
  __m512i xi = _mm512_setzero_si512();
  for (int g = 0, e = 0; e < n; ++g)
    for (int c = 0; c < gs; ++c, ++e, xi = vadd_i(xi, one))
      best.insert(_mm512_mask_loadu_ps(ninf, kept[g], cols + static_cast<std::size_t>(e) * 16), xi);
  return best.store(idx, val);
}

inline unsigned topk_cols_dispatch(const float* cols, int n, int gs, const __mmask16* kept, int k, std::int32_t* idx,
                                   float* val) {
  switch (k) {
    case 1: return topk_cols16<1>(cols, n, gs, kept, idx, val);
    case 2: return topk_cols16<2>(cols, n, gs, kept, idx, val);
    case 3: return topk_cols16<3>(cols, n, gs, kept, idx, val);
    case 4: return topk_cols16<4>(cols, n, gs, kept, idx, val);
    case 5: return topk_cols16<5>(cols, n, gs, kept, idx, val);
    case 6: return topk_cols16<6>(cols, n, gs, kept, idx, val);
    case 7: return topk_cols16<7>(cols, n, gs, kept, idx, val);
    default: return topk_cols16<8>(cols, n, gs, kept, idx, val);
  }
}

// The M best values of every group of gs consecutive experts (gs divides n),
// 16 rows at once: out[(g * M + j) * 16 + r] is the j-th best of row r's group
// g, best first, and cols[e * 16 + r] is expert e of row r (the transposed
// rows). Values only, so a max/min network per expert; equal values are
// interchangeable there. Returns whether every value was finite.
template <int M>
inline bool group_top_rows16(const float* z, int n, int gs, float* out, float* cols) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  const __m512 zero = _mm512_setzero_ps();
  __m512 v[M];
  for (int j = 0; j < M; ++j) v[j] = ninf;
  __m512 col[16];
  __m512 fin[2] = {zero, zero};
  int left = gs;
  float* o = out;
  for (int e0 = 0; e0 < n; e0 += 16) {
    const __mmask16 tm = tail_mask(n, e0);
    for (int r = 0; r < 16; ++r) {
      col[r] = _mm512_mask_loadu_ps(ninf, tm, z + static_cast<std::size_t>(r) * n + e0);
      fin[r & 1] = _mm512_mask3_fmadd_ps(col[r], zero, fin[r & 1], tm);
    }
    transpose16(col);
    const int width = n - e0 < 16 ? n - e0 : 16;
    for (int c = 0; c < width; ++c) {
      __m512 x = col[c];
      _mm512_storeu_ps(cols + static_cast<std::size_t>(e0 + c) * 16, x);
      for (int j = 0; j < M; ++j) {
        const __m512 hi = vmax(v[j], x);
        x = vmin(v[j], x);
        v[j] = hi;
      }
      if (--left == 0) {  // the group's last expert
        for (int j = 0; j < M; ++j, o += 16) _mm512_storeu_ps(o, v[j]), v[j] = ninf;
        left = gs;
      }
    }
  }
  const __m512 f = _mm512_add_ps(fin[0], fin[1]);
  return _mm512_cmp_ps_mask(f, f, _CMP_UNORD_Q) == 0;
}

// Per lane, the `keep` best of G group scores (s[g * 16 + r]: group g of row r),
// ties to the lower group, as a scalar scan with a strict > picks them:
// kept[g] is the mask of the rows that keep group g.
inline void keep_groups16(const double* s, int G, int keep, __mmask16* kept) {
  for (int g = 0; g < G; ++g) kept[g] = 0;
  for (int j = 0; j < keep; ++j) {
    __m512d best_lo = _mm512_setzero_pd(), best_hi = _mm512_setzero_pd();
    __m512i best = _mm512_setzero_si512();
    __mmask16 have = 0;
    for (int g = 0; g < G; ++g) {
      const __m512d lo = _mm512_loadu_pd(s + static_cast<std::size_t>(g) * 16);
      const __m512d hi = _mm512_loadu_pd(s + static_cast<std::size_t>(g) * 16 + 8);
      const __mmask16 gt = static_cast<__mmask16>(_mm512_cmp_pd_mask(lo, best_lo, _CMP_GT_OQ) |
                                                  (_mm512_cmp_pd_mask(hi, best_hi, _CMP_GT_OQ) << 8));
      const __mmask16 take = static_cast<__mmask16>(~kept[g] & (~have | gt));
      best_lo = _mm512_mask_mov_pd(best_lo, static_cast<__mmask8>(take), lo);
      best_hi = _mm512_mask_mov_pd(best_hi, static_cast<__mmask8>(take >> 8), hi);
      best = _mm512_mask_mov_epi32(best, take, _mm512_set1_epi32(g));
      have |= take;
    }
    for (int g = 0; g < G; ++g)
      kept[g] = static_cast<__mmask16>(kept[g] | (_mm512_cmpeq_epi32_mask(best, _mm512_set1_epi32(g)) & have));
  }
}

// m in 1..4 (TopKSelector::groups16_applies); false for any other m, as for a
// non-finite value: the caller then takes its row-by-row path.
inline bool group_top_dispatch(const float* z, int n, int gs, int m, float* out, float* cols) {
  switch (m) {
    case 1: return group_top_rows16<1>(z, n, gs, out, cols);
    case 2: return group_top_rows16<2>(z, n, gs, out, cols);
    case 3: return group_top_rows16<3>(z, n, gs, out, cols);
    case 4: return group_top_rows16<4>(z, n, gs, out, cols);
    default: return false;
  }
}

inline bool topk_dispatch_raw(const float* z, const float* b, int n, int k, std::int32_t* idx, float* val) {
  switch (k) {
    case 1: topk_lanes<1>(z, b, n, idx, val); return true;
    case 2: topk_lanes<2>(z, b, n, idx, val); return true;
    case 3: topk_scan<3>(z, b, n, idx, val); return true;
    case 4: topk_scan<4>(z, b, n, idx, val); return true;
    case 6: topk_scan<6>(z, b, n, idx, val); return true;
    case 8: topk_scan<8>(z, b, n, idx, val); return true;
    default: return false;
  }
}

// Returns false when k is outside the specialised range, or when the k-th best
// is -inf: the kernels pad with -inf, so such a row (only from overflowing
// scores) goes to the scalar kernel, which leaves kNoExpert where nothing is selectable.
// The values are re-read at the chosen indices: the lane reductions return one
// of several equal maxima, which for +0 and -0 need not be the chosen expert's.
inline bool topk_dispatch(const float* z, const float* b, int n, int k, std::int32_t* idx, float* val) {
  const bool done = topk_dispatch_raw(z, b, n, k, idx, val);
  if (!done || __builtin_expect(val[k - 1] == -std::numeric_limits<float>::infinity(), 0)) return false;
  for (int j = 0; j < k; ++j) val[j] = b ? z[idx[j]] + b[idx[j]] : z[idx[j]];
  return true;
}

}  // namespace moesim::simd
#endif
