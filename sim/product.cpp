#include "sim/product.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>

#if defined(__AVX512F__)
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
#endif

}  // namespace

void gate_logits(const float* x, int T, int d, const float* w, int E, float* z, std::vector<float>& scratch) {
#if defined(__AVX512F__)
  const int Ep = (E + 15) / 16 * 16;
  const auto ld = static_cast<std::size_t>(Ep);
  scratch.assign(static_cast<std::size_t>(d) * ld, 0.0f);  // padding experts are 0, never stored
  for (int e = 0; e < E; ++e)
    for (int q = 0; q < d; ++q) scratch[static_cast<std::size_t>(q) * ld + e] = w[static_cast<std::size_t>(e) * d + q];
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
