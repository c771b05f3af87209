// The skill world's equations on cases small enough to compute by hand.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <vector>

#include "sim/world.hpp"

using namespace moesim;

namespace {

WorldConfig exact() {
  WorldConfig w;
  w.skill_init = 0.5;
  w.skill_spread = 0.0;
  w.skill_max = 1.0;
  w.skill_floor = 0.0;
  w.perf_noise = 0.0;
  return w;
}

}  // namespace

TEST_CASE("learning by doing and idle decay by hand", "[world]") {
  auto cfg = exact();
  cfg.skill_growth = std::log(2.0);  // fair load halves the gap to skill_max per step
  cfg.idle_decay = 0.1;
  World w(cfg, 2, 2, 1);
  // T = 4, k = 1, E = 2: fair share 2 slots. Expert 0 serves 2 slots of cluster 0,
  // 4 of cluster 1 (impossible in one batch, fine for the equation); expert 1 nothing.
  const std::vector<std::int64_t> served = {2, 4, 0, 0};
  w.learn(served.data(), 4, 1);
  CHECK(w.skill(0, 0) == Approx(0.75));        // 1 - 0.5 * 2^-1
  CHECK(w.skill(0, 1) == Approx(0.875));       // 1 - 0.5 * 2^-2
  CHECK(w.skill(1, 0) == Approx(0.45));        // 0 + 0.9 * 0.5
  CHECK(w.skill(1, 1) == Approx(0.45));
  CHECK(w.mean_skill() == Approx((0.75 + 0.875 + 0.45 + 0.45) / 4));
  // Serving n slots in one batch equals n one-slot batches.
  World a(cfg, 2, 1, 1), b(cfg, 2, 1, 1);
  const std::vector<std::int64_t> three = {3, 1}, one = {1, 1};
  a.learn(three.data(), 4, 1);
  for (int i = 0; i < 3; ++i) b.learn(one.data(), 4, 1);
  CHECK(a.skill(0, 0) == Approx(b.skill(0, 0)));
}

TEST_CASE("decay scope: pair forgets unserved clusters, expert only when fully idle", "[world]") {
  auto cfg = exact();
  cfg.skill_growth = 0.0;
  cfg.idle_decay = 0.5;
  cfg.skill_floor = 0.1;
  const std::vector<std::int64_t> served = {3, 0, 0, 0};  // expert 0 serves cluster 0 only
  World pair(cfg, 2, 2, 1);
  pair.learn(served.data(), 4, 1);
  CHECK(pair.skill(0, 0) == Approx(0.5));  // served, no growth
  CHECK(pair.skill(0, 1) == Approx(0.3));  // 0.1 + 0.5 * 0.4
  CHECK(pair.skill(1, 0) == Approx(0.3));
  cfg.decay_scope = "expert";
  World whole(cfg, 2, 2, 1);
  whole.learn(served.data(), 4, 1);
  CHECK(whole.skill(0, 1) == Approx(0.5));  // expert 0 was busy: no forgetting
  CHECK(whole.skill(1, 1) == Approx(0.3));
}

TEST_CASE("performance = skill of the served (expert, cluster) + noise", "[world]") {
  auto cfg = exact();
  cfg.skill_spread = 0.2;
  World w(cfg, 3, 2, 8);
  for (int e = 0; e < 3; ++e)
    for (int c = 0; c < 2; ++c) {
      CHECK(w.skill(e, c) >= 0.3);
      CHECK(w.skill(e, c) <= 0.7);
    }
  Assignment a;
  a.reset(2, 3, 2);
  a.expert = {2, kNoExpert, 0, 1};
  const std::vector<std::int32_t> cluster = {1, 0};
  std::vector<float> perf(4, -1.0f);
  w.perform(a, cluster.data(), perf.data());
  CHECK(perf[0] == static_cast<float>(w.skill(2, 1)));
  CHECK(perf[1] == 0.0f);
  CHECK(perf[2] == static_cast<float>(w.skill(0, 0)));
  CHECK(perf[3] == static_cast<float>(w.skill(1, 0)));
  // With noise: mean still the skill, std the configured one.
  cfg.perf_noise = 0.3;
  cfg.skill_spread = 0.0;
  World n(cfg, 1, 1, 8);
  Assignment big;
  big.reset(20000, 1, 1);
  std::fill(big.expert.begin(), big.expert.end(), 0);
  const std::vector<std::int32_t> zeros(20000, 0);
  std::vector<float> p(20000);
  n.perform(big, zeros.data(), p.data());
  double m = 0, v = 0;
  for (float x : p) m += x;
  m /= 20000;
  for (float x : p) v += (x - m) * (x - m);
  CHECK(m == Approx(0.5).margin(0.01));
  CHECK(std::sqrt(v / 20000) == Approx(0.3).epsilon(0.03));
}

TEST_CASE("perf_scale_spread: each expert's performance times a fixed lognormal factor", "[world]") {
  // 64 experts, one cluster, no noise: perf_e / skill_e = g_e = exp(sigma z_e) is the
  // same on every call, and ln g over the experts has mean ~0 and std ~sigma.
  auto cfg = exact();
  cfg.perf_scale_spread = 0.5;
  World w(cfg, 64, 1, 3);
  Assignment a;
  a.reset(64, 64, 1);
  for (int t = 0; t < 64; ++t) a.expert[t] = t;
  const std::vector<std::int32_t> cl(64, 0);
  std::vector<float> p1(64), p2(64);
  w.perform(a, cl.data(), p1.data());
  w.perform(a, cl.data(), p2.data());
  CHECK(p1 == p2);
  double m = 0, v = 0;
  for (int e = 0; e < 64; ++e) m += std::log(p1[e] / 0.5) / 64;
  for (int e = 0; e < 64; ++e) v += (std::log(p1[e] / 0.5) - m) * (std::log(p1[e] / 0.5) - m) / 63;
  CHECK(std::abs(m) < 0.2);
  CHECK(std::sqrt(v) == Approx(0.5).epsilon(0.25));
  // Off (the default): exactly the skill, bit for bit.
  cfg.perf_scale_spread = 0.0;
  World off(cfg, 64, 1, 3);
  off.perform(a, cl.data(), p1.data());
  for (int e = 0; e < 64; ++e) CHECK(p1[e] == 0.5f);
}

TEST_CASE("noisy performance: the served slots get the same draws wherever the drops fall", "[world]") {
  // A batch with drops and the same batch without its dropped tokens, from two
  // worlds of the same seed: the served slots read the noise in slot order, so
  // they match one for one, and every dropped slot is 0.
  auto cfg = exact();
  cfg.skill_spread = 0.2;
  cfg.perf_noise = 0.3;
  cfg.perf_scale_spread = 0.4;
  const int T = 53, E = 4, C = 3;
  Assignment full, kept;
  full.reset(T, E, 1);
  std::vector<std::int32_t> cl(T), kept_cl;
  std::vector<std::int32_t> kept_ex;
  for (int t = 0; t < T; ++t) {
    cl[t] = (t * 7) % C;
    full.expert[t] = t % 5 == 2 || t % 7 == 3 ? kNoExpert : (t * 3) % E;
    if (full.expert[t] != kNoExpert) {
      kept_ex.push_back(full.expert[t]);
      kept_cl.push_back(cl[t]);
    }
  }
  kept.reset(static_cast<int>(kept_ex.size()), E, 1);
  kept.expert = kept_ex;
  World a(cfg, E, C, 21), b(cfg, E, C, 21);
  std::vector<float> pa(T, -1.0f), pb(kept_ex.size(), -1.0f);
  a.perform(full, cl.data(), pa.data());
  b.perform(kept, kept_cl.data(), pb.data());
  std::size_t q = 0;
  for (int t = 0; t < T; ++t) {
    if (full.expert[t] == kNoExpert) {
      CHECK(std::bit_cast<std::uint32_t>(pa[t]) == 0u);  // +0, not -0
      continue;
    }
    CHECK(pa[t] == pb[q]);
    CHECK(pa[t] != static_cast<float>(a.skill(full.expert[t], cl[t])));  // the noise is there
    ++q;
  }
  CHECK(q == kept_ex.size());
}

TEST_CASE("performance equals the header's equation bit for bit at widths 1, 2 and 3, with drops, noise and scales",
          "[world]") {
  // The expected values rebuilt from the header's streams: the noise is one fill
  // of the served count from "world.noise", the scales exp(sigma z_e) from
  // "world.scale", r = (float(s[e][c]) + noise_q) * g_e in slot order, 0 for a drop.
  auto cfg = exact();
  cfg.skill_spread = 0.2;
  cfg.perf_noise = 0.3;
  cfg.perf_scale_spread = 0.4;
  const int E = 5, C = 3, seed = 17;
  for (int width : {1, 2, 3})
    for (int T : {53, 64, 7}) {
      Assignment a;
      a.reset(T, E, width);
      std::vector<std::int32_t> cl(static_cast<std::size_t>(T));
      std::size_t served = 0;
      for (int t = 0; t < T; ++t) cl[t] = (t * 5 + 1) % C;
      for (std::size_t i = 0; i < a.expert.size(); ++i) {
        a.expert[i] = i % 7 == 4 || i % 11 == 2 ? kNoExpert : static_cast<std::int32_t>((i * 3 + 2) % E);
        served += a.expert[i] != kNoExpert;
      }
      World w(cfg, E, C, seed);
      std::vector<float> perf(a.expert.size(), -1.0f);
      w.perform(a, cl.data(), perf.data());
      Rng noise_rng(derive_seed(seed, "world.noise")), scale_rng(derive_seed(seed, "world.scale"));
      std::vector<float> noise(served), g(E);
      NormalFiller().fill(noise_rng, noise.data(), served, 0.3f);
      for (auto& x : g) x = static_cast<float>(std::exp(0.4 * scale_rng.normal()));
      std::size_t q = 0;
      for (std::size_t i = 0; i < a.expert.size(); ++i) {
        const int e = a.expert[i];
        if (e == kNoExpert) {
          CHECK(std::bit_cast<std::uint32_t>(perf[i]) == 0u);
          continue;
        }
        const float want = (static_cast<float>(w.skill(e, cl[i / width])) + noise[q++]) * g[e];
        INFO("width " << width << " T " << T << " slot " << i);
        CHECK(std::bit_cast<std::uint32_t>(perf[i]) == std::bit_cast<std::uint32_t>(want));
      }
    }
}
