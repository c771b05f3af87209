#include "sim/gate.hpp"

#include <cmath>

namespace moesim {

Gate::Gate(const GateConfig& cfg, int experts, int dim, std::uint64_t seed)
    : cfg_(cfg), noise_rng_(derive_seed(seed, "gate.noise")) {
  w_.resize(experts, dim);
  Rng init(derive_seed(seed, "gate.init"));
  normals_.fill(init, w_.data(), static_cast<std::size_t>(w_.size()),
                static_cast<float>(cfg.init_scale / std::sqrt(static_cast<double>(dim))));
}

void Gate::forward(const RowMatrixXf& x) {
  if (clean_.rows() != x.rows() || clean_.cols() != w_.rows()) clean_.resize(x.rows(), w_.rows());
  clean_.noalias() = x * w_.transpose();
  if (cfg_.noise > 0.0) {
    if (noisy_.rows() != clean_.rows() || noisy_.cols() != clean_.cols()) noisy_.resize(clean_.rows(), clean_.cols());
    normals_.fill(noise_rng_, noisy_.data(), static_cast<std::size_t>(noisy_.size()), static_cast<float>(cfg_.noise));
    noisy_ += clean_;
  }
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

void Gate::update(const RowMatrixXf& x, const Assignment& a, const float* perf) {
  // The baseline tracks served performance even when frozen: reports plot it.
  std::int64_t n = 0;
  if (perf) {
    double sum = 0.0;
    const std::size_t slots = a.expert.size();
    for (std::size_t i = 0; i < slots; ++i)
      if (a.expert[i] >= 0) {
        sum += perf[i];
        ++n;
      }
    if (n > 0) {
      const double m = sum / static_cast<double>(n);
      baseline_ = has_baseline_ ? (1.0 - cfg_.baseline_rate) * baseline_ + cfg_.baseline_rate * m : m;
      has_baseline_ = true;
    }
  }
  if (cfg_.lr == 0.0) return;
  const bool aux = cfg_.aux_loss > 0.0 || cfg_.z_loss > 0.0;
  if (aux) aux_gradient(a);  // from this batch's probabilities, before W moves
  if (cfg_.l2 > 0.0) w_ *= static_cast<float>(1.0 - cfg_.lr * cfg_.l2);
  if (aux) w_.noalias() -= static_cast<float>(cfg_.lr) * grad_.transpose() * x;
  if (n == 0) return;
  const int d = dim();
  const double scale = cfg_.lr / static_cast<double>(a.tokens);
  const float b = static_cast<float>(baseline_);
  for (int t = 0; t < a.tokens; ++t) {
    const float* xt = x.data() + static_cast<std::size_t>(t) * d;
    for (int j = 0; j < a.width; ++j) {
      const std::size_t i = static_cast<std::size_t>(t) * a.width + j;
      const auto e = a.expert[i];
      if (e < 0) continue;
      const auto coef = static_cast<float>(scale * (perf[i] - b));
      float* we = w_.data() + static_cast<std::size_t>(e) * d;
      for (int q = 0; q < d; ++q) we[q] += coef * xt[q];
    }
  }
}

}  // namespace moesim
