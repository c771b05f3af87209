#include "sim/gate.hpp"

#include <bit>
#include <cmath>
#include <cstdint>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "sim/product.hpp"

namespace moesim {

namespace {

// Round to the nearest bfloat16 (ties to even), kept as a float: the top 16 bits.
float round_bf16(float x) {
  auto u = std::bit_cast<std::uint32_t>(x);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return std::bit_cast<float>(u & 0xFFFF0000u);
}

// w[0, d) += c * x[0, d), one fused multiply-add per element: whether a plain
// loop's multiply and add are fused is the compiler's tuning choice (its Zen
// tuning avoids some FMA chains), and the gate's bits should not depend on it.
inline void add_scaled(float* w, const float* x, float c, int d) {
  int q = 0;
#if defined(__AVX512F__)
  const __m512 cv = _mm512_set1_ps(c);
  for (; q + 16 <= d; q += 16)
    _mm512_storeu_ps(w + q, _mm512_fmadd_ps(cv, _mm512_loadu_ps(x + q), _mm512_loadu_ps(w + q)));
#endif
  for (; q < d; ++q) w[q] = std::fma(c, x[q], w[q]);
}

// The reward step's inputs, as plain pointers: through the members, every store
// into W might have moved them.
struct RewardRows {
  const std::int32_t* ex;
  const float* perf;
  const float* x;
  float* w;
  float* spare;
  int tokens, width;
  double scale;
  float baseline;
};

// W_e += scale * (r - b) * x_t for every slot in slot order; D > 0: d == D.
// Branch-free, as drops are unpredictable: a dropped slot adds 0 * x to a spare
// row that nothing reads (masks, not selects: GCC makes those branches).
template <int D>
void reward_rows(const RewardRows& r, int dyn_d) {
  const int d = D > 0 ? D : dyn_d;
  const auto spare = reinterpret_cast<std::uintptr_t>(r.spare);
  for (int t = 0; t < r.tokens; ++t) {
    const float* xt = r.x + static_cast<std::size_t>(t) * d;
    for (int j = 0; j < r.width; ++j) {
      const std::size_t i = static_cast<std::size_t>(t) * r.width + j;
      const auto e = r.ex[i];
      const std::uintptr_t keep = std::uintptr_t{0} - static_cast<std::uintptr_t>(e >= 0);
      const auto row = reinterpret_cast<std::uintptr_t>(r.w + static_cast<std::size_t>(e & static_cast<std::int32_t>(keep)) * d);
      const auto c = static_cast<float>(r.scale * (r.perf[i] - r.baseline));
      const float ck = std::bit_cast<float>(std::bit_cast<std::uint32_t>(c) & static_cast<std::uint32_t>(keep));
      add_scaled(reinterpret_cast<float*>((row & keep) | (spare & ~keep)), xt, ck, d);
    }
  }
}

}  // namespace

Gate::Gate(const GateConfig& cfg, int experts, int dim, std::uint64_t seed)
    : cfg_(cfg),
      bf16_(cfg.router_dtype == "bf16"),
      noise_rng_(derive_seed(seed, "gate.noise")),
      jitter_rng_(derive_seed(seed, "gate.jitter")) {
  w_.resize(experts, dim);
  Rng init(derive_seed(seed, "gate.init"));
  normals_.fill(init, w_.data(), static_cast<std::size_t>(w_.size()),
                static_cast<float>(cfg.init_scale / std::sqrt(static_cast<double>(dim))));
}

void Gate::forward(const RowMatrixXf& x) {
  const RowMatrixXf* in = &x;
  if (cfg_.jitter_eps > 0.0) {
    jittered_ = x;
    const double e = cfg_.jitter_eps;
    for (Eigen::Index i = 0; i < jittered_.size(); ++i)
      jittered_.data()[i] *= static_cast<float>(jitter_rng_.uniform(1.0 - e, 1.0 + e));
    in = &jittered_;
  }
  if (clean_.rows() != in->rows() || clean_.cols() != w_.rows()) clean_.resize(in->rows(), w_.rows());
  gate_logits(in->data(), static_cast<int>(in->rows()), dim(), w_.data(), experts(), clean_.data(), product_scratch_);
  if (seen_is_clean()) return;
  if (noisy_.rows() != clean_.rows() || noisy_.cols() != clean_.cols()) noisy_.resize(clean_.rows(), clean_.cols());
  const auto n = static_cast<std::size_t>(noisy_.size());
  if (cfg_.force_balance) {
    normals_.fill(noise_rng_, noisy_.data(), n, 1.0f);
  } else if (cfg_.noise > 0.0) {
    normals_.fill(noise_rng_, noisy_.data(), n, static_cast<float>(cfg_.noise));
    noisy_ += clean_;
  } else {
    noisy_ = clean_;
  }
  if (bf16_)
    for (std::size_t i = 0; i < n; ++i) noisy_.data()[i] = round_bf16(noisy_.data()[i]);
}

void Gate::aux_gradient(const Assignment& a) {
  const auto T = clean_.rows(), E = clean_.cols();
  // Softmax row by row: contiguous rows vectorise (a broadcast over a row-major
  // matrix falls back to scalar expf).
  if (grad_.rows() != T || grad_.cols() != E) grad_.resize(T, E);
  row_max_.resize(T);
  row_sum_.resize(T);
  for (Eigen::Index t = 0; t < T; ++t) {
    row_max_[t] = clean_.row(t).maxCoeff();
    grad_.row(t) = (clean_.row(t).array() - row_max_[t]).exp().matrix();
    row_sum_[t] = grad_.row(t).sum();
    grad_.row(t) /= row_sum_[t];  // grad_ holds p for now
  }
  std::int64_t served = 0;
  for (auto n : a.counts) served += n;
  share_.resize(E);
  for (Eigen::Index e = 0; e < E; ++e)
    share_[e] = served > 0 ? static_cast<float>(static_cast<double>(a.counts[e]) / static_cast<double>(served)) : 0.0f;
  const auto ca = static_cast<float>(cfg_.aux_loss * static_cast<double>(E) / static_cast<double>(T));
  const auto cz = static_cast<float>(cfg_.z_loss * 2.0 / static_cast<double>(T));
  dot_ = grad_ * share_.transpose();
  // Per token t: coefficient c_t = cz * lse_t - ca * dot_t, then G_te = p_te * (ca * f_e + c_t).
  dot_ = (cz * (row_max_.array() + row_sum_.array().log()) - ca * dot_.array()).matrix();
  for (Eigen::Index t = 0; t < T; ++t) grad_.row(t).array() *= ca * share_.array() + dot_[t];
}

void Gate::update(const RowMatrixXf& x, const Assignment& a, const float* perf, const ServedPerf& sp) {
  // The baseline tracks served performance even when frozen: reports plot it.
  const std::int64_t n = sp.n;
  if (perf) {
    if (n > 0) {
      const double m = sp.sum / static_cast<double>(n);
      baseline_ = has_baseline_ ? (1.0 - cfg_.baseline_rate) * baseline_ + cfg_.baseline_rate * m : m;
      has_baseline_ = true;
    }
  }
  if (cfg_.lr == 0.0) return;
  const bool aux = cfg_.aux_loss > 0.0 || cfg_.z_loss > 0.0;
  if (aux) aux_gradient(a);  // from this batch's probabilities, before W moves
  if (cfg_.l2 > 0.0) w_ *= static_cast<float>(1.0 - cfg_.lr * cfg_.l2);
  const RowMatrixXf& xin = input(x);
  if (aux) w_.noalias() -= static_cast<float>(cfg_.lr) * grad_.transpose() * xin;
  if (n == 0) return;
  const int d = dim(), width = a.width;
  const double scale = cfg_.lr / static_cast<double>(a.tokens);
  spare_row_.assign(static_cast<std::size_t>(d), 0.0f);
  // The simulator's default widths get a loop with d known, so the row update unrolls.
  const RewardRows r{a.expert.data(), perf, xin.data(), w_.data(), spare_row_.data(), a.tokens, width, scale,
                     static_cast<float>(baseline_)};
  switch (d) {
    case 16: reward_rows<16>(r, d); break;
    case 32: reward_rows<32>(r, d); break;
    case 64: reward_rows<64>(r, d); break;
    default: reward_rows<0>(r, d); break;
  }
}

}  // namespace moesim
