#include "metrics/exact_sum.hpp"

#include <algorithm>
#include <bit>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace moesim {

bool served_sums_exact(const std::int32_t* ex, const float* v, std::size_t n) {
  // Fields, with subnormals and zeros counted as field 1: lo over the nonzero
  // served values, hi over all served ones.
  std::uint32_t lo = 255, hi = 0;
  std::size_t i = 0;
#if defined(__AVX512F__)
  __m512i vlo = _mm512_set1_epi32(255), vhi = _mm512_setzero_si512();
  const __m512i field = _mm512_set1_epi32(0xFF), one = _mm512_set1_epi32(1), mag = _mm512_set1_epi32(0x7FFFFFFF);
  for (; i + 16 <= n; i += 16) {
    const __mmask16 m = _mm512_cmpge_epi32_mask(_mm512_loadu_si512(ex + i), _mm512_setzero_si512());
    const __m512i b = _mm512_maskz_loadu_epi32(m, v + i);  // dropped lanes read as +0
    const __m512i f = _mm512_max_epu32(_mm512_and_si512(_mm512_srli_epi32(b, 23), field), one);
    vlo = _mm512_mask_min_epu32(vlo, _mm512_test_epi32_mask(b, mag), vlo, f);
    vhi = _mm512_max_epu32(vhi, f);
  }
  // Folded from memory: GCC 12's _mm512_reduce_min_epu32 trips -Wuninitialized.
  alignas(64) std::uint32_t l[16], h[16];
  _mm512_store_si512(l, vlo);
  _mm512_store_si512(h, vhi);
  for (int j = 0; j < 16; ++j) lo = std::min(lo, l[j]), hi = std::max(hi, h[j]);
#endif
  for (; i < n; ++i) {
    if (ex[i] < 0) continue;
    const std::uint32_t b = std::bit_cast<std::uint32_t>(v[i]), f = std::max((b >> 23) & 0xFFu, 1u);
    if (b & 0x7FFFFFFFu) lo = std::min(lo, f);
    hi = std::max(hi, f);
  }
  if (hi == 255) return false;  // an infinity or a NaN
  if (lo > hi) return true;     // every served value is zero, or none is served
  const int bits = static_cast<int>(std::bit_width(n));  // n < 2^bits
  return static_cast<int>(hi - lo) + 24 + bits <= 53;
}

}  // namespace moesim
