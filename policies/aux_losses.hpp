#pragma once
// Auxiliary router losses as plain numbers on the same scores the policies see
// (the LibTorch backend has differentiable twins of these).
#include "policies/types.hpp"

namespace moesim {

// Switch Transformer: E * sum_i f_i * P_i, f_i = share of served slots on expert i,
// P_i = mean softmax probability of expert i. Equals 1 under perfectly uniform routing.
double load_balancing_loss(const float* logits, int tokens, int experts, const Assignment& a);

// ST-MoE router z-loss: mean over tokens of logsumexp(logits)^2. Zero logits give (ln E)^2.
double z_loss(const float* logits, int tokens, int experts);

// DeepSeek-V3 sequence-wise balance loss, averaged over the batch split into
// sequences of seq_len tokens: sum_i f_i * P_i with f_i = E/(k*L) * #tokens
// choosing i and P_i the mean normalised score. Equals 1 under uniform routing.
// sigmoid: normalise sigmoid scores per token (DeepSeek-V3); else softmax.
double sequence_balance_loss(const float* logits, int tokens, int experts, const Assignment& a,
                             int seq_len, bool sigmoid);

// Mean per-token entropy of the softmax router distribution, in nats.
double router_entropy(const float* logits, int tokens, int experts);

}  // namespace moesim
