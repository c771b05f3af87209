#include "sim/world.hpp"

#include <bit>
#include <cmath>

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
  // Branch-free: drops are unpredictable. A dropped slot reads expert 0's skill
  // and the next noise value (one spare at the end) and keeps neither.
  std::size_t q = 0;
  for (int t = 0; t < a.tokens; ++t) {
    const double* st = skill + cluster[t];
    for (int j = 0; j < width; ++j) {
      const std::size_t i = static_cast<std::size_t>(t) * width + j;
      const auto e = ex[i];
      const bool kept = e >= 0;
      const auto ue = static_cast<std::size_t>(kept ? e : 0);
      float p = static_cast<float>(st[ue * clusters]);
      if (noisy) p += noise[q];
      q += kept;
      if (scale) p *= scale[ue];
      perf[i] = std::bit_cast<float>(std::bit_cast<std::uint32_t>(p) & (0u - static_cast<std::uint32_t>(kept)));
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
