#pragma once
// Causal multi-head self-attention with rotary positions, no biases.
#include <torch/torch.h>

#include "torch_backend/lora.hpp"
#include "torch_backend/rotary.hpp"

namespace moesim::torch_backend {

// softmax(scale * scores) over keys j <= i of each query row i (later keys get
// probability 0): scores (..., T, T) fp32. One fused kernel each way in place of
// the multiply, mask fill and softmax and their three backward kernels; exp by
// exp_fast (relative error below 2e-7), row sums over 16 lanes in double.
torch::Tensor causal_softmax(const torch::Tensor& scores, double scale);

// gemm(causal_softmax(gemm(q, k, false, true), scale), v) for fp32 q, k, v
// (BH, T, hd), as one autograd node run head by head: the same bits, in the
// calling thread's GEMM precision, without the (BH, T, T) scores, their
// gradients and the casts of the probabilities in memory. With heads > 0 the
// output comes merged as (BH / heads, T, heads * hd), head h of batch b in
// columns h*hd.. (the same bits as the (BH, T, hd) result viewed (B, H, T, hd),
// transposed and reshaped), so neither pass copies it through a transpose.
torch::Tensor attention_core(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v, double scale,
                             std::int64_t heads = 0);

class Attention : public torch::nn::Module {
 public:
  Attention(int dim, int heads, double init_std, double out_std);
  // x: (B, T, dim) -> (B, T, dim)
  torch::Tensor forward(const torch::Tensor& x, const Rotary& rope);
  // Decoding (batch 1, no grad): x (1, Tn, dim) are the tokens at positions
  // len .. len+Tn-1; their keys and values are written into k_cache and v_cache
  // (H, max_len, hd) at those positions and attention runs over positions
  // 0 .. len+Tn-1, causal inside the new block. -> (1, Tn, dim)
  torch::Tensor forward_cached(const torch::Tensor& x, const Rotary& rope, torch::Tensor& k_cache,
                               torch::Tensor& v_cache, std::int64_t len);
  int heads() const { return heads_; }
  int head_dim() const { return dim_ / heads_; }
  // LoRA adapters on both projections (lora.hpp).
  void add_lora(int rank, double alpha);
  torch::Tensor w_qkv;  // (3*dim, dim)
  torch::Tensor w_out;  // (dim, dim)
  std::shared_ptr<LoraAdapter> lora_qkv, lora_out;  // null without adapters

 private:
  int dim_, heads_;
};

}  // namespace moesim::torch_backend
