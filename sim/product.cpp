#include "sim/product.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#include <immintrin.h>
#endif

namespace moesim {

namespace {

#if defined(__AVX512F__)
// R tokens x NB vectors of 16 experts, all accumulators in registers: per q, NB
// loads of the transposed weights and R broadcasts feed R * NB independent FMAs.
// last: the lanes of the final vector that hold real experts.
template <int R, int NB>
void tile(const float* x, int d, const float* wt, std::size_t ld_wt, float* z, std::size_t ld_z, __mmask16 last) {
  __m512 acc[R][NB];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NB; ++v) acc[r][v] = _mm512_setzero_ps();
  for (int q = 0; q < d; ++q) {
    __m512 wv[NB];
    for (int v = 0; v < NB; ++v) wv[v] = _mm512_loadu_ps(wt + static_cast<std::size_t>(q) * ld_wt + 16 * v);
    for (int r = 0; r < R; ++r) {
      const __m512 xb = _mm512_set1_ps(x[static_cast<std::size_t>(r) * d + q]);
      for (int v = 0; v < NB; ++v) acc[r][v] = _mm512_fmadd_ps(xb, wv[v], acc[r][v]);
    }
  }
  for (int r = 0; r < R; ++r) {
    float* zr = z + static_cast<std::size_t>(r) * ld_z;
    for (int v = 0; v + 1 < NB; ++v) _mm512_storeu_ps(zr + 16 * v, acc[r][v]);
    _mm512_mask_storeu_ps(zr + 16 * (NB - 1), last, acc[r][NB - 1]);
  }
}

// All T tokens against one block of NB vectors: six tokens at a time (6 x 4
// accumulators and 4 weight vectors fit the 32 registers), then the rest.
template <int NB>
void block(const float* x, int T, int d, const float* wt, std::size_t ld_wt, float* z, std::size_t ld_z,
           __mmask16 last) {
  constexpr int R = 6;
  int t = 0;
  for (; t + R <= T; t += R)
    tile<R, NB>(x + static_cast<std::size_t>(t) * d, d, wt, ld_wt, z + static_cast<std::size_t>(t) * ld_z, ld_z,
                last);
  for (; t < T; ++t)
    tile<1, NB>(x + static_cast<std::size_t>(t) * d, d, wt, ld_wt, z + static_cast<std::size_t>(t) * ld_z, ld_z,
                last);
}
#elif defined(__AVX2__) && defined(__FMA__)
// The same tiles at 8 lanes for AVX2's 16 registers: R = 6 tokens x NB = 2
// vectors (12 accumulators, 2 weight vectors, a broadcast). The FMAs run in the
// same order per logit as the scalar loop, so the bits are the same.
template <int R, int NB>
void tile8(const float* x, int d, const float* wt, std::size_t ld_wt, float* z, std::size_t ld_z, int tail) {
  __m256 acc[R][NB];
  for (int r = 0; r < R; ++r)
    for (int v = 0; v < NB; ++v) acc[r][v] = _mm256_setzero_ps();
  for (int q = 0; q < d; ++q) {
    __m256 wv[NB];
    for (int v = 0; v < NB; ++v) wv[v] = _mm256_loadu_ps(wt + static_cast<std::size_t>(q) * ld_wt + 8 * v);
    for (int r = 0; r < R; ++r) {
      const __m256 xb = _mm256_set1_ps(x[static_cast<std::size_t>(r) * d + q]);
      for (int v = 0; v < NB; ++v) acc[r][v] = _mm256_fmadd_ps(xb, wv[v], acc[r][v]);
    }
  }
  const __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  for (int r = 0; r < R; ++r) {
    float* zr = z + static_cast<std::size_t>(r) * ld_z;
    for (int v = 0; v + 1 < NB; ++v) _mm256_storeu_ps(zr + 8 * v, acc[r][v]);
    _mm256_maskstore_ps(zr + 8 * (NB - 1), last, acc[r][NB - 1]);
  }
}

// tile8<6, 2> with named accumulators: with the array, GCC 12 at -O3 (its loop
// peeling) kept every accumulator in a register and stored it to the stack on
// every q as well, 12 stores per 12 FMAs (at -O2 it left them in memory).
void tile8_6x2(const float* x, int d, const float* wt, std::size_t ld_wt, float* z, std::size_t ld_z, int tail) {
  __m256 a0 = _mm256_setzero_ps(), b0 = a0, a1 = a0, b1 = a0, a2 = a0, b2 = a0;
  __m256 a3 = a0, b3 = a0, a4 = a0, b4 = a0, a5 = a0, b5 = a0;
  const auto ud = static_cast<std::size_t>(d);
  for (int q = 0; q < d; ++q) {
    const float* w = wt + static_cast<std::size_t>(q) * ld_wt;
    const __m256 w0 = _mm256_loadu_ps(w), w1 = _mm256_loadu_ps(w + 8);
    const float* xq = x + q;
    __m256 xb = _mm256_set1_ps(xq[0]);
    a0 = _mm256_fmadd_ps(xb, w0, a0), b0 = _mm256_fmadd_ps(xb, w1, b0);
    xb = _mm256_set1_ps(xq[ud]);
    a1 = _mm256_fmadd_ps(xb, w0, a1), b1 = _mm256_fmadd_ps(xb, w1, b1);
    xb = _mm256_set1_ps(xq[2 * ud]);
    a2 = _mm256_fmadd_ps(xb, w0, a2), b2 = _mm256_fmadd_ps(xb, w1, b2);
    xb = _mm256_set1_ps(xq[3 * ud]);
    a3 = _mm256_fmadd_ps(xb, w0, a3), b3 = _mm256_fmadd_ps(xb, w1, b3);
    xb = _mm256_set1_ps(xq[4 * ud]);
    a4 = _mm256_fmadd_ps(xb, w0, a4), b4 = _mm256_fmadd_ps(xb, w1, b4);
    xb = _mm256_set1_ps(xq[5 * ud]);
    a5 = _mm256_fmadd_ps(xb, w0, a5), b5 = _mm256_fmadd_ps(xb, w1, b5);
  }
  const __m256i last = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256 lo[6] = {a0, a1, a2, a3, a4, a5}, hi[6] = {b0, b1, b2, b3, b4, b5};
  for (int r = 0; r < 6; ++r) {
    float* zr = z + static_cast<std::size_t>(r) * ld_z;
    _mm256_storeu_ps(zr, lo[r]);
    _mm256_maskstore_ps(zr + 8, last, hi[r]);
  }
}

template <int NB>
void block8(const float* x, int T, int d, const float* wt, std::size_t ld_wt, float* z, std::size_t ld_z, int tail) {
  constexpr int R = 6;
  int t = 0;
  for (; t + R <= T; t += R)
    if constexpr (NB == 2)
      tile8_6x2(x + static_cast<std::size_t>(t) * d, d, wt, ld_wt, z + static_cast<std::size_t>(t) * ld_z, ld_z, tail);
    else
      tile8<R, NB>(x + static_cast<std::size_t>(t) * d, d, wt, ld_wt, z + static_cast<std::size_t>(t) * ld_z, ld_z, tail);
  for (; t < T; ++t)
    tile8<1, NB>(x + static_cast<std::size_t>(t) * d, d, wt, ld_wt, z + static_cast<std::size_t>(t) * ld_z, ld_z, tail);
}
#endif

// W (E x d) transposed into scratch (d x Ep), experts padded to a multiple of
// the vector width with zeros (their logits are computed but never stored).
[[maybe_unused]] std::size_t transpose_padded(const float* w, int E, int d, int width, std::vector<float>& scratch) {
  const auto ld = static_cast<std::size_t>((E + width - 1) / width * width);
  scratch.assign(static_cast<std::size_t>(d) * ld, 0.0f);
  for (int e = 0; e < E; ++e)
    for (int q = 0; q < d; ++q) scratch[static_cast<std::size_t>(q) * ld + e] = w[static_cast<std::size_t>(e) * d + q];
  return ld;
}

}  // namespace

void gate_logits(const float* x, int T, int d, const float* w, int E, float* z, std::vector<float>& scratch) {
#if defined(__AVX512F__)
  const auto ld = transpose_padded(w, E, d, 16, scratch);
  const int Ep = static_cast<int>(ld);
  for (int e0 = 0; e0 < E; e0 += 64) {
    const int nb = std::min(4, (Ep - e0) / 16);
    const int tail = E - (e0 + 16 * (nb - 1));  // experts in the block's last vector, 1 .. 16
    const auto last = static_cast<__mmask16>(tail >= 16 ? 0xFFFFu : (1u << tail) - 1u);
    const float* wt = scratch.data() + e0;
    float* zb = z + e0;
    const auto ldz = static_cast<std::size_t>(E);
    switch (nb) {
      case 4: block<4>(x, T, d, wt, ld, zb, ldz, last); break;
      case 3: block<3>(x, T, d, wt, ld, zb, ldz, last); break;
      case 2: block<2>(x, T, d, wt, ld, zb, ldz, last); break;
      default: block<1>(x, T, d, wt, ld, zb, ldz, last); break;
    }
  }
#elif defined(__AVX2__) && defined(__FMA__)
  const auto ld = transpose_padded(w, E, d, 8, scratch);
  const int Ep = static_cast<int>(ld);
  for (int e0 = 0; e0 < E; e0 += 16) {
    const int nb = std::min(2, (Ep - e0) / 8);
    const int tail = E - (e0 + 8 * (nb - 1));  // experts in the block's last vector, 1 .. 8 (or more: all)
    const float* wt = scratch.data() + e0;
    float* zb = z + e0;
    const auto ldz = static_cast<std::size_t>(E);
    if (nb == 2)
      block8<2>(x, T, d, wt, ld, zb, ldz, tail);
    else
      block8<1>(x, T, d, wt, ld, zb, ldz, tail);
  }
#else
  (void)scratch;
  for (int t = 0; t < T; ++t)
    for (int e = 0; e < E; ++e) {
      float acc = 0.0f;
      for (int q = 0; q < d; ++q)
        acc = std::fma(x[static_cast<std::size_t>(t) * d + q], w[static_cast<std::size_t>(e) * d + q], acc);
      z[static_cast<std::size_t>(t) * E + e] = acc;
    }
#endif
}

}  // namespace moesim
