#include "policies/sinkhorn.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "policies/fast_math.hpp"
#include "policies/topk.hpp"

namespace moesim {

namespace {

// Eight floats widened to double lanes.
inline f64x8 load_f64x8(const float* p) {
  f32x8 x;
  std::memcpy(&x, p, sizeof x);
  return widen_f64x8(x);
}

// sum_e a[e] * b[e] in double over 8 lanes in a fixed order (lanes, then tail).
inline double dot_fd(const float* a, const double* b, int n) {
  int e = 0;
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
  // Two native 4-lane halves of the loop below (GCC moved its 64-byte
  // accumulator lane by lane through the stack on AVX2), with the fused
  // multiply-add GCC contracts it into.
  __m256d lo = _mm256_setzero_pd(), hi = _mm256_setzero_pd();
  for (; e + 8 <= n; e += 8) {
    const __m256 x = _mm256_loadu_ps(a + e);
    lo = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(x)), _mm256_loadu_pd(b + e), lo);
    hi = _mm256_fmadd_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(x, 1)), _mm256_loadu_pd(b + e + 4), hi);
  }
  double acc[8];
  _mm256_storeu_pd(acc, lo);
  _mm256_storeu_pd(acc + 4, hi);
#else
  f64x8 acc{};
  for (; e + 8 <= n; e += 8) {
    f64x8 y;
    std::memcpy(&y, b + e, sizeof y);
    acc += load_f64x8(a + e) * y;
  }
#endif
  double s = 0.0;
  for (int l = 0; l < 8; ++l) s += acc[l];
  for (; e < n; ++e) s += static_cast<double>(a[e]) * b[e];
  return s;
}

}  // namespace

SinkhornPolicy::SinkhornPolicy(int experts, int k, const Knobs& kn)
    : Policy("sinkhorn", experts, k, kn),
      spec_(score_weight_spec(kn)),
      cap_(capacity_from(kn, "sinkhorn")),
      iterations_(kn.integer("iterations")),
      tol_(kn.real("tol")),
      eval_topk_(kn.choice("eval_mode") == "topk"),
      tie_(tie_break_from(kn)) {
  spec_ = with_drop_weights(spec_, cap_);
}

// Balances P[t][e] = exp(z[t][e]) * u[t] * v[e] to rows summing to 1 and columns
// to T/E; leaves log v in col_ (all that selection needs).
void SinkhornPolicy::balance(const float* logits, int T) {
  const int E = experts();
  const auto nE = static_cast<std::size_t>(E);
  col_.assign(nE, 0.0);
  colsum_.resize(nE);
  stats_ = {};
  double spread = 0.0;
  for (int t = 0; t < T; ++t)
    spread = std::max(spread, static_cast<double>(row_max(logits + t * nE, E)) - row_min(logits + t * nE, E));
  if (spread <= kLinearSpread)
    balance_linear(logits, T);
  else
    balance_log(logits, T);
}

void SinkhornPolicy::balance_linear(const float* logits, int T) {
  const int E = experts();
  const auto nT = static_cast<std::size_t>(T), nE = static_cast<std::size_t>(E);
  const double col_target = static_cast<double>(T) / E;
  // Every entry of exp(z - rowmax) is >= e^-80, a normal float, so plain
  // scaling vectors stay far inside range and each round costs multiplies, not
  // exp() calls. The matrix is float (exp_fast, relative error < 2e-7, far
  // below tol), every sum and scaling double.
  kexp_.resize(nT * nE);
  for (int t = 0; t < T; ++t) {
    const float* z = logits + t * nE;
    const float m = row_max(z, E);
    float* k = kexp_.data() + t * nE;
    int e = 0;
    for (; e + 16 <= E; e += 16) {
      f32x16 v;
      std::memcpy(&v, z + e, sizeof v);
      const f32x16 x = exp_fast16(v - m);
      std::memcpy(k + e, &x, sizeof x);
    }
    for (; e < E; ++e) k[e] = exp_fast(z[e] - m);
  }
  row_.assign(nT, 1.0);
  colscale_.assign(nE, 1.0);
  // The column sums of round it+1 are accumulated in the same pass that sets
  // round it's row scaling, so each round streams the T x E matrix once.
  std::fill(colsum_.begin(), colsum_.end(), 0.0);
  for (int t = 0; t < T; ++t)
    for (int e = 0; e < E; ++e) colsum_[e] += kexp_[t * nE + e];  // row_ = 1
  for (long it = 0; it < iterations_; ++it) {
    // Rows are exact after every completed round, so the column sums measure
    // how far from balanced we are (relative error, worst expert).
    if (it > 0) {
      double dev = 0.0;
      for (int e = 0; e < E; ++e) dev = std::max(dev, std::fabs(colscale_[e] * colsum_[e] / col_target - 1.0));
      if (dev < tol_) break;
    }
    ++stats_.rounds;
    for (int e = 0; e < E; ++e) colscale_[e] = col_target / colsum_[e];
    std::fill(colsum_.begin(), colsum_.end(), 0.0);
    // Blocks of 32 rows: their scalings, then each group of 8 column sums
    // accumulated in a register across the block (t ascending per column),
    // instead of a store-to-load chain through colsum_ per row.
    for (int t0 = 0; t0 < T; t0 += 32) {
      const int n = std::min(32, T - t0);
      for (int t = t0; t < t0 + n; ++t) row_[t] = 1.0 / dot_fd(kexp_.data() + t * nE, colscale_.data(), E);
      int e = 0;
#if !defined(__AVX512F__) && defined(__AVX2__) && defined(__FMA__)
      // Native 4-lane halves: GCC kept the 64-byte accumulator below in memory
      // and moved it lane by lane through general registers on every row. The
      // same fused multiply-add per lane GCC contracts that loop into.
      for (; e + 8 <= E; e += 8) {
        __m256d a0 = _mm256_loadu_pd(colsum_.data() + e), a1 = _mm256_loadu_pd(colsum_.data() + e + 4);
        for (int t = t0; t < t0 + n; ++t) {
          const __m256 kv = _mm256_loadu_ps(kexp_.data() + t * nE + e);
          const __m256d r = _mm256_set1_pd(row_[t]);
          a0 = _mm256_fmadd_pd(r, _mm256_cvtps_pd(_mm256_castps256_ps128(kv)), a0);
          a1 = _mm256_fmadd_pd(r, _mm256_cvtps_pd(_mm256_extractf128_ps(kv, 1)), a1);
        }
        _mm256_storeu_pd(colsum_.data() + e, a0);
        _mm256_storeu_pd(colsum_.data() + e + 4, a1);
      }
#endif
      for (; e + 8 <= E; e += 8) {
        f64x8 acc;
        std::memcpy(&acc, colsum_.data() + e, sizeof acc);
        for (int t = t0; t < t0 + n; ++t) acc += row_[t] * load_f64x8(kexp_.data() + t * nE + e);
        std::memcpy(colsum_.data() + e, &acc, sizeof acc);
      }
      for (; e < E; ++e)
        for (int t = t0; t < t0 + n; ++t) colsum_[e] += row_[t] * kexp_[t * nE + e];
    }
  }
  for (int e = 0; e < E; ++e) {
    col_[e] = std::log(colscale_[e]);
    stats_.deviation = std::max(stats_.deviation, std::fabs(colscale_[e] * colsum_[e] / col_target - 1.0));
  }
}

void SinkhornPolicy::balance_log(const float* logits, int T) {
  const int E = experts();
  const auto nT = static_cast<std::size_t>(T), nE = static_cast<std::size_t>(E);
  const double col_target = static_cast<double>(T) / E;
  // Log domain for wide logits: an expert whose every logit sits 800 below the
  // row maxima must stay finite and balanceable, where exp() would underflow its
  // whole column to 0.
  const double kNegInf = -std::numeric_limits<double>::infinity();
  const double log_col_target = std::log(col_target);
  // Start from exp(z - rowmax) like the linear path: the first column step
  // depends on the starting row scaling.
  row_.resize(nT);
  for (int t = 0; t < T; ++t) row_[t] = -static_cast<double>(*std::max_element(logits + t * nE, logits + (t + 1) * nE));
  colmax_.resize(nE);
  for (long it = 0; it < iterations_; ++it) {
    std::fill(colmax_.begin(), colmax_.end(), kNegInf);
    std::fill(colsum_.begin(), colsum_.end(), 0.0);
    for (int t = 0; t < T; ++t) {
      const float* z = logits + t * nE;
      for (int e = 0; e < E; ++e) colmax_[e] = std::max(colmax_[e], z[e] + row_[t]);
    }
    for (int t = 0; t < T; ++t) {
      const float* z = logits + t * nE;
      for (int e = 0; e < E; ++e) colsum_[e] += std::exp(z[e] + row_[t] - colmax_[e]);
    }
    if (it > 0) {
      double dev = 0.0;
      for (int e = 0; e < E; ++e)
        dev = std::max(dev, std::fabs(std::expm1(col_[e] + colmax_[e] + std::log(colsum_[e]) - log_col_target)));
      stats_.deviation = dev;  // of the rows before this round
      if (dev < tol_) break;
    }
    ++stats_.rounds;
    for (int e = 0; e < E; ++e) col_[e] = log_col_target - (colmax_[e] + std::log(colsum_[e]));
    for (int t = 0; t < T; ++t) {
      const float* z = logits + t * nE;
      double m = kNegInf;
      for (int e = 0; e < E; ++e) m = std::max(m, z[e] + col_[e]);
      double s = 0.0;
      for (int e = 0; e < E; ++e) s += std::exp(z[e] + col_[e] - m);
      row_[t] = -(m + std::log(s));
    }
  }
}

void SinkhornPolicy::do_route(const RouteInput& in, Rng& rng, Assignment& out) {
  const int T = in.tokens, E = experts(), k = this->k();
  out.reset(T, E, k);
  if (T > 0) {
    if (eval_topk_ && !in.training)
      col_.assign(static_cast<std::size_t>(E), 0.0);  // plain top-k of the logits
    else
      balance(in.logits, T);
    // Top-k of the balanced row; its row scaling is a per-token constant, so the
    // column scaling alone decides: z + log v in float32 (Megatron-Core balances
    // and selects in float32 too), blocks of 16 rows through the row-parallel
    // kernel, ties to the lower expert.
    fcol_.assign(col_.begin(), col_.end());
    const float* bias = fcol_.data();
    std::vector<float> vals(static_cast<std::size_t>(16) * k);
    float* slots = tail_.slot_logits(T, k);
    for (int t0 = 0; t0 < T; t0 += 16) {
      const int n = T - t0 < 16 ? T - t0 : 16;
      const std::size_t row0 = static_cast<std::size_t>(t0) * E, slot0 = static_cast<std::size_t>(t0) * k;
      topk_rows(in.logits + row0, n, E, k, out.expert.data() + slot0, vals.data(), bias);
      for (int r = 0; r < n; ++r) {
        const float* z = in.logits + row0 + static_cast<std::size_t>(r) * E;
        std::int32_t* ex = out.expert.data() + slot0 + static_cast<std::size_t>(r) * k;
        if (tie_ == TieBreak::Random)
          shuffle_ties(E, k, [z, bias](int e) { return z[e] + bias[e]; }, ex, vals.data() + r * k, rng);
        gather_slot_logits(z, ex, k, slots + slot0 + static_cast<std::size_t>(r) * k);
      }
    }
  }
  tail_.finish(in.logits, cap_, spec_, out);
}

static std::vector<KnobPreset> sinkhorn_presets() {
  return {
      {"moesim", "balances at evaluation too", [](int) { return KnobMap{}; }},
      {"megatron",
       "Megatron-Core sinkhorn_load_balancing: weights sigmoid (k = 1) or the full softmax (k > 1), not "
       "renormalised; plain top-k at evaluation; dropless",
       [](int k) {
         return KnobMap{{"score_fn", k == 1 ? "sigmoid" : "softmax"},
                        {"renormalize", "false"},
                        {"eval_mode", "topk"},
                        {"iterations", "1000"},
                        {"dropless", "true"}};
       }},
  };
}

PolicyInfo sinkhorn_info() {
  std::vector<KnobSpec> knobs = {preset_knob(sinkhorn_presets())};
  for (auto& s : score_knobs()) knobs.push_back(s);
  knobs.push_back(int_knob("iterations", 20,
                           "most Sinkhorn rounds (column then row normalisation); 0 = plain top-k", 0, 1L << 30));
  knobs.push_back(real_knob("tol", 1e-4,
                            "stop early once every column sum is within this relative error of T/E; 0 = never",
                            0.0));
  knobs.push_back(choice_knob("eval_mode", "sinkhorn", {"sinkhorn", "topk"},
                              "routing at evaluation: balanced as in training, or plain top-k of the logits "
                              "(Megatron-Core)"));
  knobs.push_back(tie_break_knob());
  for (auto& c : capacity_knobs()) knobs.push_back(c);
  PolicyInfo info{"sinkhorn", "top-k on Sinkhorn-balanced scores, weights from the raw logits (Megatron-Core sinkhorn)",
                  knobs, [](int E, int k, const Knobs& kn) { return std::make_unique<SinkhornPolicy>(E, k, kn); }};
  info.presets = sinkhorn_presets();
  return info;
}

}  // namespace moesim
