#pragma once
// The world: latent expert skills, where the Matthew effect can happen.
//
// Every expert e has a skill s[e][c] on every cluster c (E x C).
//   start        s[e][c] = skill_init + skill_spread * U(-1, 1)
//   performance  a slot of token t (cluster c_t) served by e yields
//                    r = s[e][c_t] + perf_noise * N(0, 1)
//                the signal the policy observes and the gate learns from;
//                with perf_scale_spread = sigma > 0 it is g_e * r, g_e = exp(sigma * N(0, 1))
//                fixed per expert (stream "world.scale"): experts whose output
//                scale differs for good, as the output norms of trained experts do.
//   learning     after each batch, with n[e][c] the slots of cluster c served by e and
//   by doing     n_fair = T * k / E the slots an expert serves under even routing:
//                    s[e][c] <- s_max - (s_max - s[e][c]) * exp(-eta * n[e][c] / n_fair)
//                each served slot closes a fixed fraction of the remaining gap
//                (diminishing returns; serving n slots in one batch equals n
//                one-slot steps), and an expert at fair load on c closes a
//                fraction 1 - exp(-eta) of it per step.
//   idle decay   when idle (n[e][c] = 0 with decay_scope = pair; sum_c n[e][c] = 0
//                with decay_scope = expert):
//                    s[e][c] <- s_floor + (1 - delta) * (s[e][c] - s_floor)
// Experts that get more tokens learn faster, perform better, are rewarded by the
// gate (sim/gate.hpp) and get still more tokens: rich get richer unless the policy
// spreads the load.
#include <cstdint>
#include <vector>

#include "policies/rng.hpp"
#include "policies/types.hpp"
#include "sim/config.hpp"
#include "sim/random.hpp"

namespace moesim {

class World {
 public:
  // seed: the layer's seed; the world draws from its children "world.init", "world.noise"
  // and "world.scale".
  World(const WorldConfig& cfg, int experts, int clusters, std::uint64_t seed);

  // perf[i] for every slot of a: the performance above on served slots, 0 elsewhere.
  void perform(const Assignment& a, const std::int32_t* cluster, float* perf);

  // Learning by doing and idle decay. served: E x C slot counts of the batch,
  // row-major (served[e * C + c]); T, k: batch size and experts per token.
  void learn(const std::int64_t* served, int T, int k);

  int experts() const { return experts_; }
  int clusters() const { return clusters_; }
  double skill(int e, int c) const { return s_[static_cast<std::size_t>(e) * clusters_ + c]; }
  const std::vector<double>& skills() const { return s_; }  // E x C, row-major
  double mean_skill() const;

 private:
  WorldConfig cfg_;
  int experts_, clusters_;
  bool decay_pair_;
  std::vector<double> s_;
  Rng noise_rng_;
  NormalFiller normals_;
  std::vector<float> noise_;
  std::vector<float> scale_;  // g_e; empty when perf_scale_spread = 0
};

}  // namespace moesim
