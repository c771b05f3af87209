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

namespace moesim::simd {

// Full-mask forms of the intrinsics: GCC 12's unmasked ones pass an
// _mm512_undefined_ps() source that trips -Wuninitialized (GCC PR105593).
inline constexpr __mmask16 kAll = 0xFFFF;
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
    for (int j = 0; j < K; ++j) {
      const __m512 hi = vmax(m[j], v);
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
inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_mask_unpacklo_ps(r[2 * i], kAll, r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_mask_unpackhi_ps(r[2 * i], kAll, r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; ++i) {
    r[4 * i + 0] = _mm512_mask_shuffle_ps(t[4 * i], kAll, t[4 * i], t[4 * i + 2], 0x44);
    r[4 * i + 1] = _mm512_mask_shuffle_ps(t[4 * i], kAll, t[4 * i], t[4 * i + 2], 0xEE);
    r[4 * i + 2] = _mm512_mask_shuffle_ps(t[4 * i + 1], kAll, t[4 * i + 1], t[4 * i + 3], 0x44);
    r[4 * i + 3] = _mm512_mask_shuffle_ps(t[4 * i + 1], kAll, t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int h = 0; h < 2; ++h)
    for (int i = 0; i < 4; ++i) {
      t[8 * h + i] = _mm512_mask_shuffle_f32x4(r[8 * h + i], kAll, r[8 * h + i], r[8 * h + 4 + i], 0x88);
      t[8 * h + 4 + i] = _mm512_mask_shuffle_f32x4(r[8 * h + i], kAll, r[8 * h + i], r[8 * h + 4 + i], 0xDD);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_mask_shuffle_f32x4(t[i], kAll, t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_mask_shuffle_f32x4(t[i], kAll, t[i], t[8 + i], 0xDD);
  }
}

// Rows z[0..16) of stride n (+ bias): idx/val (16 x K, row-major) as the scalar
// kernel would write them. Returns whether every logit read was finite (the
// caller's check_finite then has nothing to find).
template <int K>
inline bool topk_rows16(const float* z, const float* b, int n, std::int32_t* idx, float* val) {
  const __m512 ninf = _mm512_set1_ps(-std::numeric_limits<float>::infinity());
  __m512 v[K];
  __m512i vi[K];
  for (int j = 0; j < K; ++j) v[j] = ninf, vi[j] = _mm512_set1_epi32(-1);
  __m512 col[16];
#if !defined(__AVX512DQ__)
  const __m512 fmax = _mm512_set1_ps(std::numeric_limits<float>::max());
#endif
  __mmask16 bad = 0;
  for (int e0 = 0; e0 < n; e0 += 16) {
    const __mmask16 tm = tail_mask(n, e0);
    for (int r = 0; r < 16; ++r) {
      col[r] = _mm512_mask_loadu_ps(ninf, tm, z + static_cast<std::size_t>(r) * n + e0);
#if defined(__AVX512DQ__)
      bad |= _mm512_mask_fpclass_ps_mask(tm, col[r], 0x99);  // QNaN, +inf, -inf, SNaN: one instruction
#else
      bad |= _mm512_mask_cmp_ps_mask(tm, _mm512_abs_ps(col[r]), fmax, _CMP_NLE_UQ);  // NaN or infinite
#endif
    }
    transpose16(col);
    const int m = n - e0 < 16 ? n - e0 : 16;
    for (int c = 0; c < m; ++c) {
      __m512 x = col[c];
      if (b) x = _mm512_add_ps(x, _mm512_set1_ps(b[e0 + c]));
      const __m512i xi = _mm512_set1_epi32(e0 + c);
      // v is sorted per lane, so x > v[j] holds for a suffix of j: the new value
      // goes to the first such j and the rest shift down by one.
      __mmask16 gt[K];
      for (int j = 0; j < K; ++j) gt[j] = _mm512_cmp_ps_mask(x, v[j], _CMP_GT_OQ);
      for (int j = K - 1; j > 0; --j) {
        const __m512 in = _mm512_mask_mov_ps(x, gt[j - 1], v[j - 1]);
        const __m512i ii = _mm512_mask_mov_epi32(xi, gt[j - 1], vi[j - 1]);
        v[j] = _mm512_mask_mov_ps(v[j], gt[j], in);
        vi[j] = _mm512_mask_mov_epi32(vi[j], gt[j], ii);
      }
      v[0] = _mm512_mask_mov_ps(v[0], gt[0], x);
      vi[0] = _mm512_mask_mov_epi32(vi[0], gt[0], xi);
    }
  }
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
  return bad == 0;
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
inline bool topk_dispatch(const float* z, const float* b, int n, int k, std::int32_t* idx, float* val) {
  const bool done = topk_dispatch_raw(z, b, n, k, idx, val);
  return done && __builtin_expect(val[k - 1] != -std::numeric_limits<float>::infinity(), 1);
}

}  // namespace moesim::simd
#endif
