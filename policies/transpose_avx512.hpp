#pragma once
// In-register transposes for the AVX-512 kernels (compiled only when the target
// has AVX-512F): rows of a block become lanes, so a per-row fold runs once for
// the whole block, a row per lane.
#if defined(__AVX512F__)
#include <immintrin.h>

namespace moesim::simd {

// Full-mask forms of the intrinsics: GCC 12's unmasked ones pass an
// _mm512_undefined_ps() source that trips -Wuninitialized (GCC PR105593).
inline constexpr __mmask16 kAll = 0xFFFF;

// 16 x 16 floats: r[i] lane j <-> r[j] lane i.
__attribute__((always_inline)) inline void transpose16(__m512 r[16]) {
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

// 8 x 8 doubles: k[i] lane j <-> k[j] lane i (pairs of rows, then pairs of
// pairs, then halves; full-mask forms, as kAll's comment says).
__attribute__((always_inline)) inline void transpose8_pd(__m512d k[8]) {
  __m512d a[8], b[8];
  for (int r = 0; r < 8; r += 2) {
    a[r] = _mm512_mask_unpacklo_pd(k[r], 0xFF, k[r], k[r + 1]);
    a[r + 1] = _mm512_mask_unpackhi_pd(k[r], 0xFF, k[r], k[r + 1]);
  }
  for (int r = 0; r < 8; r += 4)
    for (int q = 0; q < 2; ++q) {
      b[r + q] = _mm512_mask_shuffle_f64x2(a[r + q], 0xFF, a[r + q], a[r + 2 + q], 0x88);
      b[r + 2 + q] = _mm512_mask_shuffle_f64x2(a[r + q], 0xFF, a[r + q], a[r + 2 + q], 0xDD);
    }
  for (int q = 0; q < 4; ++q) {
    k[q] = _mm512_mask_shuffle_f64x2(b[q], 0xFF, b[q], b[4 + q], 0x88);
    k[4 + q] = _mm512_mask_shuffle_f64x2(b[q], 0xFF, b[q], b[4 + q], 0xDD);
  }
}

}  // namespace moesim::simd
#endif
