#pragma once
// The simulator's linear gate and its online update. Forward, for a batch X (T x d):
//   X <- X * U(1 - jitter_eps, 1 + jitter_eps) per entry when gate.jitter_eps > 0
//        (Switch's input jitter; the jittered X is what the update below uses)
//   Z = X W^T                      (W: E x d, W_ej ~ N(0, init_scale^2 / d) at start;
//                                   in sim/product.hpp's fixed fma order)
//   the policy sees S = Z + noise * N(0, 1) per entry (gate.noise > 0), or S = N(0, 1)
//   when gate.force_balance (Megatron-Core's random logits for throughput studies),
//   rounded to bf16 when gate.router_dtype = bf16 (nearest even: a router computing
//   in the model's dtype, where exact ties between experts become common).
// Update after the batch, from the performance r_tj of every served slot (t, j -> e):
//   m  = mean of r over the batch's served slots
//   b <- m on the first batch, then b <- (1 - rho) b + rho m      (rho = baseline_rate)
//   W <- (1 - lr * l2) W
//   W_e <- W_e + (lr / T) * sum over slots (t, j) served by e of (r_tj - b) * x_t
// This is REINFORCE with a baseline, keeping only the chosen experts' term (the full
// score-function gradient also moves every expert by -p_e (r - b) x, a dense
// T x E x d product per batch): an expert that serves a token better than the
// baseline raises its logit for similar tokens, one that serves worse lowers it.
// With rho = 1 the updates of a batch sum to zero in reward; an expert that serves
// many tokens gets many updates, which is how rich experts get richer.
// Optional auxiliary losses, descended with the same lr (p = softmax(Z) per token,
// f_e = share of the batch's served slots on e, lse_t = logsumexp(Z_t)):
//   Switch balance   L = aux_loss * E * sum_e f_e * mean_t p_te
//                    dL/dZ_te = aux_loss * (E / T) * p_te * (f_e - sum_i f_i p_ti)
//   router z-loss    L = z_loss * mean_t lse_t^2,  dL/dZ_te = z_loss * (2 / T) * lse_t * p_te
//   W <- W - lr * G^T X,  G = dL/dZ (T x E): one more T x E x d product, only when on.
// Order within an update: L2 decay, auxiliary step, reward step; all from the
// batch's forward pass. The baseline is tracked even when lr = 0.
#include <cstdint>
#include <vector>

#include "policies/rng.hpp"
#include "policies/types.hpp"
#include "metrics/load_metrics.hpp"
#include "sim/config.hpp"
#include "sim/matrix.hpp"
#include "sim/random.hpp"

namespace moesim {

class Gate {
 public:
  // seed: the layer's seed; the gate draws from its children "gate.init" and "gate.noise".
  Gate(const GateConfig& cfg, int experts, int dim, std::uint64_t seed);

  // Computes the logits of x; then clean() holds Z, seen() what the policy sees and
  // input() the gate input after jitter.
  void forward(const RowMatrixXf& x);
  const RowMatrixXf& clean() const { return clean_; }
  const RowMatrixXf& seen() const { return seen_is_clean() ? clean_ : noisy_; }
  const RowMatrixXf& input(const RowMatrixXf& x) const { return cfg_.jitter_eps > 0.0 ? jittered_ : x; }

  // The online update above, on the batch forward() saw. perf: one value per slot
  // of a (read on served slots).
  void update(const RowMatrixXf& x, const Assignment& a, const float* perf) { update(x, a, perf, served_perf(a, perf)); }
  // The same with the served performance already summed (sp = served_perf(a, perf)).
  void update(const RowMatrixXf& x, const Assignment& a, const float* perf, const ServedPerf& sp);

  const RowMatrixXf& weight() const { return w_; }
  double baseline() const { return baseline_; }
  int experts() const { return static_cast<int>(w_.rows()); }
  int dim() const { return static_cast<int>(w_.cols()); }

 private:
  GateConfig cfg_;
  bool bf16_;
  bool seen_is_clean() const { return cfg_.noise <= 0.0 && !cfg_.force_balance && !bf16_; }
  void aux_gradient(const Assignment& a);

  RowMatrixXf w_, clean_, noisy_, grad_, jittered_;
  Eigen::VectorXf row_max_, row_sum_, dot_;
  Eigen::RowVectorXf share_;
  Rng noise_rng_, jitter_rng_;
  NormalFiller normals_;
  std::vector<float> product_scratch_;  // gate_logits' transposed W
  std::vector<float> spare_row_;        // the reward step's target for dropped slots
  double baseline_ = 0.0;
  bool has_baseline_ = false;
};

}  // namespace moesim
