#include "sim/stream.hpp"

#include <algorithm>
#include <cmath>

namespace moesim {

TokenStream::TokenStream(const StreamConfig& cfg, std::uint64_t seed)
    : cfg_(cfg),
      drift_rng_(derive_seed(seed, "drift")),
      burst_rng_(derive_seed(seed, "burst")),
      cluster_rng_(derive_seed(seed, "cluster")),
      token_rng_(derive_seed(seed, "token")),
      hot_rng_(derive_seed(seed, "hot")),
      noise_rng_(derive_seed(seed, "noise")) {
  const int C = cfg.clusters, V = cfg.vocab, d = cfg.dim;
  const auto rows = static_cast<Eigen::Index>(C) * V;
  table_.resize(rows, d);
  Rng orng(derive_seed(seed, "offsets"));
  normals_.fill(orng, table_.data(), static_cast<std::size_t>(table_.size()), static_cast<float>(cfg.token_scale));
  Rng crng(derive_seed(seed, "centroids"));
  std::vector<float> mu(static_cast<std::size_t>(d));
  for (int c = 0; c < C; ++c) {
    for (auto& m : mu) m = static_cast<float>(cfg.centroid_scale * crng.normal());
    for (Eigen::Index r = static_cast<Eigen::Index>(c) * V; r < static_cast<Eigen::Index>(c + 1) * V; ++r) {
      float* row = table_.data() + r * d;
      for (int j = 0; j < d; ++j) row[j] += mu[j];
    }
  }
  base_logw_.resize(static_cast<std::size_t>(C));
  for (int c = 0; c < C; ++c) base_logw_[c] = -cfg.mixture_zipf_s * std::log(static_cast<double>(c + 1));
  logw_ = base_logw_;
  mixture_.resize(static_cast<std::size_t>(C));
  token_alias_.build(zipf_weights(V, cfg.zipf_s));
}

void TokenStream::update_mixture() {
  const int C = cfg_.clusters;
  if (cfg_.drift > 0.0) {
    for (int c = 0; c < C; ++c)
      logw_[c] += cfg_.drift_revert * (base_logw_[c] - logw_[c]) + cfg_.drift * drift_rng_.normal();
    alias_stale_ = true;
  }
  if (burst_left_ > 0) {
    if (--burst_left_ == 0) alias_stale_ = true;
  }
  if (burst_left_ == 0 && cfg_.burst_prob > 0.0 && burst_rng_.uniform() < cfg_.burst_prob) {
    burst_cluster_ = static_cast<int>(burst_rng_.below(static_cast<std::uint64_t>(C)));
    burst_left_ = cfg_.burst_len;
    alias_stale_ = true;
  }
  if (!alias_stale_) return;
  const double mx = *std::max_element(logw_.begin(), logw_.end());
  double sum = 0.0;
  for (int c = 0; c < C; ++c) sum += mixture_[c] = std::exp(logw_[c] - mx);
  for (auto& p : mixture_) p /= sum;
  if (burst_left_ > 0) {
    for (auto& p : mixture_) p *= 1.0 - cfg_.burst_share;
    mixture_[burst_cluster_] += cfg_.burst_share;
  }
  cluster_alias_.build(mixture_);
  alias_stale_ = false;
}

void TokenStream::add_embeddings(TokenBatch& out, int t0, int t1) const {
  const int d = cfg_.dim;
  for (int t = t0; t < t1; ++t) {
    float* row = out.x.data() + static_cast<std::size_t>(t) * d;
    const float* e = embedding(out.token[t]);
    if (hot_flag_[t]) {
      std::copy(e, e + d, row);
    } else {
      for (int j = 0; j < d; ++j) row[j] += e[j];
    }
  }
}

void TokenStream::prefetch_embeddings(const TokenBatch& out, int t0, int t1) const {
  const auto bytes = static_cast<std::size_t>(cfg_.dim) * sizeof(float);
  for (int t = t0; t < t1; ++t) {
    const char* p = reinterpret_cast<const char*>(embedding(out.token[t]));
    for (std::size_t b = 0; b < bytes; b += 64) __builtin_prefetch(p + b);
  }
}

void TokenStream::next(int T, TokenBatch& out) {
  update_mixture();
  const int d = cfg_.dim, V = cfg_.vocab;
  out.tokens = T;
  out.cluster.resize(static_cast<std::size_t>(T));
  out.token.resize(static_cast<std::size_t>(T));
  hot_flag_.assign(static_cast<std::size_t>(T), 0);
  if (out.x.rows() != T || out.x.cols() != d) out.x.resize(T, d);
  const bool hot = cfg_.hot_fraction > 0.0;
  const std::int32_t hot_cluster = static_cast<std::int32_t>(cfg_.hot_token / V);
  // The generators as locals, so their state stays in registers: as members,
  // every int64 store of a token id might have changed them (same type family),
  // and each draw went through memory.
  Rng cluster_rng = cluster_rng_, token_rng = token_rng_, hot_rng = hot_rng_;
  std::int32_t* cluster = out.cluster.data();
  std::int64_t* token = out.token.data();
  std::uint8_t* hot_flag = hot_flag_.data();
  const double hot_fraction = cfg_.hot_fraction;
  const std::int64_t hot_token = cfg_.hot_token;
  for (int t = 0; t < T; ++t) {
    // Every stream is drawn for every token, so a feature never shifts another's draws.
    auto c = static_cast<std::int32_t>(cluster_alias_.sample(cluster_rng));
    std::int64_t id = static_cast<std::int64_t>(c) * V + token_alias_.sample(token_rng);
    if (hot && hot_rng.uniform() < hot_fraction) {
      c = hot_cluster;
      id = hot_token;
      hot_flag[t] = 1;
    }
    cluster[t] = c;
    token[t] = id;
  }
  cluster_rng_ = cluster_rng;
  token_rng_ = token_rng;
  hot_rng_ = hot_rng;
  float* x = out.x.data();
  const auto n = static_cast<std::size_t>(T) * d;
  if (cfg_.noise > 0.0 && T % 2 == 0) {
    // fill() of the whole batch puts value i's cosine at i and its sine at n/2 + i,
    // so rows t and t + T/2 come from the same values: fill both halves a block of
    // rows at a time and add the embeddings while the block is in cache.
    const std::uint64_t key = noise_rng_.next_u64();
    const int half = T / 2;
    constexpr int kBlock = 16;
    for (int t0 = 0; t0 < half; t0 += kBlock) {
      const int rows = std::min(kBlock, half - t0);
      // The embedding rows are scattered over the table (1 MB by default): fetch
      // them while the noise is computed.
      prefetch_embeddings(out, t0, t0 + rows);
      prefetch_embeddings(out, half + t0, half + t0 + rows);
      const auto off = static_cast<std::size_t>(t0) * d;
      NormalFiller::fill_split(key, off, x + off, x + n / 2 + off, static_cast<std::size_t>(rows) * d,
                               static_cast<float>(cfg_.noise));
      add_embeddings(out, t0, t0 + rows);
      add_embeddings(out, half + t0, half + t0 + rows);
    }
  } else {
    if (cfg_.noise > 0.0)
      normals_.fill(noise_rng_, x, n, static_cast<float>(cfg_.noise));
    else
      std::fill(x, x + n, 0.0f);
    add_embeddings(out, 0, T);
  }
  ++step_;
}

}  // namespace moesim
