#pragma once
// Differentiable twins of what the policies compute on plain floats: combine
// weights recomputed from the gate logits by the policy's declared WeightSpec,
// and the auxiliary router losses (policies/aux_losses.hpp has the float versions
// and the conventions; the constant parts, counts and fractions, come from there).
#include <torch/torch.h>

#include <vector>

#include "policies/aux_losses.hpp"
#include "policies/types.hpp"

namespace moesim::torch_backend {

// logits: (N, E) fp32 with grad. Returns (N, width) fp32: each served slot's weight
// by spec (offsets from a for SoftmaxSelected, normalised over the requested slots
// when spec.over_requested), 0 on empty slots, all zeros for a token no expert serves.
torch::Tensor combine_weights(const torch::Tensor& logits, const Assignment& a, const WeightSpec& spec);

// (N, E) normalised routing scores of the aux losses: softmax, or sigmoid /
// sqrt-softplus divided by their row sum.
torch::Tensor aux_scores(const torch::Tensor& logits, AuxScore score);

// Switch / Megatron-Core: E * sum_i f_i * P_i, f (E constants) from aux_counts,
// P_i = mean over tokens of scores (differentiable).
torch::Tensor load_balancing_loss(const torch::Tensor& scores, const std::vector<double>& f);

// DeepSeek-V3 sequence-wise: mean over sequences of sum_i f_si * P_si, f from
// sequence_fractions (nseq x E), P_s the mean scores over the sequence's tokens.
torch::Tensor sequence_balance_loss(const torch::Tensor& scores, const std::vector<double>& f, int seq_len);

// ST-MoE: mean over tokens of logsumexp(logits)^2.
torch::Tensor router_z_loss(const torch::Tensor& logits);

// Mean per-token entropy of softmax(logits), in nats (seed 003's exploration term).
torch::Tensor router_entropy(const torch::Tensor& logits);

}  // namespace moesim::torch_backend
