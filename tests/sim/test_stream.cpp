// The synthetic token stream: frequencies, hot tokens, bursts, drift, embeddings,
// and the independence of its named random streams.
#include <catch2/catch.hpp>

#include <bit>
#include <cmath>
#include <map>
#include <vector>

#include "policies/noise.hpp"
#include "policies/rng.hpp"
#include "sim/stream.hpp"

using namespace moesim;

namespace {

StreamConfig small() {
  StreamConfig s;
  s.clusters = 4;
  s.vocab = 50;
  s.dim = 8;
  return s;
}

}  // namespace

TEST_CASE("uniform mixture and Zipf ranks", "[stream]") {
  auto cfg = small();
  cfg.zipf_s = 1.0;
  TokenStream st(cfg, 1);
  TokenBatch b;
  std::vector<double> per_cluster(4, 0.0), rank(50, 0.0);
  double n = 0;
  for (int s = 0; s < 50; ++s) {
    st.next(2000, b);
    for (int t = 0; t < b.tokens; ++t) {
      ++per_cluster[b.cluster[t]];
      CHECK(b.token[t] / cfg.vocab == b.cluster[t]);  // ids live in their cluster's range
      ++rank[b.token[t] % cfg.vocab];
      ++n;
    }
  }
  for (double c : per_cluster) CHECK(c / n == Approx(0.25).margin(0.01));
  // Zipf s = 1: rank 0 is twice as frequent as rank 1, three times rank 2.
  CHECK(rank[0] / rank[1] == Approx(2.0).epsilon(0.05));
  CHECK(rank[0] / rank[2] == Approx(3.0).epsilon(0.06));
}

TEST_CASE("Zipf mixture over clusters", "[stream]") {
  auto cfg = small();
  cfg.mixture_zipf_s = 1.0;
  TokenStream st(cfg, 1);
  TokenBatch b;
  st.next(10, b);
  // Weights 1, 1/2, 1/3, 1/4 over their sum 25/12.
  const auto& m = st.mixture();
  CHECK(m[0] == Approx(12.0 / 25.0));
  CHECK(m[3] == Approx(3.0 / 25.0));
}

TEST_CASE("embeddings: centroid + token offset + noise", "[stream]") {
  auto cfg = small();
  cfg.noise = 0.0;
  TokenStream a(cfg, 5);
  TokenBatch b;
  a.next(200, b);
  for (int t = 0; t < b.tokens; ++t)
    for (int j = 0; j < cfg.dim; ++j) CHECK(b.x(t, j) == a.embedding(b.token[t])[j]);
  // No token offset: every token of a cluster sits on the centroid.
  cfg.token_scale = 0.0;
  TokenStream c(cfg, 5);
  c.next(200, b);
  std::map<int, std::vector<float>> seen;
  for (int t = 0; t < b.tokens; ++t) {
    std::vector<float> row(b.x.row(t).data(), b.x.row(t).data() + cfg.dim);
    auto [it, fresh] = seen.emplace(b.cluster[t], row);
    if (!fresh) CHECK(it->second == row);
  }
  // Noise: the fixed part stays, fresh noise of the configured std comes on top.
  cfg = small();
  cfg.noise = 0.5;
  TokenStream d(cfg, 5);
  d.next(4000, b);
  double m2 = 0;
  for (int t = 0; t < b.tokens; ++t)
    for (int j = 0; j < cfg.dim; ++j) {
      const double e = b.x(t, j) - d.embedding(b.token[t])[j];
      m2 += e * e;
    }
  CHECK(std::sqrt(m2 / (4000.0 * cfg.dim)) == Approx(0.5).epsilon(0.02));
}

TEST_CASE("hot tokens: the share asked for, one id, replayed verbatim", "[stream]") {
  auto cfg = small();
  cfg.hot_fraction = 0.3;
  cfg.hot_token = 2 * cfg.vocab + 7;
  TokenStream st(cfg, 9);
  TokenBatch b;
  double hot = 0, verbatim = 0, n = 0;
  for (int s = 0; s < 20; ++s) {
    st.next(1000, b);
    for (int t = 0; t < b.tokens; ++t) {
      if (b.token[t] != cfg.hot_token) continue;
      ++hot;
      CHECK(b.cluster[t] == 2);
      bool same = true;
      for (int j = 0; j < cfg.dim; ++j) same = same && b.x(t, j) == st.embedding(cfg.hot_token)[j];
      verbatim += same;
    }
    n += b.tokens;
  }
  // Injected copies carry no noise; natural draws of the id (rank 7 of cluster 2,
  // about 0.25 * 0.7 * (1/8)/H_50 ~ 0.5% of tokens) do.
  CHECK(verbatim / n == Approx(0.30).margin(0.01));
  CHECK(hot - verbatim > 0);
  CHECK((hot - verbatim) / n == Approx(0.005).margin(0.003));
}

TEST_CASE("bursts: one cluster takes over for burst_len steps", "[stream]") {
  auto cfg = small();
  cfg.burst_prob = 1.0;
  cfg.burst_share = 1.0;
  cfg.burst_len = 3;
  TokenStream st(cfg, 4);
  TokenBatch b;
  for (int s = 0; s < 9; ++s) {
    st.next(500, b);
    const int bc = st.burst_cluster();
    REQUIRE(bc >= 0);
    for (int t = 0; t < b.tokens; ++t) CHECK(b.cluster[t] == bc);
  }
  cfg.burst_share = 0.5;
  TokenStream half(cfg, 4);
  half.next(4000, b);
  double in = 0;
  for (int t = 0; t < b.tokens; ++t) in += b.cluster[t] == half.burst_cluster();
  // 0.5 + 0.5 * 1/4 = 0.625.
  CHECK(in / b.tokens == Approx(0.625).margin(0.03));
}

TEST_CASE("drift moves the mixture; revert pulls it back", "[stream]") {
  auto cfg = small();
  cfg.drift = 0.3;
  TokenStream st(cfg, 2);
  TokenBatch b;
  st.next(1, b);
  const auto first = st.mixture();
  for (int s = 0; s < 100; ++s) st.next(1, b);
  double moved = 0;
  for (int c = 0; c < 4; ++c) moved += std::abs(st.mixture()[c] - first[c]);
  CHECK(moved > 0.1);
  // Full reversion: each step is one fresh perturbation of the base, never a walk.
  cfg.drift_revert = 1.0;
  cfg.drift = 0.01;
  TokenStream back(cfg, 2);
  for (int s = 0; s < 200; ++s) back.next(1, b);
  for (double p : back.mixture()) CHECK(p == Approx(0.25).margin(0.01));
}

TEST_CASE("named streams are independent: a feature never shifts another's draws", "[stream][seeds]") {
  auto cfg = small();
  TokenStream plain(cfg, 42);
  cfg.hot_fraction = 0.2;
  cfg.noise = 0.7;
  TokenStream hot(cfg, 42);
  TokenBatch a, b;
  int compared = 0;
  for (int s = 0; s < 5; ++s) {
    plain.next(300, a);
    hot.next(300, b);
    for (int t = 0; t < 300; ++t) {
      if (b.token[t] == cfg.hot_token) continue;
      CHECK(a.token[t] == b.token[t]);  // cluster and token streams unchanged
      ++compared;
    }
  }
  CHECK(compared > 1000);
  // Same seed, same everything: identical batches; another seed: different.
  TokenStream again(small(), 42), other(small(), 43);
  TokenStream first(small(), 42);
  first.next(100, a);
  again.next(100, b);
  CHECK(a.token == b.token);
  CHECK(a.x == b.x);
  other.next(100, b);
  CHECK(a.token != b.token);
}

TEST_CASE("a batch's embeddings are fill() of the whole batch's noise plus the fixed part, bitwise", "[stream]") {
  // Even batches fill their noise in blocks of rows, odd ones in one call: both
  // must give what one fill of T*dim values would; a hot token gets no noise.
  for (double hot : {0.0, 1.0}) {
    for (int dim : {8, 5}) {
      for (int T : {2, 34, 1000, 33}) {
        CAPTURE(hot, dim, T);
        auto cfg = small();
        cfg.dim = dim;
        cfg.noise = 0.4;
        cfg.hot_fraction = hot;
        cfg.hot_token = 3;
        const std::uint64_t seed = 21;
        TokenStream st(cfg, seed);
        Rng noise_rng(derive_seed(seed, "noise"));
        NormalFiller normals;
        std::vector<float> noise(static_cast<std::size_t>(T) * dim);
        TokenBatch b;
        for (int step = 0; step < 2; ++step) {
          st.next(T, b);
          normals.fill(noise_rng, noise.data(), noise.size(), 0.4f);
          for (int t = 0; t < T; ++t) {
            const float* e = st.embedding(b.token[t]);
            for (int j = 0; j < dim; ++j) {
              const float want = hot > 0.0 ? e[j] : noise[static_cast<std::size_t>(t) * dim + j] + e[j];
              REQUIRE(std::bit_cast<std::uint32_t>(b.x(t, j)) == std::bit_cast<std::uint32_t>(want));
            }
          }
        }
      }
    }
  }
}
