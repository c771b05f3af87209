#pragma once
// Differentiable twins of what the policies compute on plain floats: combine
// weights recomputed from the gate logits by the policy's declared WeightSpec,
// and the auxiliary router losses (policies/aux_losses.hpp has the float versions).
#include <torch/torch.h>

#include "policies/types.hpp"

namespace moesim::torch_backend {

// logits: (N, E) fp32 with grad. Returns (N, width) fp32: each served slot's weight
// by spec over the token's served slots S (offsets from a for SoftmaxSelected), 0
// on empty slots, and all zeros for a token no expert serves.
torch::Tensor combine_weights(const torch::Tensor& logits, const Assignment& a, const WeightSpec& spec);

// Switch: E * sum_i f_i * P_i, f_i = share of served slots on i (a constant), P_i =
// mean softmax probability (differentiable).
torch::Tensor load_balancing_loss(const torch::Tensor& logits, const Assignment& a);

// ST-MoE: mean over tokens of logsumexp(logits)^2.
torch::Tensor router_z_loss(const torch::Tensor& logits);

}  // namespace moesim::torch_backend
