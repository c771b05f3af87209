#include "sim/world.hpp"

#include <bit>
#include <cmath>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace moesim {

World::World(const WorldConfig& cfg, int experts, int clusters, std::uint64_t seed)
    : cfg_(cfg),
      experts_(experts),
      clusters_(clusters),
      decay_pair_(cfg.decay_scope == "pair"),
      noise_rng_(derive_seed(seed, "world.noise")) {
  s_.resize(static_cast<std::size_t>(experts) * clusters);
  Rng init(derive_seed(seed, "world.init"));
  for (auto& s : s_) s = cfg.skill_init + cfg.skill_spread * init.uniform(-1.0, 1.0);
  if (cfg.perf_scale_spread > 0.0) {
    Rng scale(derive_seed(seed, "world.scale"));
    for (int e = 0; e < experts; ++e) scale_.push_back(static_cast<float>(std::exp(cfg.perf_scale_spread * scale.normal())));
  }
}

void World::perform(const Assignment& a, const std::int32_t* cluster, float* perf) {
  std::size_t served = 0;
  for (auto e : a.expert) served += e >= 0;
  // Noise only for served slots, in slot order: the draw count never depends on the width.
  const bool noisy = cfg_.perf_noise > 0.0;
  if (noisy) {
    noise_.resize(served + 1);
    noise_[served] = 0.0f;
    normals_.fill(noise_rng_, noise_.data(), served, static_cast<float>(cfg_.perf_noise));
  }
  // Locals: through the members, every store into perf might have moved them.
  const std::int32_t* ex = a.expert.data();
  const double* skill = s_.data();
  const float* noise = noise_.data();
  const float* scale = scale_.empty() ? nullptr : scale_.data();
  const auto clusters = static_cast<std::size_t>(clusters_);
  const int width = a.width;
  std::size_t i = 0, q = 0;  // slots done, noise values used
#if defined(__AVX512F__)
  const std::size_t slots = a.expert.size();
  // 16 slots a vector for the simulator's widths (1 and 2, where a slot's token is
  // a load or a lane duplication away): the skills by gather, the served slots'
  // noise by an expand-load (the next popcount values, in slot order), the same
  // float operations as the loop below, so the same bits.
  if (width <= 2 && s_.size() <= static_cast<std::size_t>(INT32_MAX)) {  // 32-bit gather indices
    const __m512i dup = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i vc = _mm512_set1_epi32(static_cast<int>(clusters));
    for (; i + 16 <= slots; i += 16) {
      const __m512i e = _mm512_loadu_si512(ex + i);
      const __mmask16 kept = _mm512_cmpge_epi32_mask(e, _mm512_setzero_si512());
      const __m512i ue = _mm512_maskz_mov_epi32(kept, e);
      const __m512i c = width == 1 ? _mm512_loadu_si512(cluster + i)
                                   : _mm512_permutexvar_epi32(dup, _mm512_castsi256_si512(_mm256_loadu_si256(
                                                                       reinterpret_cast<const __m256i*>(cluster + i / 2))));
      const __m512i idx = _mm512_add_epi32(_mm512_mullo_epi32(ue, vc), c);
      const __m256 lo = _mm512_cvtpd_ps(_mm512_i32gather_pd(_mm512_castsi512_si256(idx), skill, 8));
      const __m256 hi = _mm512_cvtpd_ps(_mm512_i32gather_pd(_mm512_extracti64x4_epi64(idx, 1), skill, 8));
      // Joined as doubles' halves: insertf32x8 would need AVX-512DQ.
      __m512 p = _mm512_castpd_ps(
          _mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(lo)), _mm256_castps_pd(hi), 1));
      if (noisy) {
        p = _mm512_add_ps(p, _mm512_maskz_expandloadu_ps(kept, noise + q));
        q += static_cast<std::size_t>(std::popcount(static_cast<unsigned>(kept)));
      }
      if (scale) p = _mm512_mul_ps(p, _mm512_i32gather_ps(ue, scale, 4));
      _mm512_storeu_ps(perf + i, _mm512_maskz_mov_ps(kept, p));
    }
  }
#endif
  // The rest token by token (the vector blocks end on a token: 16 slots are whole
  // tokens at widths 1 and 2). Branch-free: drops are unpredictable. A dropped
  // slot reads expert 0's skill and the next noise value (one spare at the end)
  // and keeps neither.
  for (int t = width > 0 ? static_cast<int>(i / static_cast<std::size_t>(width)) : a.tokens; t < a.tokens; ++t) {
    const double* st = skill + cluster[t];
    for (int j = 0; j < width; ++j) {
      const std::size_t s = static_cast<std::size_t>(t) * width + j;
      const auto e = ex[s];
      const bool kept = e >= 0;
      const auto ue = static_cast<std::size_t>(kept ? e : 0);
      float p = static_cast<float>(st[ue * clusters]);
      if (noisy) p += noise[q];
      q += kept;
      if (scale) p *= scale[ue];
      perf[s] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(p) & (0u - static_cast<std::uint32_t>(kept)));
    }
  }
}

void World::learn(const std::int64_t* served, int T, int k) {
  const double fair = static_cast<double>(T) * k / experts_;
  const double rate = cfg_.skill_growth / fair;
  const double keep = 1.0 - cfg_.idle_decay;
  for (int e = 0; e < experts_; ++e) {
    double* s = s_.data() + static_cast<std::size_t>(e) * clusters_;
    const std::int64_t* n = served + static_cast<std::size_t>(e) * clusters_;
    std::int64_t total = 0;
    for (int c = 0; c < clusters_; ++c) total += n[c];
    for (int c = 0; c < clusters_; ++c) {
      if (n[c] > 0) {
        s[c] = cfg_.skill_max - (cfg_.skill_max - s[c]) * std::exp(-rate * static_cast<double>(n[c]));
      } else if (cfg_.idle_decay > 0.0 && (decay_pair_ || total == 0)) {
        s[c] = cfg_.skill_floor + keep * (s[c] - cfg_.skill_floor);
      }
    }
  }
}

double World::mean_skill() const {
  double sum = 0.0;
  for (double s : s_) sum += s;
  return sum / static_cast<double>(s_.size());
}

}  // namespace moesim
