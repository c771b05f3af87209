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

RouterOptions router_options(const TrainConfig& cfg) {
  RouterOptions r;
  r.mlp = cfg.model.router_head == "mlp";
  r.mlp_hidden = cfg.model.router_hidden > 0 ? cfg.model.router_hidden : std::max(1, cfg.model.dim / 2);
  r.bf16 = cfg.moe.router_dtype == "bf16";
  r.jitter_eps = cfg.moe.jitter_eps;
  r.force_balance = cfg.moe.force_balance;
  r.aux.counts = cfg.moe.aux_counts == "topk" ? AuxCounts::TopK : AuxCounts::Served;
  r.aux.k = cfg.model.k;
  r.aux_global = cfg.moe.aux_scope == "global";
  r.seq_len = cfg.data.seq_len;
  return r;
}

Block::Block(const TrainConfig& cfg, int index, bool is_moe) {
  const ModelConfig& m = cfg.model;
  const PolicyConfig& policy = cfg.policy;
  const std::uint64_t seed = cfg.seed;
  norm1_ = register_module("norm1", std::make_shared<RMSNorm>(m.dim, m.norm_eps));
  attn_ = register_module("attn", std::make_shared<Attention>(m.dim, m.heads, m.init_std, out_std(m)));
  norm2_ = register_module("norm2", std::make_shared<RMSNorm>(m.dim, m.norm_eps));
  if (is_moe) {
    auto p = make_policy(policy.name, m.experts, m.k, policy.knobs);
    auto ro = router_options(cfg);
    ro.aux.score = aux_score_for(p->weight_spec());  // the aux losses follow the policy's score function
    moe = register_module("moe", std::make_shared<MoeLayer>(index, m.dim, m.expert_hidden, m.experts, std::move(p),
                                                             derive_seed(seed, "moe_layer_" + std::to_string(index)),
                                                             m.init_std, out_std(m), ro));
  } else {
    ffn_ = register_module("ffn", std::make_shared<SwiGLU>(m.dim, m.ff_hidden, m.init_std, out_std(m)));
  }
}

void Block::add_lora(const LoraConfig& lora) {
  if (lora.targets.find("attention") != std::string::npos) attn_->add_lora(lora.rank, lora.alpha);
  if (moe && lora.targets.find("experts") != std::string::npos) moe->add_lora(lora.rank, lora.alpha);
}

// The named scopes show up in `moesim bench train --profile` traces.
torch::Tensor Block::forward(const torch::Tensor& x, const torch::Tensor& ids, const Rotary& rope) {
  // The scope holds attention alone, so a trace counts the norm and the residual apart.
  const torch::Tensor a = norm1_->forward(x);
  torch::Tensor h, n;
  {
    RECORD_FUNCTION("moesim::attention", std::vector<c10::IValue>());
    h = attn_->forward(a, rope);
  }
  h = h + x;
  RECORD_FUNCTION(moe ? "moesim::moe" : "moesim::ffn", std::vector<c10::IValue>());
  n = norm2_->forward(h);
  if (moe) {
    const auto B = n.size(0), T = n.size(1), D = n.size(2);
    return h + moe->forward(n.reshape({B * T, D}), ids.reshape({B * T})).view({B, T, D});
  }
  return h + ffn_->forward(n);
}

torch::Tensor Block::forward_cached(const torch::Tensor& x, const torch::Tensor& ids, const Rotary& rope,
                                   torch::Tensor& k, torch::Tensor& v, std::int64_t len) {
  const auto h = x + attn_->forward_cached(norm1_->forward(x), rope, k, v, len);
  const auto n = norm2_->forward(h);
  if (moe) {
    const auto T = n.size(1), D = n.size(2);
    return h + moe->forward(n.reshape({T, D}), ids.reshape({T})).view({1, T, D});
  }
  return h + ffn_->forward(n);
}

Transformer::Transformer(const TrainConfig& cfg, int vocab)
    : vocab_(vocab), rope_(cfg.model.dim / cfg.model.heads, cfg.data.seq_len, cfg.model.rope_theta) {
  const ModelConfig& m = cfg.model;
  embedding = register_parameter("embedding", torch::randn({vocab, m.dim}) * m.init_std);
  for (int i = 0; i < m.layers; ++i) {
    const bool is_moe = std::find(m.moe_layers.begin(), m.moe_layers.end(), i) != m.moe_layers.end();
    auto b = register_module("block" + std::to_string(i), std::make_shared<Block>(cfg, i, is_moe));
    if (b->moe) moe_.push_back(b->moe);
    blocks_.push_back(std::move(b));
  }
  final_norm_ = register_module("final_norm", std::make_shared<RMSNorm>(m.dim, m.norm_eps));
  // Last, so the base weights draw the same initial values with or without adapters.
  if (cfg.lora.rank > 0)
    for (auto& b : blocks_) b->add_lora(cfg.lora);
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
  out.aux_seq = torch::zeros({}, torch::kFloat);
  out.aux_entropy = torch::zeros({}, torch::kFloat);
  for (auto& l : moe_) {
    out.aux_lb = out.aux_lb + l->aux_lb;
    out.aux_z = out.aux_z + l->aux_z;
    out.aux_seq = out.aux_seq + l->aux_seq;
    out.aux_entropy = out.aux_entropy + l->aux_entropy;
  }
  return out;
}

torch::Tensor Transformer::forward_cached(const torch::Tensor& ids, KVCache& cache) {
  const auto Tn = ids.size(1);
  if (ids.size(0) != 1 || cache.len + Tn > max_len())
    throw Error("decoding: " + std::to_string(cache.len + Tn) + " positions exceed the model's " +
                std::to_string(max_len()) + " (data.seq_len)");
  cache.k.resize(blocks_.size());
  cache.v.resize(blocks_.size());
  auto x = F::embedding(ids, embedding);
  for (std::size_t b = 0; b < blocks_.size(); ++b)
    x = blocks_[b]->forward_cached(x, ids, rope_, cache.k[b], cache.v[b], cache.len);
  cache.len += Tn;
  return gemm_linear(final_norm_->forward(x), embedding).view({Tn, vocab_});
}

std::vector<torch::Tensor> Transformer::gate_parameters() const {
  std::vector<torch::Tensor> g;
  for (const auto& l : moe_)
    for (auto& p : l->router_parameters()) g.push_back(p);
  return g;
}

std::vector<torch::Tensor> Transformer::adapter_parameters() {
  std::vector<torch::Tensor> p;
  for (const auto& [name, ad] : adapters_of(*this)) {
    p.push_back(ad->a);
    p.push_back(ad->b);
  }
  return p;
}

void Transformer::begin_step() {
  for (auto& l : moe_) l->begin_step();
}

void Transformer::observe(const torch::Tensor& per_token_loss) {
  for (auto& l : moe_) l->observe(per_token_loss);
}

}  // namespace moesim::torch_backend
