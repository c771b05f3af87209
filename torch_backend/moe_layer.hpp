#pragma once
// The MoE feed-forward layer. Selection is the policy's: it routes the detached
// fp32 gate logits (plus token ids for hash routing, gate input and weights for
// jitter). Combine weights are then recomputed differentiably from the logits by
// the rule the policy declares, so the gate learns through them. Tokens are
// gathered per expert (index_select), run through that expert's SwiGLU and
// added back weighted (index_add). In training the policy then observes each
// served slot's performance without gradients.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "policies/policy.hpp"
#include "policies/rng.hpp"
#include "policies/types.hpp"

namespace moesim::torch_backend {

class MoeLayer : public torch::nn::Module {
 public:
  MoeLayer(int layer, int dim, int hidden, int experts, std::unique_ptr<Policy> policy, std::uint64_t seed,
           double init_std, double out_std);

  // x: (N, dim); token_ids: (N) int64. Returns (N, dim) fp32.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& token_ids);

  // Feeds the pending performance to the policy (training only; no-op otherwise).
  // per_token_loss: (N) fp32 when the signal is the loss (perf = -loss), else undefined.
  void observe(const torch::Tensor& per_token_loss);

  int layer() const { return layer_; }
  int experts() const { return experts_; }
  Policy& policy() { return *policy_; }
  const Policy& policy() const { return *policy_; }
  Rng& rng() { return rng_; }

  // What the last forward pass did (kept for losses, logging, traces and tests).
  torch::Tensor last_logits;   // (N, E) fp32, part of the graph
  torch::Tensor last_weights;  // (N, width) fp32 combine weights the output used
  torch::Tensor aux_lb, aux_z; // scalar losses of the last pass
  Assignment last_assignment;
  std::vector<float> last_perf;  // per slot: expert output L2 norm (0 on empty slots)

  torch::Tensor gate;            // (E, dim)
  std::vector<torch::Tensor> w13, w2;  // per expert: (dim, 2*hidden), (hidden, dim)

 private:
  int layer_, experts_;
  std::unique_ptr<Policy> policy_;
  std::uint64_t seed_;
  Rng rng_;
  bool pending_ = false;
};

}  // namespace moesim::torch_backend
