#pragma once
// Auxiliary router losses as plain numbers on the same scores the policies see
// (the LibTorch backend has differentiable twins of these, torch_backend/router_math).
//
// Conventions (AuxLossSpec), after Megatron-Core's compute_routing_scores_for_aux_loss
// and switch_load_balancing_loss_func:
//   scores P_t:  softmax(z_t), or sigmoid(z_t) / sqrt(softplus(z_t)) divided by
//                their row sum: the score function of the policy (aux_score_for).
//   counts n_i:  Served: slots expert i served after capacity, out of the served
//                total (Switch, moesim); TopK: a plain top-k of the scores before
//                any bias or capacity, out of T*k (Megatron-Core, Mesh-TF,
//                DeepSeek-V3's sequence-wise loss).
#include <vector>

#include "policies/types.hpp"

namespace moesim {

enum class AuxScore { Softmax, Sigmoid, SqrtSoftplus };
enum class AuxCounts { Served, TopK };

struct AuxLossSpec {
  AuxScore score = AuxScore::Softmax;
  AuxCounts counts = AuxCounts::Served;
  int k = 1;  // the top-k of AuxCounts::TopK
};

// The score function a policy's combine weights follow: sigmoid and sqrt-softplus
// rules map to themselves, every softmax rule to Softmax.
AuxScore aux_score_for(const WeightSpec& spec);

// One token's normalised scores P_t (in double: these are diagnostics).
void aux_scores_row(const float* z, int E, AuxScore s, std::vector<double>& p);

// Per-expert counts n_i and their normaliser (the served total, or T*k).
struct AuxCountsOut {
  std::vector<double> count;
  double total = 0.0;
};
AuxCountsOut aux_counts(const float* logits, int tokens, int experts, const Assignment& a, const AuxLossSpec& spec);

// Switch Transformer: E * sum_i f_i * P_i, f_i = n_i / total, P_i = mean over tokens of
// P_ti. Equals 1 under perfectly uniform routing.
double load_balancing_loss(const float* logits, int tokens, int experts, const Assignment& a,
                           const AuxLossSpec& spec = {});

// ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2. Zero logits give (ln E)^2.
double z_loss(const float* logits, int tokens, int experts);

// f of the sequence-wise loss below, sequence by sequence: nseq x E values
// f_si = E/(k*L_s) * n_i over sequence s (row-major).
std::vector<double> sequence_fractions(const float* logits, int tokens, int experts, const Assignment& a, int seq_len,
                                       const AuxLossSpec& spec);

// DeepSeek-V3 sequence-wise balance loss, averaged over the batch split into
// sequences of seq_len tokens: sum_i f_i * P_i with f_i = E/(k*L) * n_i over the
// sequence (k = the assignment's width) and P_i the mean normalised score. Equals 1
// under uniform routing.
double sequence_balance_loss(const float* logits, int tokens, int experts, const Assignment& a, int seq_len,
                             const AuxLossSpec& spec = {});

// Mean per-token entropy of the softmax router distribution, in nats.
double router_entropy(const float* logits, int tokens, int experts);

}  // namespace moesim
