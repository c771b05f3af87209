#pragma once
// TrainConfig: everything a training, evaluation or generation run depends on.
// The YAML file and `key.path=value` overrides address the fields by key path
// (the same style as the simulator's scenarios); an unknown key is an error.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/key_table.hpp"
#include "config/policy_config.hpp"
#include "policies/knobs.hpp"

namespace moesim::torch_backend {

struct DataConfig {
  std::string dir = "data/c4_tiny";  // shards c4-train.* and c4-validation.* (.json/.jsonl/.json.gz)
  std::string cache_dir;             // tokenizer + token cache; "" = data dir if writable, else ~/.cache/moesim
  int seq_len = 256;                 // tokens per training sequence
  long max_docs = 0;                 // cap on training documents read (0 = all)
  long max_val_docs = 0;             // cap on validation documents read (0 = all)
};

struct TokenizerConfig {
  int vocab = 8000;
  std::string type = "bpe";          // bpe | unigram
  double character_coverage = 0.9995;
  long max_sentences = 2000000;      // sentencepiece input_sentence_size
};

struct ModelConfig {
  int layers = 4;
  int dim = 256;
  int heads = 4;
  int ff_hidden = 1024;               // dense SwiGLU hidden size
  int expert_hidden = 1024;           // expert SwiGLU hidden size
  std::vector<int> moe_layers{1, 3};  // 0-based layer indices that use MoE
  int experts = 8;
  int k = 2;
  double rope_theta = 10000.0;
  double norm_eps = 1e-5;
  double init_std = 0.02;
  std::string router_head = "linear";  // linear | mlp (seed 002: Linear -> ReLU -> LayerNorm -> Linear)
  int router_hidden = 0;              // mlp head hidden width (0 = dim/2, as seed 002)
};

struct MoeConfig {
  double aux_loss_coef = 0.01;        // Switch load-balancing loss
  double z_loss_coef = 1e-3;          // ST-MoE router z-loss
  double seq_aux_coef = 0.0;          // DeepSeek-V3 sequence-wise balance loss (it uses 1e-4)
  double entropy_coef = 0.0;          // router entropy exploration term: the loss gets -coef * H (seed 003)
  std::string aux_counts = "served";  // served | topk: what f of the balance losses counts (policies/aux_losses.hpp)
  std::string aux_scope = "micro";    // micro | global: load-balancing counts per micro-batch or over the step (Megatron-Core global_aux_loss)
  std::string router_dtype = "fp32";  // fp32 | bf16: logits rounded to bf16 before routing
  double jitter_eps = 0.0;            // router input * U(1-eps, 1+eps) in training (Switch, Megatron-Core)
  bool force_balance = false;         // random N(0,1) logits in training, straight-through (Megatron-Core)
  std::string perf_signal = "output_norm";  // output_norm | loss: what policies observe
};

// LoRA fine-tuning (lora.hpp): with rank > 0 every targeted weight gets an
// adapter and only the adapters train (train.init_from gives the base weights).
struct LoraConfig {
  int rank = 0;                          // 0 = no adapters
  double alpha = 16.0;                   // update scale alpha / rank (PEFT's lora_alpha)
  std::string targets = "attention,experts";  // attention | experts | attention,experts
};

struct TrainLoopConfig {
  int batch = 8;                 // sequences per micro-batch
  int accum = 1;                 // micro-batches per optimizer step
  long steps = 1000;
  double lr = 1e-3;
  double min_lr_ratio = 0.1;     // cosine floor as a fraction of lr
  long warmup = 100;
  double weight_decay = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double clip = 1.0;             // global grad-norm clip (0 = off)
  bool bf16 = false;             // bf16 GEMM operands, fp32 accumulation and activations (gemm.hpp)
  bool router_only = false;      // freeze everything but the gates
  bool ddp_overlap = true;       // data-parallel: all-reduce buckets during backward
  std::string init_from;         // checkpoint whose weights start the run (router-only warm-up)
  int threads = 0;               // intra-op threads (0 = every hardware thread)
  long log_every = 10;
  long eval_every = 200;         // 0 = only at the end
  long eval_batches = 0;         // validation batches per evaluation (0 = all)
  long ckpt_every = 500;         // 0 = only at the end
  long exit_interval = 0;        // stop after a step that is a multiple of this (0 = off)
  std::string out_dir = "runs/default";
  bool resume = true;            // continue from out_dir/checkpoint.pt when present
  bool allow_config_change = false;  // resume although non-resumable keys differ (see trainer.hpp)
  std::vector<long> trace_steps; // steps whose routing is recorded as .npy (trace/trace.hpp)
  long trace_every = 0;          // also every this many steps (0 = off)
};

struct TrainConfig {
  std::uint64_t seed = 1;
  DataConfig data;
  TokenizerConfig tokenizer;
  ModelConfig model;
  PolicyConfig policy;
  MoeConfig moe;
  LoraConfig lora;
  TrainLoopConfig train;
};

const std::vector<ConfigKey>& config_keys();

// (key, value) for every field; set_field over the list rebuilds the config exactly.
std::vector<std::pair<std::string, std::string>> config_fields(const TrainConfig& cfg);
// Throws Error naming the key on an unknown key or a bad value.
void set_field(TrainConfig& cfg, std::string_view key, std::string_view value);
// Cross-field checks (heads divide dim, MoE layer indices, policy name and knobs).
void validate(const TrainConfig& cfg);

// Reads a YAML file (nested maps become key paths, lists of scalars become
// comma lists); errors name the file, line and key.
TrainConfig load_config(const std::string& path);
// The same from YAML text (a checkpoint's stored config); source names it in errors.
TrainConfig parse_config_text(const std::string& text, const std::string& source);
// Applies "key.path=value" overrides in order.
void apply_overrides(TrainConfig& cfg, const std::vector<std::string>& overrides);
// The resolved config as YAML-compatible "key: value" lines (flat key paths).
std::string dump_config(const TrainConfig& cfg);

}  // namespace moesim::torch_backend
