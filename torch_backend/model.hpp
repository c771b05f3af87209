#pragma once
// Decoder-only MoE Transformer: tied token embedding / output head, pre-norm
// blocks (RMSNorm -> causal rotary attention, RMSNorm -> SwiGLU or MoE), final
// RMSNorm. The MoE blocks route through moesim policies.
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "torch_backend/attention.hpp"
#include "torch_backend/config.hpp"
#include "torch_backend/moe_layer.hpp"
#include "torch_backend/norm.hpp"
#include "torch_backend/rotary.hpp"
#include "torch_backend/swiglu.hpp"

namespace moesim::torch_backend {

// Keys and values of every block's attention for the tokens decoded so far, so
// a new token costs one row of attention instead of a pass over the context.
struct KVCache {
  std::vector<torch::Tensor> k, v;  // per block: (H, max_len, hd), positions 0 .. len-1 filled
  std::int64_t len = 0;
  void clear() {
    k.clear();
    v.clear();
    len = 0;
  }
};

class Block : public torch::nn::Module {
 public:
  Block(const TrainConfig& cfg, int index, bool moe);
  // x: (B, T, dim); ids: (B, T)
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& ids, const Rotary& rope);
  // Decoding: x (1, Tn, dim) at positions len ..; see Attention::forward_cached.
  torch::Tensor forward_cached(const torch::Tensor& x, const torch::Tensor& ids, const Rotary& rope, torch::Tensor& k,
                               torch::Tensor& v, std::int64_t len);
  std::shared_ptr<MoeLayer> moe;  // null in dense blocks
  // LoRA adapters on the targets that this block has (lora.targets).
  void add_lora(const LoraConfig& lora);

 private:
  std::shared_ptr<RMSNorm> norm1_, norm2_;
  std::shared_ptr<Attention> attn_;
  std::shared_ptr<SwiGLU> ffn_;
};

struct ForwardOut {
  torch::Tensor hidden;  // (B, T, dim) fp32, after the final norm: the head's input
  torch::Tensor logits;  // (B, T, V) fp32; undefined when not asked for
  torch::Tensor aux_lb;  // sums over MoE layers (scalars; 0 when dense)
  torch::Tensor aux_z;
  torch::Tensor aux_seq;      // DeepSeek-V3 sequence-wise balance loss
  torch::Tensor aux_entropy;  // router entropy (nats)
};

// The router options of the MoE layers, from the config's model.router_* and moe.* keys.
RouterOptions router_options(const TrainConfig& cfg);

class Transformer : public torch::nn::Module {
 public:
  // Initialises from torch's global generator: seed it first for reproducibility.
  // Sequences up to cfg.data.seq_len tokens.
  Transformer(const TrainConfig& cfg, int vocab);
  // Training skips the logits: fused_ce.hpp computes the loss from `hidden`.
  ForwardOut forward(const torch::Tensor& ids, bool want_logits = true);
  // Decoding (no grad, eval): logits (Tn, V) of the tokens ids (1, Tn) appended
  // at positions cache.len ..; cache.len + Tn must not exceed max_len(). The MoE
  // layers route the new tokens only, so a policy whose routing depends on the
  // rest of the batch (capacity drops, expert choice) routes them as a batch of Tn.
  torch::Tensor forward_cached(const torch::Tensor& ids, KVCache& cache);
  const std::vector<std::shared_ptr<MoeLayer>>& moe_layers() const { return moe_; }
  // Router parameters of every MoE layer (router-only training).
  std::vector<torch::Tensor> gate_parameters() const;
  // Every LoRA adapter's A and B (empty without lora.rank).
  std::vector<torch::Tensor> adapter_parameters();
  // Feeds the pending per-slot performance of the last forward to every policy.
  void observe(const torch::Tensor& per_token_loss);
  // Starts an optimizer step (global-batch aux-loss counts restart).
  void begin_step();
  int vocab() const { return vocab_; }
  int max_len() const { return rope_.max_len(); }
  torch::Tensor embedding;  // (V, dim), also the output head

 private:
  int vocab_;
  Rotary rope_;
  std::vector<std::shared_ptr<Block>> blocks_;
  std::vector<std::shared_ptr<MoeLayer>> moe_;
  std::shared_ptr<RMSNorm> final_norm_;
};

}  // namespace moesim::torch_backend
