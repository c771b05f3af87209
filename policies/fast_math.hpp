#pragma once
// Branch-free exp and ln the compiler vectorises (std::exp is an opaque libm call
// without -ffast-math). exp_fast: relative error < 2e-7 on [-87, 88] (Cephes
// expf polynomial), within two float ulps of std::exp; it feeds selection
// scores and softmax denominators, in loops that vectorise. One value at a time
// (a combine weight's numerator) glibc's table-driven expf is faster than this
// chain of dependent multiply-adds, so those stay std::exp.
#include <bit>
#include <initializer_list>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "policies/transpose_avx512.hpp"

namespace moesim {

using f32x16 = float __attribute__((vector_size(64)));
using i32x16 = std::int32_t __attribute__((vector_size(64)));
using f64x8 = double __attribute__((vector_size(64)));
using f32x8 = float __attribute__((vector_size(32)));
using f64x4 = double __attribute__((vector_size(32)));

// Cephes expf: n = round(x / ln2), r = x - n ln2 (in two parts, so the reduction
// stays exact), exp(x) = 2^n * (1 + r + r^2 p(r)); 0 below -87.34 (where float
// exp turns subnormal), 2^127-ish above 88. One template for the scalar
// and the 16-lane form, so both run the same operations (tests compare them).
// n is rounded by the 1.5 * 2^23 shift: std::floor is a libm call here (GCC
// inlines it only without -ftrapping-math), which kept every loop scalar.
// kCapped: the caller promises x <= 88 (a softmax's z - max <= 0), where the upper
// clamp is the identity, so it is skipped; the result is bitwise the same.
template <class F, class I, bool kCapped = false>
inline F exp_fast_t(F x) {
  auto select = [](auto take_a, F a, F b) {
    return std::bit_cast<F>((std::bit_cast<I>(a) & take_a) | (std::bit_cast<I>(b) & ~take_a));
  };
  const F lo = F{} - 87.0f, hi = F{} + 88.0f;  // plain compares: std::fmin/fmax are libm calls
  const F tiny = F{} - 87.33655f;                // below: 0, as the float exp underflows (subnormals flushed)
  const F zero{};
  auto under = x < tiny;
#if defined(__AVX512F__)
  // 16 lanes: the clamps as vmaxps/vminps, which keep x for NaN exactly as the
  // compares below do (max(lo, x) = lo > x ? lo : x), and the underflow as a
  // mask register; the bitwise selects cost GCC two and three instructions.
  constexpr bool kZmm = std::is_same_v<F, f32x16>;
  [[maybe_unused]] __mmask16 under_k = 0;
  if constexpr (kZmm) {
    const __m512 v = reinterpret_cast<__m512>(x);
    under_k = _mm512_cmp_ps_mask(v, _mm512_set1_ps(-87.33655f), _CMP_LT_OQ);
    __m512 c = _mm512_max_ps(_mm512_set1_ps(-87.0f), v);
    if constexpr (!kCapped) c = _mm512_min_ps(_mm512_set1_ps(88.0f), c);
    x = reinterpret_cast<F>(c);
  } else
#endif
  if constexpr (std::is_same_v<F, float>) {
    x = x < lo ? lo : x;
    if constexpr (!kCapped) x = x > hi ? hi : x;
  } else {
    x = select(x < lo, lo, x);
    if constexpr (!kCapped) x = select(x > hi, hi, x);
  }
  const F t = x * 1.44269504088896341f + 12582912.0f;
  const F n = t - 12582912.0f;
  const F r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  F p = r * 1.9875691500e-4f + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const F y = p * r * r + r + 1.0f;
  // n read from t's mantissa (t = 1.5 * 2^23 + n, ulp 1): the same integer as a
  // float-to-int conversion for every clamped x, and no undefined behaviour for
  // NaN, whose garbage exponent only multiplies a NaN y.
#if defined(__AVX512F__)
  // y * 2^n in one vscalefps: n is in [-126, 127] after the clamps, where 2^n is
  // the normal float the exponent bits below build, so the one rounding of the
  // product is the same; three integer operations fewer on the loop's two ports.
  if constexpr (kZmm)
    return reinterpret_cast<F>(_mm512_maskz_scalef_ps(static_cast<__mmask16>(~under_k), reinterpret_cast<__m512>(y),
                                                      reinterpret_cast<__m512>(n)));
#endif
  const I ni = std::bit_cast<I>(t) - std::bit_cast<I>(zero + 12582912.0f);
  const F r2 = y * std::bit_cast<F>(static_cast<I>((ni + 127) << 23));
  if constexpr (std::is_same_v<F, float>)
    return under ? zero : r2;
  else
    return select(under, zero, r2);
}


inline float exp_fast(float x) { return exp_fast_t<float, std::int32_t>(x); }

// Eight floats widened to double lanes, exactly. One vcvtps2pd: GCC 12 lowers
// __builtin_convertvector to f64x8 as two 4-lane converts, an extract and an
// insert, and in row_sum_exp that was a third of the loop.
inline f64x8 widen_f64x8(f32x8 a) {
#if defined(__AVX512F__)
  return reinterpret_cast<f64x8>(_mm512_cvtps_pd(reinterpret_cast<__m256>(a)));
#elif defined(__AVX2__)
  // Two vcvtps2pd: GCC's own lowering of this without AVX-512 moved lanes one
  // by one through general registers.
  const __m256d lo = _mm256_cvtps_pd(_mm256_castps256_ps128(std::bit_cast<__m256>(a)));
  const __m256d hi = _mm256_cvtps_pd(_mm256_extractf128_ps(std::bit_cast<__m256>(a), 1));
  return __builtin_shufflevector(std::bit_cast<f64x4>(lo), std::bit_cast<f64x4>(hi), 0, 1, 2, 3, 4, 5, 6, 7);
#else
  return __builtin_convertvector(a, f64x8);
#endif
}

#if !defined(__AVX512F__) && defined(__AVX2__)
// Without AVX-512, GCC lowers the compares of 64-byte vectors to one scalar
// compare and branch per lane (half of loss_free's time on an AVX2 EPYC), so
// the 16 lanes run as two native 8-lane halves: the same operations per lane.
using i32x8 = std::int32_t __attribute__((vector_size(32)));
template <bool kCapped>
inline f32x16 exp_fast16_halves(f32x16 x) {
  const f32x8 a = exp_fast_t<f32x8, i32x8, kCapped>(__builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7));
  const f32x8 b = exp_fast_t<f32x8, i32x8, kCapped>(__builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15));
  return __builtin_shufflevector(a, b, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
}
inline f32x16 exp_fast16(f32x16 x) { return exp_fast16_halves<false>(x); }
inline f32x16 exp_fast16_capped(f32x16 x) { return exp_fast16_halves<true>(x); }
#else
inline f32x16 exp_fast16(f32x16 x) { return exp_fast_t<f32x16, i32x16>(x); }
// exp_fast16 for x <= 88 only (bitwise equal there): the exps of a softmax row.
inline f32x16 exp_fast16_capped(f32x16 x) { return exp_fast_t<f32x16, i32x16, true>(x); }
#endif

// std::exp(float) of 16 lanes, bitwise: glibc's expf (2.28 and later,
// sysdeps/ieee754/flt-32/e_expf.c, the FMA build x86-64 CPUs with AVX2 and FMA
// run), vectorised with its own operations in its own order. In double:
// z = x * 32/ln2; k = round(z) by the 1.5 * 2^52 shift, fused with the
// multiply; r = z - k, fused; 2^(k/32) from a 32-entry table plus k's high bits
// in the exponent; exp = 2^(k/32) * (C0 r^3 + C1 r^2 + C2 r + 1), rounded once to
// float. Lanes with |x| >= 88 or NaN, glibc's special path, go to std::exp.
// kExpfTable[i]: the bits of 2^(i/32) minus i << 47 (a test rederives them).
inline constexpr std::uint64_t kExpfTable[32] = {
    0x3ff0000000000000, 0x3fefd9b0d3158574, 0x3fefb5586cf9890f, 0x3fef9301d0125b51, 0x3fef72b83c7d517b,
    0x3fef54873168b9aa, 0x3fef387a6e756238, 0x3fef1e9df51fdee1, 0x3fef06fe0a31b715, 0x3feef1a7373aa9cb,
    0x3feedea64c123422, 0x3feece086061892d, 0x3feebfdad5362a27, 0x3feeb42b569d4f82, 0x3feeab07dd485429,
    0x3feea47eb03a5585, 0x3feea09e667f3bcd, 0x3fee9f75e8ec5f74, 0x3feea11473eb0187, 0x3feea589994cce13,
    0x3feeace5422aa0db, 0x3feeb737b0cdc5e5, 0x3feec49182a3f090, 0x3feed503b23e255d, 0x3feee89f995ad3ad,
    0x3feeff76f2fb5e47, 0x3fef199bdd85529c, 0x3fef3720dcef9069, 0x3fef5818dcfba487, 0x3fef7c97337b9b5f,
    0x3fefa4afa2a490da, 0x3fefd0765b6e4540};

#if defined(__AVX512F__)
// Eight lanes of the fast path (every |x| < 88), in glibc's order of operations.
inline __m256 expf_glibc8(__m256 x) {
  const __m512d xd = _mm512_cvtps_pd(x);
  const __m512d inv_ln2_n = _mm512_set1_pd(0x1.71547652b82fep+5), shift = _mm512_set1_pd(0x1.8p+52);
  const __m512d kd_shifted = _mm512_fmadd_pd(inv_ln2_n, xd, shift);
  const __m512i ki = _mm512_castpd_si512(kd_shifted);
  const __m512d kd = _mm512_sub_pd(kd_shifted, shift);
  const __m512d r = _mm512_fmsub_pd(inv_ln2_n, xd, kd);
  const __m512i idx = _mm512_and_si512(ki, _mm512_set1_epi64(31));
  auto part = [](int i) { return _mm512_loadu_si512(kExpfTable + i); };
  const __m512i lo = _mm512_permutex2var_epi64(part(0), idx, part(8));
  const __m512i hi = _mm512_permutex2var_epi64(part(16), idx, part(24));
  const __m512i t = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(idx, _mm512_set1_epi64(16)), lo, hi);
  const __m512d s = _mm512_castsi512_pd(_mm512_add_epi64(t, _mm512_slli_epi64(ki, 47)));
  const __m512d z = _mm512_fmadd_pd(r, _mm512_set1_pd(0x1.c6af84b912394p-20), _mm512_set1_pd(0x1.ebfce50fac4f3p-13));
  const __m512d r2 = _mm512_mul_pd(r, r);
  __m512d y = _mm512_fmadd_pd(r, _mm512_set1_pd(0x1.62e42ff0c52d6p-6), _mm512_set1_pd(1.0));
  y = _mm512_fmadd_pd(z, r2, y);
  return _mm512_cvtpd_ps(_mm512_mul_pd(y, s));
}
#endif

inline f32x16 expf16(f32x16 x) {
#if defined(__AVX512F__)
  const __m512 v = reinterpret_cast<__m512>(x);
  // glibc's test: the top 12 bits of |x| below those of 88.0f.
  const __m512i top = _mm512_and_si512(_mm512_srli_epi32(_mm512_castps_si512(v), 20), _mm512_set1_epi32(0x7ff));
  const __mmask16 special = _mm512_cmpgt_epi32_mask(top, _mm512_set1_epi32(0x42a));
  const __m256 a = expf_glibc8(_mm512_castps512_ps256(v));
  const __m256 b = expf_glibc8(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
  f32x16 y = reinterpret_cast<f32x16>(
      _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(a)), _mm256_castps_pd(b), 1)));
  if (special)
    for (int l = 0; l < 16; ++l)
      if (special >> l & 1) y[l] = std::exp(x[l]);
  return y;
#else
  for (int l = 0; l < 16; ++l) x[l] = std::exp(x[l]);
  return x;
#endif
}

// exp(x) in double for x <= 0, 8 lanes: n = round(x / ln2), r = x - n ln2 in two
// parts, exp(r) by its Taylor series to r^12 (|r| <= ln2/2: relative error
// below 1e-15), times 2^n built from the exponent bits (x below -1022 ln2 gives 0).
using i64x8 = std::int64_t __attribute__((vector_size(64)));
inline f64x8 exp_neg_d8(f64x8 x) {
  const i64x8 tiny = x < -708.0;
  // Clamped first, so the integer conversion below never sees an out-of-range n.
  x = std::bit_cast<f64x8>((std::bit_cast<i64x8>(x) & ~tiny) | (std::bit_cast<i64x8>(f64x8{} - 708.0) & tiny));
  const f64x8 n = (x * 1.4426950408889634 + 6755399441055744.0) - 6755399441055744.0;
  const f64x8 r = (x - n * 6.93147180369123816490e-01) - n * 1.90821492927058770002e-10;
  f64x8 p = r * (1.0 / 479001600) + 1.0 / 39916800;
  for (double c : {1.0 / 3628800, 1.0 / 362880, 1.0 / 40320, 1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5,
                   1.0, 1.0})
    p = p * r + c;
  const i64x8 e = (__builtin_convertvector(n, i64x8) + 1023) << 52;
  return std::bit_cast<f64x8>(std::bit_cast<i64x8>(p * std::bit_cast<f64x8>(e)) & ~tiny);
}

// ln x for a positive normal float: x = 2^e * m with m in [sqrt(1/2), sqrt(2)),
// ln m = 2 atanh(f / (2 + f)), f = m - 1, by its odd series to the 9th power
// (relative error below 1e-6). Branch-free, so bulk loops over it vectorise.
inline float ln_fast(float x) {
  const std::uint32_t ix = std::bit_cast<std::uint32_t>(x) + (0x3f800000u - 0x3f3504f3u);
  const float e = static_cast<float>(static_cast<int>(ix >> 23) - 127);
  const float f = std::bit_cast<float>((ix & 0x007fffffu) + 0x3f3504f3u) - 1.0f;
  const float s = f / (2.0f + f);
  const float z = s * s;
  return e * 0.693147180559945f + 2.0f * s * (1.0f + z * (1.0f / 3 + z * (1.0f / 5 + z * (1.0f / 7 + z * (1.0f / 9)))));
}

// Row reductions over 16 lanes in a fixed order (lane l takes e = l mod 16,
// then lanes 0..15, then the tail), in GCC vector types so they vectorise
// without -ffast-math or the SLP vectoriser and give the same bits on every build.
template <bool Max>
inline float row_extreme(const float* z, int n) {
  auto better = [](auto a, auto b) {
    if constexpr (Max) return a > b;
    else return a < b;
  };
  float r = z[0];
  int e = 0;
  if (n >= 16) {
#if !defined(__AVX512F__) && defined(__AVX2__)
    // Lanes 0-7 and 8-15 as two native halves (GCC turns a 64-byte compare into
    // 16 scalar ones without AVX-512): the same fold per lane.
    using h32 = std::int32_t __attribute__((vector_size(32)));
    f32x8 m0, m1;
    std::memcpy(&m0, z, sizeof m0);
    std::memcpy(&m1, z + 8, sizeof m1);
    for (e = 16; e + 16 <= n; e += 16) {
      f32x8 v0, v1;
      std::memcpy(&v0, z + e, sizeof v0);
      std::memcpy(&v1, z + e + 8, sizeof v1);
      const h32 t0 = better(v0, m0), t1 = better(v1, m1);
      m0 = std::bit_cast<f32x8>((std::bit_cast<h32>(v0) & t0) | (std::bit_cast<h32>(m0) & ~t0));
      m1 = std::bit_cast<f32x8>((std::bit_cast<h32>(v1) & t1) | (std::bit_cast<h32>(m1) & ~t1));
    }
    for (int l = 0; l < 8; ++l) r = better(m0[l], r) ? m0[l] : r;
    for (int l = 0; l < 8; ++l) r = better(m1[l], r) ? m1[l] : r;
#else
    f32x16 m;
    std::memcpy(&m, z, sizeof m);
    for (e = 16; e + 16 <= n; e += 16) {
      f32x16 v;
      std::memcpy(&v, z + e, sizeof v);
      const i32x16 take = better(v, m);
      m = std::bit_cast<f32x16>((std::bit_cast<i32x16>(v) & take) | (std::bit_cast<i32x16>(m) & ~take));
    }
    for (int l = 0; l < 16; ++l) r = better(m[l], r) ? m[l] : r;
#endif
  }
  for (; e < n; ++e) r = better(z[e], r) ? z[e] : r;
  return r;
}
inline float row_max(const float* z, int n) { return row_extreme<true>(z, n); }
inline float row_min(const float* z, int n) { return row_extreme<false>(z, n); }

// sum_e exp(z[e] - m) with exp_fast, accumulated in double: relative error
// below 2e-7 (each term's), and >= 1 whenever m is the row's maximum. Needs
// z[e] - m <= 88 for every e (every caller passes the row's maximum).
// With kStore, each exp(z[e] - m) it adds is also written to out[e]: a
// softmax's numerators without a second pass of exps.
template <bool kStore>
inline double row_sum_exp_t(const float* z, int n, float m, float* out) {
  int e = 0;
#if !defined(__AVX512F__) && defined(__AVX2__)
  // The same sums in native 4-lane quarters (lanes 0-3, 4-7 of lo; 8-11, 12-15
  // of hi), added in the same tree: GCC kept 64-byte accumulators in memory.
  f64x4 l0 = {}, l1 = {}, h0 = {}, h1 = {};
  for (; e + 16 <= n; e += 16) {
    f32x16 v;
    std::memcpy(&v, z + e, sizeof v);
    const f32x16 x = exp_fast16_capped(v - m);
    if constexpr (kStore) std::memcpy(out + e, &x, sizeof x);
    const __m256 a = std::bit_cast<__m256>(__builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7));
    const __m256 b = std::bit_cast<__m256>(__builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15));
    l0 += std::bit_cast<f64x4>(_mm256_cvtps_pd(_mm256_castps256_ps128(a)));
    l1 += std::bit_cast<f64x4>(_mm256_cvtps_pd(_mm256_extractf128_ps(a, 1)));
    h0 += std::bit_cast<f64x4>(_mm256_cvtps_pd(_mm256_castps256_ps128(b)));
    h1 += std::bit_cast<f64x4>(_mm256_cvtps_pd(_mm256_extractf128_ps(b, 1)));
  }
  const f64x4 q = (l0 + h0) + (l1 + h1);
#else
  f64x8 lo = {}, hi = {};
  for (; e + 16 <= n; e += 16) {
    f32x16 v;
    std::memcpy(&v, z + e, sizeof v);
    const f32x16 x = exp_fast16_capped(v - m);
    if constexpr (kStore) std::memcpy(out + e, &x, sizeof x);
    // Halves by a register shuffle (a memcpy of a vector's half goes through the stack).
    const f32x8 a = __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7);
    const f32x8 b = __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
    lo += widen_f64x8(a);
    hi += widen_f64x8(b);
  }
  // Lanes folded pairwise (a fixed tree: 4 dependent adds instead of 16).
  const f64x8 v = lo + hi;
  const f64x4 q = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
#endif
  double s = (q[0] + q[2]) + (q[1] + q[3]);
  for (; e < n; ++e) {
    const float x = exp_fast(z[e] - m);
    if constexpr (kStore) out[e] = x;
    s += static_cast<double>(x);
  }
  return s;
}
inline double row_sum_exp(const float* z, int n, float m) { return row_sum_exp_t<false>(z, n, m, nullptr); }
// row_sum_exp, bitwise, that also writes out[e] = exp_fast(z[e] - m).
inline double row_sum_exp_into(const float* z, int n, float m, float* out) { return row_sum_exp_t<true>(z, n, m, out); }

// row_sum_exp of 16 consecutive rows of width n given each row's maximum (or
// more), bitwise: s[r] = row_sum_exp(z + r n, n, m[r]). Why: each row's sum
// ends in a tree of adds across its lanes; here the 16 rows' lane sums are
// transposed in registers so the tree runs once, a row per lane, in the same
// order, and the exp's constants stay in registers across the rows. The n % 16
// tail columns, which row_sum_exp adds one by one after its tree, are added
// the same way with a row per lane (a column gathered from the 16 rows), so
// narrow rows (E = 8: no body at all) are vectorised too.
inline void row_sum_exp16(const float* z, int n, const float* m, double* s) {
#if defined(__AVX512F__)
  const int body = n - n % 16;
  __m512d sums[16];  // each row's lo + hi of row_sum_exp
  for (int r = 0; r < 16; ++r) {
    const float* zr = z + static_cast<std::size_t>(r) * n;
    const float mr = m[r];  // a scalar operand is one broadcast (a lane loop was 16 masked ones)
    f64x8 lo = {}, hi = {};
    for (int e = 0; e < body; e += 16) {
      f32x16 v;
      std::memcpy(&v, zr + e, sizeof v);
      const f32x16 x = exp_fast16_capped(v - mr);
      lo += widen_f64x8(__builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7));
      hi += widen_f64x8(__builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15));
    }
    sums[r] = std::bit_cast<__m512d>(lo + hi);
  }
  // row_sum_exp's tree, (q0 + q2) + (q1 + q3) with q_j = v_j + v_{j+4}, 8 rows a vector.
  __m512d tot[2];
  for (int half = 0; half < 2; ++half) {
    __m512d* k = sums + 8 * half;
    simd::transpose8_pd(k);
    const __m512d q0 = _mm512_add_pd(k[0], k[4]), q1 = _mm512_add_pd(k[1], k[5]);
    const __m512d q2 = _mm512_add_pd(k[2], k[6]), q3 = _mm512_add_pd(k[3], k[7]);
    tot[half] = _mm512_add_pd(_mm512_add_pd(q0, q2), _mm512_add_pd(q1, q3));
  }
  if (body < n) {
    const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                            _mm512_set1_epi32(n));
    const __m512 vm = _mm512_loadu_ps(m);
    for (int e = body; e < n; ++e) {
      const f32x16 x = exp_fast16(std::bit_cast<f32x16>(_mm512_sub_ps(_mm512_i32gather_ps(rows, z + e, 4), vm)));
      tot[0] = _mm512_add_pd(tot[0], std::bit_cast<__m512d>(widen_f64x8(__builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7))));
      tot[1] = _mm512_add_pd(tot[1], std::bit_cast<__m512d>(widen_f64x8(__builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15))));
    }
  }
  _mm512_storeu_pd(s, tot[0]);
  _mm512_storeu_pd(s + 8, tot[1]);
#else
  for (int r = 0; r < 16; ++r) s[r] = row_sum_exp(z + static_cast<std::size_t>(r) * n, n, m[r]);
#endif
}

// row_max and row_sum_exp of 16 consecutive rows of width n, bitwise:
// m[r] = row_max(z + r n, n), s[r] = row_sum_exp(z + r n, n, m[r]).
// Why: each row's max ends in 15 dependent selects across its lanes; here the
// 16 rows' lane vectors are transposed in registers so the fold runs once, a
// row per lane, in the same order (where 16-lane gathers from a stack copy
// cost a third more). The n % 16 tail, which row_max folds in one by one after
// its lanes (or alone, from z[0], when n < 16), is folded a column at a time.
inline void row_max_sum_exp16(const float* z, int n, float* m, double* s) {
#if defined(__AVX512F__)
  const int body = n - n % 16;
  const __m512i rows = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                          _mm512_set1_epi32(n));
  __m512 mx;
  if (body > 0) {
    __m512 lanes[16];  // each row's 16-lane max, then transposed: lanes[l] = lane l of every row
    for (int r = 0; r < 16; ++r) {
      const float* zr = z + static_cast<std::size_t>(r) * n;
      __m512 v = _mm512_loadu_ps(zr);
      for (int e = 16; e < body; e += 16) {
        const __m512 w = _mm512_loadu_ps(zr + e);
        v = _mm512_mask_mov_ps(v, _mm512_cmp_ps_mask(w, v, _CMP_GT_OQ), w);  // row_extreme: take w where w > v
      }
      lanes[r] = v;
    }
    simd::transpose16(lanes);
    // row_extreme's fold from r = z[0]: lane 0 never holds less than z[0] and
    // only moves on a strict >, so its first step yields lane 0's bits exactly.
    mx = lanes[0];
    for (int l = 1; l < 16; ++l) mx = _mm512_mask_mov_ps(mx, _mm512_cmp_ps_mask(lanes[l], mx, _CMP_GT_OQ), lanes[l]);
  } else {
    mx = _mm512_i32gather_ps(rows, z, 4);  // r = z[0]; its own step (z[0] > z[0]) never moves it
  }
  for (int e = body > 0 ? body : 1; e < n; ++e) {
    const __m512 w = _mm512_i32gather_ps(rows, z + e, 4);
    mx = _mm512_mask_mov_ps(mx, _mm512_cmp_ps_mask(w, mx, _CMP_GT_OQ), w);
  }
  _mm512_storeu_ps(m, mx);
#else
  for (int r = 0; r < 16; ++r) m[r] = row_max(z + static_cast<std::size_t>(r) * n, n);
#endif
  row_sum_exp16(z, n, m, s);
}

// The same sum with the tail padded to a full 16 lanes (padding adds exact
// zeros), so rows narrower than 16 are vectorised too: equal to row_sum_exp when
// n is a multiple of 16.
inline double row_sum_exp_padded(const float* z, int n, float m) {
  const int body = n - n % 16;
  double s = body > 0 ? row_sum_exp(z, body, m) : 0.0;
  if (body == n) return s;
  f32x16 v;
  for (int l = 0; l < 16; ++l) v[l] = body + l < n ? z[body + l] - m : -std::numeric_limits<float>::infinity();
  const f32x16 x = exp_fast16_capped(v);
  const f32x8 a = __builtin_shufflevector(x, x, 0, 1, 2, 3, 4, 5, 6, 7);
  const f32x8 b = __builtin_shufflevector(x, x, 8, 9, 10, 11, 12, 13, 14, 15);
  const f64x8 w = widen_f64x8(a) + widen_f64x8(b);
  const f64x4 q = __builtin_shufflevector(w, w, 0, 1, 2, 3) + __builtin_shufflevector(w, w, 4, 5, 6, 7);
  return s + ((q[0] + q[2]) + (q[1] + q[3]));
}

#if defined(__AVX2__)
// The lanes of v that are NaN or infinite, as bits.
inline unsigned nonfinite8(__m256 v) {
  const __m256 abs = _mm256_and_ps(v, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
  return static_cast<unsigned>(
      _mm256_movemask_ps(_mm256_cmp_ps(abs, _mm256_set1_ps(std::numeric_limits<float>::max()), _CMP_NLE_UQ)));
}
#endif

// Whether every z[0, n) is finite, 16 lanes at a time (no early exit: one pass).
// With AVX-512 the lanes fold into a mask register as they go: a 16-lane
// reduction per call cost more than the scan of a 64-expert row.
inline bool all_finite(const float* z, int n) {
#if defined(__AVX512F__)
  const __m512 fmax = _mm512_set1_ps(std::numeric_limits<float>::max());
  __mmask16 bad = 0;
  int e = 0;
  for (; e + 16 <= n; e += 16) bad |= _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(z + e)), fmax, _CMP_NLE_UQ);
  if (e < n) {
    const auto m = static_cast<__mmask16>((1u << (n - e)) - 1u);
    bad |= _mm512_mask_cmp_ps_mask(m, _mm512_abs_ps(_mm512_maskz_loadu_ps(m, z + e)), fmax, _CMP_NLE_UQ);
  }
  return bad == 0;
#elif defined(__AVX2__)
  // Native 8 lanes (GCC scalarises 64-byte compares without AVX-512).
  unsigned bad = 0;
  int e = 0;
  for (; e + 8 <= n; e += 8) bad |= nonfinite8(_mm256_loadu_ps(z + e));
  bool all = bad == 0;
  for (; e < n; ++e) all &= std::fabs(z[e]) <= std::numeric_limits<float>::max();
  return all;
#else
  i32x16 ok = ~i32x16{};
  int e = 0;
  for (; e + 16 <= n; e += 16) {
    f32x16 v;
    std::memcpy(&v, z + e, sizeof v);
    const f32x16 a = std::bit_cast<f32x16>(std::bit_cast<i32x16>(v) & 0x7fffffff);
    ok &= a <= std::numeric_limits<float>::max();
  }
  bool all = true;
  for (int l = 0; l < 16; ++l) all &= ok[l] != 0;
  for (; e < n; ++e) all &= std::fabs(z[e]) <= std::numeric_limits<float>::max();
  return all;
#endif
}

// sum_e a[e] * b[e] in float, every term one fused multiply-add in a fixed
// order: lane l accumulates e = l mod 16 over the 16-wide body, the lanes are
// added 0..15, then the tail's terms one by one. Why explicit fmas: `s += a * b`
// leaves contraction to the compiler, and GCC vectorised the tail's products
// (rounded, then added) as far as its preferred vector width allowed and fused
// the rest, so the bits changed with -mprefer-vector-width. (Without FMA in
// the target, -DMOESIM_NATIVE=OFF, std::fma is a correctly rounded libm call:
// the same bits, slower.)
inline float dot_f(const float* a, const float* b, int n) {
  f32x16 acc{};
  int e = 0;
  for (; e + 16 <= n; e += 16) {
    f32x16 x, y;
    std::memcpy(&x, a + e, sizeof x);
    std::memcpy(&y, b + e, sizeof y);
#if defined(__AVX512F__)
    acc = reinterpret_cast<f32x16>(_mm512_fmadd_ps(reinterpret_cast<__m512>(x), reinterpret_cast<__m512>(y),
                                                   reinterpret_cast<__m512>(acc)));
#else
    for (int l = 0; l < 16; ++l) acc[l] = std::fma(x[l], y[l], acc[l]);
#endif
  }
  float s = 0.0f;
  for (int l = 0; l < 16; ++l) s += acc[l];
  for (; e < n; ++e) s = std::fma(a[e], b[e], s);
  return s;
}

// sum_j (a_j w_j) b_j in double, a_j w_j rounded to float first (w may be
// null: a_j alone), each term added into lane j mod 16 over the 16-wide body,
// the lanes folded as row_sum_exp folds them, then the tail in order. The
// product of two floats is exact in double, so a fused and an unfused
// multiply-add give the same bits and the compiler's choice cannot matter.
// Why lanes: one double accumulator is a chain of n dependent multiply-adds
// (about 1000 cycles for a 256-wide row), which left RMSNorm bound by that
// latency rather than by its memory traffic.
inline double dot_fd(const float* a, const float* w, const float* b, int n) {
  int j = 0;
#if defined(__AVX512F__)
  __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
  for (; j + 16 <= n; j += 16) {
    __m512 av = _mm512_loadu_ps(a + j);
    if (w) av = _mm512_mul_ps(av, _mm512_loadu_ps(w + j));
    const __m512 bv = _mm512_loadu_ps(b + j);
    lo = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(av)), _mm512_cvtps_pd(_mm512_castps512_ps256(bv)), lo);
    hi = _mm512_fmadd_pd(_mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(av), 1))),
                         _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(bv), 1))), hi);
  }
  const f64x8 v = reinterpret_cast<f64x8>(lo) + reinterpret_cast<f64x8>(hi);
#else
  f64x8 lo{}, hi{};
  for (; j + 16 <= n; j += 16)
    for (int l = 0; l < 8; ++l) {
      const float a0 = w ? a[j + l] * w[j + l] : a[j + l], a1 = w ? a[j + 8 + l] * w[j + 8 + l] : a[j + 8 + l];
      lo[l] += static_cast<double>(a0) * static_cast<double>(b[j + l]);
      hi[l] += static_cast<double>(a1) * static_cast<double>(b[j + 8 + l]);
    }
  const f64x8 v = lo + hi;
#endif
  const f64x4 q = __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
  double s = (q[0] + q[2]) + (q[1] + q[3]);
  for (; j < n; ++j) s += static_cast<double>(w ? a[j] * w[j] : a[j]) * static_cast<double>(b[j]);
  return s;
}

}  // namespace moesim
