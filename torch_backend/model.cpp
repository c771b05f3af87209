#include "torch_backend/model.hpp"

#include <algorithm>
#include <cmath>

#include <ATen/record_function.h>

#include "policies/registry.hpp"
#include "torch_backend/gemm.hpp"

namespace moesim::torch_backend {

namespace F = torch::nn::functional;

namespace {
// GPT-2 style: residual-branch outputs are scaled down with depth.
double out_std(const ModelConfig& m) { return m.init_std / std::sqrt(2.0 * m.layers); }
}  // namespace

Block::Block(const ModelConfig& m, int index, bool is_moe, const PolicyConfig& policy, std::uint64_t seed) {
  norm1_ = register_module("norm1", std::make_shared<RMSNorm>(m.dim, m.norm_eps));
  attn_ = register_module("attn", std::make_shared<Attention>(m.dim, m.heads, m.init_std, out_std(m)));
  norm2_ = register_module("norm2", std::make_shared<RMSNorm>(m.dim, m.norm_eps));
  if (is_moe) {
    auto p = make_policy(policy.name, m.experts, m.k, policy.knobs);
    moe = register_module("moe", std::make_shared<MoeLayer>(index, m.dim, m.expert_hidden, m.experts, std::move(p),
                                                             derive_seed(seed, "moe_layer_" + std::to_string(index)),
                                                             m.init_std, out_std(m)));
  } else {
    ffn_ = register_module("ffn", std::make_shared<SwiGLU>(m.dim, m.ff_hidden, m.init_std, out_std(m)));
  }
}

// The named scopes show up in `moesim bench train --profile` traces.
torch::Tensor Block::forward(const torch::Tensor& x, const torch::Tensor& ids, const Rotary& rope) {
  torch::Tensor h, n;
  {
    RECORD_FUNCTION("moesim::attention", std::vector<c10::IValue>());
    h = x + attn_->forward(norm1_->forward(x), rope);
  }
  RECORD_FUNCTION(moe ? "moesim::moe" : "moesim::ffn", std::vector<c10::IValue>());
  n = norm2_->forward(h);
  if (moe) {
    const auto B = n.size(0), T = n.size(1), D = n.size(2);
    return h + moe->forward(n.reshape({B * T, D}), ids.reshape({B * T})).view({B, T, D});
  }
  return h + ffn_->forward(n);
}

Transformer::Transformer(const ModelConfig& m, const PolicyConfig& policy, int vocab, int max_len, std::uint64_t seed)
    : vocab_(vocab), rope_(m.dim / m.heads, max_len, m.rope_theta) {
  embedding = register_parameter("embedding", torch::randn({vocab, m.dim}) * m.init_std);
  for (int i = 0; i < m.layers; ++i) {
    const bool is_moe = std::find(m.moe_layers.begin(), m.moe_layers.end(), i) != m.moe_layers.end();
    auto b = register_module("block" + std::to_string(i), std::make_shared<Block>(m, i, is_moe, policy, seed));
    if (b->moe) moe_.push_back(b->moe);
    blocks_.push_back(std::move(b));
  }
  final_norm_ = register_module("final_norm", std::make_shared<RMSNorm>(m.dim, m.norm_eps));
}

ForwardOut Transformer::forward(const torch::Tensor& ids, bool want_logits) {
  auto x = F::embedding(ids, embedding);
  for (auto& b : blocks_) x = b->forward(x, ids, rope_);
  ForwardOut out;
  out.hidden = final_norm_->forward(x);
  if (want_logits) {
    RECORD_FUNCTION("moesim::head", std::vector<c10::IValue>());
    out.logits = gemm_linear(out.hidden, embedding);
  }
  out.aux_lb = torch::zeros({}, torch::kFloat);
  out.aux_z = torch::zeros({}, torch::kFloat);
  for (auto& l : moe_) {
    out.aux_lb = out.aux_lb + l->aux_lb;
    out.aux_z = out.aux_z + l->aux_z;
  }
  return out;
}

std::vector<torch::Tensor> Transformer::gate_parameters() const {
  std::vector<torch::Tensor> g;
  for (const auto& l : moe_) g.push_back(l->gate);
  return g;
}

void Transformer::observe(const torch::Tensor& per_token_loss) {
  for (auto& l : moe_) l->observe(per_token_loss);
}

}  // namespace moesim::torch_backend
