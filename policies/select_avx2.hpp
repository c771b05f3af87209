#pragma once
// AVX2 top-k of 8 rows at once, for CPUs without AVX-512 (compiled wherever the
// target has AVX2, so the tests run it on AVX-512 machines too; topk_rows uses
// it only where AVX-512 is absent). It is select_avx512.hpp's topk_rows16 at
// half the width: each 8 x 8 tile (8 tokens x 8 experts) is transposed in
// registers, then every expert, in index order, enters each lane's sorted top-K
// by strict '>', exactly as the scalar kernel does, so the output is the scalar
// kernel's, bit for bit.
//
// Per expert x, with v sorted per lane: gt[j] = x > v[j]. v[0] = max(x, v[0]):
// x86's max returns its second operand when the two compare equal (+0 against
// -0 included) or x is NaN, so the old value stays and a NaN never enters.
// Below the top, v[j] takes min(v[j-1], x) where gt[j] (min returns its second
// operand, x, on ties): v[j-1] where x beat it, else x. Finiteness: x * 0 + acc
// turns NaN for good once any x is NaN or infinite.
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#include <cstddef>
#include <cstdint>
#include <limits>

namespace moesim::simd2 {

// 8 x 8 floats: r[i] lane j <-> r[j] lane i.
__attribute__((always_inline)) inline void transpose8(__m256 r[8]) {
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    r[i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x20);
    r[4 + i] = _mm256_permute2f128_ps(u[i], u[4 + i], 0x31);
  }
}

// Lanes [0, live) all ones, the rest zero: maskload's mask.
inline __m256i live_mask(int live) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(live), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

// A sorted top-K per lane, 8 rows at once, fed one expert at a time (the
// network in the header comment). Indices live in float registers as their
// bit patterns, so every select is one blend.
template <int K>
struct LaneTopK8 {
  __m256 v[K];
  __m256 vi[K];
  LaneTopK8() {
    for (int j = 0; j < K; ++j)
      v[j] = _mm256_set1_ps(-std::numeric_limits<float>::infinity()), vi[j] = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
  }
  __attribute__((always_inline)) void insert(__m256 x, __m256 xi) {
    __m256 gt[K];
    for (int j = 0; j < K; ++j) gt[j] = _mm256_cmp_ps(x, v[j], _CMP_GT_OQ);
    for (int j = K - 1; j > 0; --j) {
      v[j] = _mm256_blendv_ps(v[j], _mm256_min_ps(v[j - 1], x), gt[j]);
      vi[j] = _mm256_blendv_ps(vi[j], _mm256_blendv_ps(xi, vi[j - 1], gt[j - 1]), gt[j]);
    }
    v[0] = _mm256_max_ps(x, v[0]);
    vi[0] = _mm256_blendv_ps(vi[0], xi, gt[0]);
  }
  // Row r's K best to idx/val[r * K ..], as topk_row writes them; returns the
  // rows whose K-th best is -inf (fewer than K selectable experts).
  unsigned store(std::int32_t* idx, float* val) const {
    if constexpr (K == 1) {
      _mm256_storeu_ps(val, v[0]);
      _mm256_storeu_ps(reinterpret_cast<float*>(idx), vi[0]);
    } else if constexpr (K == 2) {  // rows interleaved: (r0 r1 ...) pairs
      auto pair_store = [](float* o, __m256 a, __m256 b) {
        const __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
        _mm256_storeu_ps(o, _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_storeu_ps(o + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
      };
      pair_store(val, v[0], v[1]);
      pair_store(reinterpret_cast<float*>(idx), vi[0], vi[1]);
    } else {
      alignas(32) float fv[K][8];
      alignas(32) std::int32_t iv[K][8];
      for (int j = 0; j < K; ++j) {
        _mm256_store_ps(fv[j], v[j]);
        _mm256_store_ps(reinterpret_cast<float*>(iv[j]), vi[j]);
      }
      for (int r = 0; r < 8; ++r)
        for (int j = 0; j < K; ++j) {
          idx[r * K + j] = iv[j][r];
          val[r * K + j] = fv[j][r];
        }
    }
    const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
    return static_cast<unsigned>(_mm256_movemask_ps(_mm256_cmp_ps(v[K - 1], ninf, _CMP_EQ_OQ)));
  }
};

// Rows z[0..8) of stride n (+ bias b[e] when non-null): idx/val (8 x K,
// row-major) as the scalar kernel would write them. Returns whether every logit
// read was finite; bit r of *short_rows is set when row r's K-th best is -inf.
template <int K>
inline bool topk_rows8(const float* z, const float* b, int n, std::int32_t* idx, float* val, unsigned* short_rows) {
  const __m256 ninf = _mm256_set1_ps(-std::numeric_limits<float>::infinity());
  const __m256 zero = _mm256_setzero_ps();
  LaneTopK8<K> best;
  __m256 col[8];
  __m256 fin[2] = {zero, zero};
  const __m256i one = _mm256_set1_epi32(1);
  // As in topk_rows16: long rows ask for the line two blocks ahead; rows of up
  // to 64 experts for this column block of the next 8 rows.
  constexpr int kAhead = 32;
  for (int e0 = 0; e0 < n; e0 += 8) {
    const bool full = n - e0 >= 8;
    const __m256i lm = live_mask(full ? 8 : n - e0);
    for (int r = 0; r < 8; ++r) {
      const float* p = z + static_cast<std::size_t>(r) * n + e0;
      // Masked lanes read as 0 (no fault past the row), which leaves the
      // finiteness sum alone; selection sees -inf there.
      const __m256 x = full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, lm);
      fin[r & 1] = _mm256_fmadd_ps(x, zero, fin[r & 1]);
      col[r] = full ? x : _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(lm));
      if (e0 + kAhead < n)
        _mm_prefetch(reinterpret_cast<const char*>(p + kAhead), _MM_HINT_T0);
      else if (n >= 16 && n <= 64 && (e0 & 15) == 0)  // one request per 64-byte line of the next block's row
        _mm_prefetch(reinterpret_cast<const char*>(z + static_cast<std::size_t>(8 + r) * n + e0), _MM_HINT_T0);
    }
    transpose8(col);
    __m256i xi = _mm256_set1_epi32(e0);
    const int width = full ? 8 : n - e0;
    for (int c = 0; c < width; ++c, xi = _mm256_add_epi32(xi, one)) {
      __m256 x = col[c];
      if (b) x = _mm256_add_ps(x, _mm256_set1_ps(b[e0 + c]));
      best.insert(x, _mm256_castsi256_ps(xi));
    }
  }
  *short_rows = best.store(idx, val);
  const __m256 f = _mm256_add_ps(fin[0], fin[1]);
  return _mm256_movemask_ps(_mm256_cmp_ps(f, f, _CMP_UNORD_Q)) == 0;
}

// topk_rows8 for k in 1..8 (false for any other k, nothing written).
inline bool topk_rows8_dispatch(const float* z, const float* b, int n, int k, std::int32_t* idx, float* val,
                                unsigned* short_rows, bool* finite) {
  switch (k) {
    case 1: *finite = topk_rows8<1>(z, b, n, idx, val, short_rows); return true;
    case 2: *finite = topk_rows8<2>(z, b, n, idx, val, short_rows); return true;
    case 3: *finite = topk_rows8<3>(z, b, n, idx, val, short_rows); return true;
    case 4: *finite = topk_rows8<4>(z, b, n, idx, val, short_rows); return true;
    case 5: *finite = topk_rows8<5>(z, b, n, idx, val, short_rows); return true;
    case 6: *finite = topk_rows8<6>(z, b, n, idx, val, short_rows); return true;
    case 7: *finite = topk_rows8<7>(z, b, n, idx, val, short_rows); return true;
    case 8: *finite = topk_rows8<8>(z, b, n, idx, val, short_rows); return true;
    default: return false;
  }
}

}  // namespace moesim::simd2
#endif
