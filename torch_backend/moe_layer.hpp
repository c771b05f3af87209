#pragma once
// The MoE feed-forward layer. The router head (linear, or seed 002's MLP:
// Linear -> ReLU -> LayerNorm -> Linear) gives fp32 gate logits, optionally of a
// jittered input, rounded to bf16, or replaced by random logits (RouterOptions).
// Selection is the policy's: it routes the detached logits (plus token ids for
// hash routing, gate input and weights for jitter). Combine weights are then
// recomputed differentiably from the logits by the rule the policy declares, so
// the gate learns through them. Tokens are gathered per expert (index_select), run
// through that expert's SwiGLU and added back weighted (index_add). In training
// the policy then observes each served slot's performance without gradients.
// Data-parallel (set_data_parallel, training only): the policy routes and observes
// the global batch, every rank's logits gathered (data_parallel.hpp), and this
// rank dispatches its own rows; the aux losses' counts are the global batch's, so
// their average over ranks is the one-process loss of the global batch.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "policies/aux_losses.hpp"
#include "policies/policy.hpp"
#include "policies/rng.hpp"
#include "policies/types.hpp"
#include "torch_backend/data_parallel.hpp"
#include "torch_backend/lora.hpp"

namespace moesim::torch_backend {

// How the router computes and scores its logits (model.router_*, moe.* keys).
struct RouterOptions {
  bool mlp = false;          // router head: linear (false) or Linear-ReLU-LayerNorm-Linear
  int mlp_hidden = 0;        // its hidden width
  bool bf16 = false;         // logits rounded to bf16 before routing (Megatron-Core routes in the model dtype)
  double jitter_eps = 0.0;   // training: router input * U(1-eps, 1+eps) (Switch, Megatron-Core)
  bool force_balance = false;  // training: N(0,1) logits, straight-through gradient (Megatron-Core)
  AuxLossSpec aux;           // aux-loss scores and counts (aux.k = the model's k)
  bool aux_global = false;   // load-balancing counts accumulated over the step's micro-batches
  int seq_len = 0;           // sequence length of the sequence-wise loss (0 = the whole batch)
};

class MoeLayer : public torch::nn::Module {
 public:
  MoeLayer(int layer, int dim, int hidden, int experts, std::unique_ptr<Policy> policy, std::uint64_t seed,
           double init_std, double out_std, RouterOptions router = {});

  // x: (N, dim); token_ids: (N) int64. Returns (N, dim) fp32.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& token_ids);

  // Feeds the pending performance to the policy (training only; no-op otherwise).
  // per_token_loss: (N) fp32 when the signal is the loss (perf = -loss), else undefined.
  void observe(const torch::Tensor& per_token_loss);
  // Starts an optimizer step: the global-batch aux-loss counts restart.
  void begin_step();

  int layer() const { return layer_; }
  int experts() const { return experts_; }
  Policy& policy() { return *policy_; }
  const Policy& policy() const { return *policy_; }
  Rng& rng() { return rng_; }
  // The router's trainable parameters (router-only training).
  std::vector<torch::Tensor> router_parameters() const;
  // Routes the global batch of these ranks in training (nullptr: this process alone).
  void set_data_parallel(DataParallel* dp) { dp_ = dp; }

  // What the last forward pass did (kept for losses, logging, traces and tests).
  // Data-parallel, the routed batch is the global one (every rank's tokens in rank
  // order); this rank's N rows are the rest.
  torch::Tensor last_logits;   // (N, E) fp32 of this rank's tokens, part of the graph
  torch::Tensor routed_logits; // the routed batch's logits, detached (= last_logits' values alone)
  torch::Tensor last_weights;  // (N, width) fp32 combine weights the output used
  torch::Tensor aux_lb, aux_z, aux_seq, aux_entropy;  // scalar losses of the last pass
  std::vector<double> last_mean_prob;  // per expert: mean aux score over this rank's tokens
  Assignment last_assignment;    // of the routed batch
  std::vector<float> last_perf;  // per slot of the routed batch: expert output L2 norm (0 on empty slots)

  torch::Tensor gate;            // (E, dim) linear head, or (E, hidden) last layer of the MLP head
  torch::Tensor mlp_w1, mlp_ln_w, mlp_ln_b;  // MLP head: (hidden, dim), LayerNorm gain and bias
  std::vector<torch::Tensor> w13, w2;  // per expert: (dim, 2*hidden), (hidden, dim)
  // LoRA adapters on every expert's two projections (lora.hpp); empty without.
  void add_lora(int rank, double alpha);
  std::vector<std::shared_ptr<LoraAdapter>> lora_w13, lora_w2;

 private:
  torch::Tensor router_logits(const torch::Tensor& x);
  torch::Tensor route(const torch::Tensor& x, const torch::Tensor& logits_c, const torch::Tensor& token_ids);
  // Scores and sequence fractions from this rank's rows; balance counts from the routed batch's.
  void aux_losses(const torch::Tensor& logits, const torch::Tensor& logits_c, const Assignment& a,
                  const torch::Tensor& routed_c, const Assignment& routed);

  int layer_, experts_;
  std::unique_ptr<Policy> policy_;
  std::uint64_t seed_;
  Rng rng_;
  RouterOptions router_;
  std::vector<double> step_counts_;  // aux_global: counts and total so far this step
  double step_total_ = 0.0;
  bool pending_ = false;
  DataParallel* dp_ = nullptr;
  bool sharded_ = false;     // the last forward routed the global batch
  Assignment local_;         // then: this rank's rows of it
  std::vector<float> local_perf_;
};

}  // namespace moesim::torch_backend
