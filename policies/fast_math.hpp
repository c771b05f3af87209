#pragma once
// A branch-free exp the compiler vectorises (std::exp is an opaque libm call
// without -ffast-math). Used only where a score feeds *selection* (loss-free
// bias routing), never for combine weights, which must match the LibTorch
// recompute: relative error < 2e-7 on [-87, 88] (Cephes expf polynomial).
#include <bit>
#include <cmath>
#include <cstdint>

namespace moesim {

inline float exp_fast(float x) {
  x = x < -87.0f ? -87.0f : x;  // plain compares: std::fmin/fmax are libm calls here
  x = x > 88.0f ? 88.0f : x;
  const float n = std::floor(x * 1.44269504088896341f + 0.5f);
  // x - n*ln2 in two parts so the reduction stays exact.
  const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float y = p * r * r + r + 1.0f;
  const auto scale = std::bit_cast<float>(static_cast<std::int32_t>((static_cast<std::int32_t>(n) + 127) << 23));
  return y * scale;
}

}  // namespace moesim
