#pragma once
// Synthetic token stream. The model, per step (batch of T tokens):
//   base log-weights    l0_c = -mixture_zipf_s * ln(c + 1)                (c = 0..C-1)
//   drift               l_c <- l_c + drift_revert * (l0_c - l_c) + drift * N(0, 1)
//   mixture             pi = softmax(l); during a burst on cluster b:
//                       pi <- (1 - burst_share) * pi + burst_share * onehot(b)
//   bursts              while none runs, one starts with chance burst_prob per step,
//                       on a uniform cluster, and lasts burst_len steps
//   token               c ~ pi, rank r ~ Zipf(zipf_s) over [0, vocab), id = c*vocab + r;
//                       with chance hot_fraction the token is replaced by hot_token
//   embedding           x = mu_c + token_scale * o_id + noise * N(0, I_d)
//                       mu_c ~ N(0, centroid_scale^2 I_d), o_id ~ N(0, I_d), both fixed;
//                       hot tokens carry no fresh noise: an adversary replays one
//                       input verbatim.
// Every ingredient has its own random stream derived by name from the stream seed
// ("centroids", "offsets", "drift", "burst", "cluster", "token", "hot", "noise"),
// so switching one feature on leaves the draws of the others unchanged.
#include <cstdint>
#include <vector>

#include "policies/rng.hpp"
#include "sim/config.hpp"
#include "sim/matrix.hpp"
#include "sim/random.hpp"

namespace moesim {

struct TokenBatch {
  int tokens = 0;
  std::vector<std::int32_t> cluster;  // per token
  std::vector<std::int64_t> token;    // global token id per token
  RowMatrixXf x;                      // tokens x dim embeddings (the gate input)
};

class TokenStream {
 public:
  // Builds the embedding table; the config must have passed validate().
  TokenStream(const StreamConfig& cfg, std::uint64_t seed);

  // Draws the next batch of T tokens into out (buffers reused).
  void next(int T, TokenBatch& out);

  int clusters() const { return cfg_.clusters; }
  int dim() const { return cfg_.dim; }
  std::int64_t steps() const { return step_; }
  // Mixture the last batch was drawn from, and the burst cluster (-1 when none).
  const std::vector<double>& mixture() const { return mixture_; }
  int burst_cluster() const { return burst_left_ > 0 ? burst_cluster_ : -1; }
  // Fixed part of a token's embedding, mu_c + token_scale * o_id (dim floats).
  const float* embedding(std::int64_t id) const { return table_.data() + id * cfg_.dim; }

 private:
  void update_mixture();
  // x[t] += the fixed embedding of token t (hot tokens: x[t] = it), t in [t0, t1).
  void add_embeddings(TokenBatch& out, int t0, int t1) const;
  void prefetch_embeddings(const TokenBatch& out, int t0, int t1) const;

  StreamConfig cfg_;
  Rng drift_rng_, burst_rng_, cluster_rng_, token_rng_, hot_rng_, noise_rng_;
  RowMatrixXf table_;  // (clusters*vocab) x dim
  std::vector<double> base_logw_, logw_, mixture_;
  AliasTable cluster_alias_, token_alias_;
  NormalFiller normals_;
  std::vector<std::uint8_t> hot_flag_;
  std::int64_t step_ = 0;
  int burst_cluster_ = -1;
  int burst_left_ = 0;
  bool alias_stale_ = true;
};

}  // namespace moesim
