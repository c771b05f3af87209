#include "torch_backend/config.hpp"

#include <yaml-cpp/yaml.h>

#include <cmath>
#include <functional>
#include <set>
#include <sstream>

#include "common/files.hpp"
#include "config/flatten.hpp"
#include "config/key_table.hpp"
#include "policies/registry.hpp"
#include "policies/types.hpp"

namespace moesim::torch_backend {

namespace {

using Field = config::Field<TrainConfig>;
using F = config::FieldsOf<TrainConfig>;
using config::bad;

constexpr long kBig = 1L << 50;

const std::vector<Field>& fields() {
  static const std::vector<Field> all = [] {
    std::vector<Field> f;
    f.push_back(F::seed_field("seed", "master seed: init, data order and every routing stream derive from it",
                              [](TrainConfig& c) -> std::uint64_t& { return c.seed; }));
    f.push_back(F::string_field("data.dir", "directory of c4-train.* and c4-validation.* shards",
                             [](TrainConfig& c) -> std::string& { return c.data.dir; }));
    f.push_back(F::string_field("data.cache_dir", "tokenizer/token cache; empty = data dir if writable, else ~/.cache/moesim",
                             [](TrainConfig& c) -> std::string& { return c.data.cache_dir; }));
    f.push_back(F::int_field<int>("data.seq_len", "tokens per sequence", [](TrainConfig& c) -> int& { return c.data.seq_len; }, 2, 1 << 16));
    f.push_back(F::int_field<long>("data.max_docs", "cap on training documents (0 = all)", [](TrainConfig& c) -> long& { return c.data.max_docs; }, 0, kBig));
    f.push_back(F::int_field<long>("data.max_val_docs", "cap on validation documents (0 = all)", [](TrainConfig& c) -> long& { return c.data.max_val_docs; }, 0, kBig));
    f.push_back(F::int_field<int>("tokenizer.vocab", "SentencePiece vocabulary size", [](TrainConfig& c) -> int& { return c.tokenizer.vocab; }, 16, 1 << 20));
    f.push_back(F::string_field("tokenizer.type", "SentencePiece model type", [](TrainConfig& c) -> std::string& { return c.tokenizer.type; }, {"bpe", "unigram"}));
    f.push_back(F::real_field("tokenizer.character_coverage", "share of characters the vocabulary must cover",
                           [](TrainConfig& c) -> double& { return c.tokenizer.character_coverage; }, 0.5, 1.0));
    f.push_back(F::int_field<long>("tokenizer.max_sentences", "sentences sampled to train the tokenizer",
                                [](TrainConfig& c) -> long& { return c.tokenizer.max_sentences; }, 1, kBig));
    f.push_back(F::int_field<int>("model.layers", "Transformer blocks", [](TrainConfig& c) -> int& { return c.model.layers; }, 1, 1024));
    f.push_back(F::int_field<int>("model.dim", "model width", [](TrainConfig& c) -> int& { return c.model.dim; }, 2, 1 << 16));
    f.push_back(F::int_field<int>("model.heads", "attention heads", [](TrainConfig& c) -> int& { return c.model.heads; }, 1, 1024));
    f.push_back(F::int_field<int>("model.ff_hidden", "dense SwiGLU hidden size", [](TrainConfig& c) -> int& { return c.model.ff_hidden; }, 1, 1 << 20));
    f.push_back(F::int_field<int>("model.expert_hidden", "expert SwiGLU hidden size", [](TrainConfig& c) -> int& { return c.model.expert_hidden; }, 1, 1 << 20));
    f.push_back(F::list_field<int>("model.moe_layers", "0-based indices of the MoE blocks", [](TrainConfig& c) -> std::vector<int>& { return c.model.moe_layers; }, 0, 1023));
    f.push_back(F::int_field<int>("model.experts", "experts per MoE layer", [](TrainConfig& c) -> int& { return c.model.experts; }, 1, 1 << 16));
    f.push_back(F::int_field<int>("model.k", "experts per token (token-choice policies)", [](TrainConfig& c) -> int& { return c.model.k; }, 1, 1 << 16));
    f.push_back(F::real_field("model.rope_theta", "rotary base", [](TrainConfig& c) -> double& { return c.model.rope_theta; }, 1.0, 1e12));
    f.push_back(F::real_field("model.norm_eps", "RMSNorm epsilon", [](TrainConfig& c) -> double& { return c.model.norm_eps; }, 0.0, 1.0));
    f.push_back(F::real_field("model.init_std", "std of the normal weight init", [](TrainConfig& c) -> double& { return c.model.init_std; }, 0.0, 10.0));
    f.push_back(F::string_field("model.router_head", "router: linear, or mlp (Linear -> ReLU -> LayerNorm -> Linear, seed 002)",
                             [](TrainConfig& c) -> std::string& { return c.model.router_head; }, {"linear", "mlp"}));
    f.push_back(F::int_field<int>("model.router_hidden", "hidden width of the mlp router head (0 = dim/2)",
                               [](TrainConfig& c) -> int& { return c.model.router_hidden; }, 0, 1 << 20));
    f.push_back(F::string_field("policy.name", "routing policy (`moesim policies` lists them)", [](TrainConfig& c) -> std::string& { return c.policy.name; }, {}, true));
    f.push_back(F::real_field("moe.aux_loss_coef", "Switch load-balancing loss coefficient", [](TrainConfig& c) -> double& { return c.moe.aux_loss_coef; }, 0.0, 1e6));
    f.push_back(F::real_field("moe.z_loss_coef", "router z-loss coefficient", [](TrainConfig& c) -> double& { return c.moe.z_loss_coef; }, 0.0, 1e6));
    f.push_back(F::real_field("moe.seq_aux_coef", "DeepSeek-V3 sequence-wise balance loss coefficient (it uses 1e-4)",
                           [](TrainConfig& c) -> double& { return c.moe.seq_aux_coef; }, 0.0, 1e6));
    f.push_back(F::real_field("moe.entropy_coef", "router entropy term: the loss gets -coef * H, so > 0 keeps the router from saturating (seed 003)",
                           [](TrainConfig& c) -> double& { return c.moe.entropy_coef; }, -1e6, 1e6));
    f.push_back(F::string_field("moe.aux_counts", "what f of the balance losses counts: served slots after capacity, or a plain top-k of the scores over T*k (Megatron-Core)",
                             [](TrainConfig& c) -> std::string& { return c.moe.aux_counts; }, {"served", "topk"}));
    f.push_back(F::string_field("moe.aux_scope", "load-balancing counts per micro-batch, or accumulated over the optimizer step (Megatron-Core global_aux_loss)",
                             [](TrainConfig& c) -> std::string& { return c.moe.aux_scope; }, {"micro", "global"}));
    f.push_back(F::string_field("moe.router_dtype", "logits the policy routes: fp32, or rounded to bf16 (Megatron-Core routes in the model dtype)",
                             [](TrainConfig& c) -> std::string& { return c.moe.router_dtype; }, {"fp32", "bf16"}));
    f.push_back(F::real_field("moe.jitter_eps", "training: router input * U(1-eps, 1+eps) (Switch, Megatron-Core moe_input_jitter_eps)",
                           [](TrainConfig& c) -> double& { return c.moe.jitter_eps; }, 0.0, 0.999999));
    f.push_back(F::bool_field("moe.force_balance", "training: random N(0,1) logits with a straight-through gradient (Megatron-Core force load balancing)",
                           [](TrainConfig& c) -> bool& { return c.moe.force_balance; }));
    f.push_back(F::string_field("moe.perf_signal", "performance the policies observe per token-slot",
                             [](TrainConfig& c) -> std::string& { return c.moe.perf_signal; }, {"output_norm", "loss"}));
    f.push_back(F::int_field<int>("train.batch", "sequences per micro-batch", [](TrainConfig& c) -> int& { return c.train.batch; }, 1, 1 << 20));
    f.push_back(F::int_field<int>("train.accum", "micro-batches per optimizer step", [](TrainConfig& c) -> int& { return c.train.accum; }, 1, 1 << 20));
    f.push_back(F::int_field<long>("train.steps", "optimizer steps", [](TrainConfig& c) -> long& { return c.train.steps; }, 0, kBig));
    f.push_back(F::real_field("train.lr", "peak learning rate", [](TrainConfig& c) -> double& { return c.train.lr; }, 0.0, 10.0));
    f.push_back(F::real_field("train.min_lr_ratio", "cosine floor as a fraction of lr", [](TrainConfig& c) -> double& { return c.train.min_lr_ratio; }, 0.0, 1.0));
    f.push_back(F::int_field<long>("train.warmup", "linear warm-up steps", [](TrainConfig& c) -> long& { return c.train.warmup; }, 0, kBig));
    f.push_back(F::real_field("train.weight_decay", "AdamW decoupled weight decay (matrices only)", [](TrainConfig& c) -> double& { return c.train.weight_decay; }, 0.0, 10.0));
    // Below 1: AdamW divides by 1 - beta^step.
    f.push_back(F::real_field("train.beta1", "AdamW beta1, in [0, 1)", [](TrainConfig& c) -> double& { return c.train.beta1; }, 0.0, 0.9999999999));
    f.push_back(F::real_field("train.beta2", "AdamW beta2, in [0, 1)", [](TrainConfig& c) -> double& { return c.train.beta2; }, 0.0, 0.9999999999));
    f.push_back(F::real_field("train.eps", "AdamW epsilon", [](TrainConfig& c) -> double& { return c.train.eps; }, 0.0, 1.0));
    f.push_back(F::real_field("train.clip", "gradient-norm clip (0 = off)", [](TrainConfig& c) -> double& { return c.train.clip; }, 0.0, 1e9));
    f.push_back(F::bool_field("train.bf16", "bf16 GEMM operands (fp32 accumulation and activations)", [](TrainConfig& c) -> bool& { return c.train.bf16; }));
    f.push_back(F::bool_field("train.ddp_overlap", "data-parallel: start each gradient bucket's all-reduce during backward (false: all after backward)", [](TrainConfig& c) -> bool& { return c.train.ddp_overlap; }));
    f.push_back(F::int_field<int>("lora.rank", "LoRA adapter rank on the targeted weights; only the adapters train (0 = no adapters)", [](TrainConfig& c) -> int& { return c.lora.rank; }, 0, 4096));
    f.push_back(F::real_field("lora.alpha", "LoRA scale numerator: updates are (alpha / rank) B A (PEFT's lora_alpha)", [](TrainConfig& c) -> double& { return c.lora.alpha; }, 0.0, 1e6, true));
    f.push_back(F::string_field("lora.targets", "weights that get adapters: attention (q/k/v and output projections), experts (every expert's w13 and w2), or both", [](TrainConfig& c) -> std::string& { return c.lora.targets; }, {"attention", "experts", "attention,experts"}));
    f.push_back(F::bool_field("train.router_only", "train only the gates, everything else frozen", [](TrainConfig& c) -> bool& { return c.train.router_only; }));
    f.push_back(F::string_field("train.init_from", "checkpoint whose model weights start the run", [](TrainConfig& c) -> std::string& { return c.train.init_from; }));
    f.push_back(F::int_field<int>("train.threads", "intra-op threads (0 = every hardware thread)", [](TrainConfig& c) -> int& { return c.train.threads; }, 0, 4096));
    f.push_back(F::int_field<long>("train.log_every", "CSV row and progress line every this many steps", [](TrainConfig& c) -> long& { return c.train.log_every; }, 1, kBig));
    f.push_back(F::int_field<long>("train.eval_every", "validation every this many steps (0 = at the end)", [](TrainConfig& c) -> long& { return c.train.eval_every; }, 0, kBig));
    f.push_back(F::int_field<long>("train.eval_batches", "validation batches per evaluation (0 = all)", [](TrainConfig& c) -> long& { return c.train.eval_batches; }, 0, kBig));
    f.push_back(F::int_field<long>("train.exit_interval", "stop (checkpoint saved) after a step that is a multiple of this; the schedule still spans train.steps, so resuming continues the curve (Megatron's --exit-interval; 0 = off)", [](TrainConfig& c) -> long& { return c.train.exit_interval; }, 0, kBig));
    f.push_back(F::int_field<long>("train.ckpt_every", "checkpoint every this many steps (0 = at the end)", [](TrainConfig& c) -> long& { return c.train.ckpt_every; }, 0, kBig));
    f.push_back(F::string_field("train.out_dir", "run directory: logs, checkpoint, traces", [](TrainConfig& c) -> std::string& { return c.train.out_dir; }));
    f.push_back(F::bool_field("train.resume", "continue from out_dir/checkpoint.pt when present", [](TrainConfig& c) -> bool& { return c.train.resume; }));
    f.push_back(F::bool_field("train.allow_config_change", "resume even though keys other than steps, logging, evaluation, checkpointing and threads differ from the checkpoint's", [](TrainConfig& c) -> bool& { return c.train.allow_config_change; }));
    f.push_back(F::list_field<long>("train.trace_steps", "steps whose routing (gate logits, choices, counts, per-expert performance) is recorded (.npy)", [](TrainConfig& c) -> std::vector<long>& { return c.train.trace_steps; }, 1, kBig));
    f.push_back(F::int_field<long>("train.trace_every", "also record the routing every this many steps (0 = only train.trace_steps)", [](TrainConfig& c) -> long& { return c.train.trace_every; }, 0, kBig));
    return f;
  }();
  return all;
}

}  // namespace

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> keys = config::keys_of(fields());
  return keys;
}

std::vector<std::pair<std::string, std::string>> config_fields(const TrainConfig& cfg) {
  return config::values_of(fields(), cfg);
}

void set_field(TrainConfig& cfg, std::string_view key, std::string_view value) {
  config::set_in(fields(), cfg, key, value);
}

namespace {

// A token-choice policy with one expert per token and weights normalised over
// that one slot gives every token the weight 1: the language-model loss would
// never reach the gate (Megatron-Core refuses softmax top-1 without pre-softmax).
void check_gate_gradient(const Policy& policy, int k) {
  const auto spec = policy.weight_spec();
  if (k != 1 || !spec.divides()) return;
  // The width of a routed batch tells token choice (k slots) from expert choice (E).
  const int E = policy.experts();
  std::vector<float> z(static_cast<std::size_t>(E) * E, 0.0f), x(static_cast<std::size_t>(E), 0.0f),
      w(static_cast<std::size_t>(E), 0.0f);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(E), 0);
  RouteInput in{z.data(), E, E, ids.data(), x.data(), w.data(), 1};
  Rng rng(1);
  Assignment a;
  policy.clone()->route(in, rng, a);
  if (a.width != 1) return;
  throw KeyError("model.k", "config key 'model.k' = 1: policy '" + policy.name() + "' then gives every token the combine weight " +
              format_real(spec.scale) + " (" + to_string(spec.rule) +
              " over a single expert), so the gate would get no gradient from the language-model loss; use "
              "policy.knobs.renormalize=false (softmax before the top-k, as Megatron-Core requires) or k >= 2");
}

}  // namespace

void validate(const TrainConfig& cfg) {
  config::check_all(fields(), cfg);
  const auto& m = cfg.model;
  if (m.dim % m.heads != 0 || (m.dim / m.heads) % 2 != 0)
    throw KeyError("model.heads", "config key 'model.heads' = " + std::to_string(m.heads) + ": head size dim/heads must be an even integer (dim=" +
                std::to_string(m.dim) + ")");
  for (int l : m.moe_layers)
    if (l >= m.layers)
      throw KeyError("model.moe_layers", "config key 'model.moe_layers': layer " + std::to_string(l) + " outside [0, model.layers=" +
                  std::to_string(m.layers) + ")");
  for (std::size_t i = 0; i < m.moe_layers.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (m.moe_layers[i] == m.moe_layers[j])
        throw KeyError("model.moe_layers", "config key 'model.moe_layers': layer " + std::to_string(m.moe_layers[i]) +
                                               " listed twice");
  for (long s : cfg.train.trace_steps)
    if (s > cfg.train.steps)
      throw KeyError("train.trace_steps", "config key 'train.trace_steps': step " + std::to_string(s) +
                                              " is beyond train.steps = " + std::to_string(cfg.train.steps) +
                                              ", so it would never be recorded");
  if (cfg.lora.rank > 0 && cfg.train.router_only)
    throw KeyError("lora.rank", "config key 'lora.rank' = " + std::to_string(cfg.lora.rank) +
                                    ": LoRA trains the adapters only; train.router_only=true trains the gates only: choose one");
  if (cfg.lora.rank > 0 && cfg.lora.targets == "experts" && m.moe_layers.empty())
    throw KeyError("lora.targets", "config key 'lora.targets' = experts: the model has no MoE layer (model.moe_layers is empty)");
  if (m.k > m.experts)
    throw KeyError("model.k", "config key 'model.k' = " + std::to_string(m.k) + " exceeds model.experts = " + std::to_string(m.experts));
  if (!m.moe_layers.empty()) {
    check_policy(cfg.policy, m.experts, m.k, "model.k");
    const auto policy = make_policy(cfg.policy.name, m.experts, m.k, cfg.policy.knobs);
    if (m.router_head == "mlp" && policy->knobs().values().count("jitter_eps") &&
        policy->knobs().real("jitter_eps") > 0.0)
      throw KeyError("policy.knobs.jitter_eps", "config key 'policy.knobs.jitter_eps': a policy's own jitter recomputes x W^T, which needs "
                  "model.router_head=linear; use moe.jitter_eps (input jitter before the router head) instead");
    check_gate_gradient(*policy, m.k);
  }
}

namespace {

void check_leaf(const std::string& key, const std::string& value) {
  TrainConfig scratch;
  set_field(scratch, key, value);
}

// User files refuse quoted numbers; configs stored in checkpoints by earlier
// versions quoted every value.
const config::Schema& schema(bool stored) {
  static const config::Schema strict(config_keys(), {}, check_leaf);
  static const config::Schema lenient(config_keys(), {}, check_leaf, true);
  return stored ? lenient : strict;
}

void apply_settings(TrainConfig& cfg, const std::vector<config::Setting>& settings) {
  for (const auto& s : settings) {
    if (s.clears_knobs())
      cfg.policy.knobs.clear();
    else
      set_field(cfg, s.key, s.value);
  }
}

TrainConfig from_yaml(const YAML::Node& root, const std::string& path, bool stored) {
  if (root.IsNull()) throw Error(path + ": empty config: expected a map of keys (torch_backend/configs/ has examples)");
  if (!root.IsMap())
    throw Error(config::origin_of(path, root).text() + ": the top level must be a map of keys, got " +
                config::kind_of(root));
  std::vector<config::Setting> settings;
  std::map<std::string, int> seen;
  config::flatten_map(schema(stored), "", root, path, settings, seen, true);
  TrainConfig cfg;
  apply_settings(cfg, settings);
  return cfg;
}

}  // namespace

TrainConfig load_config(const std::string& path) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const Error&) {
    throw Error("config file '" + path + "' cannot be read");
  }
  return from_yaml(config::parse_yaml(text, path), path, false);
}

TrainConfig parse_config_text(const std::string& text, const std::string& source) {
  return from_yaml(config::parse_yaml(text, source), source, true);
}

void apply_overrides(TrainConfig& cfg, const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) apply_settings(cfg, config::override_settings(schema(false), o));
}

std::string dump_config(const TrainConfig& cfg) {
  std::set<std::string> lists;
  for (const auto& k : config_keys())
    if (k.type == "list") lists.insert(k.key);
  std::ostringstream os;
  for (const auto& [k, v] : config_fields(cfg))
    os << k << ": " << (lists.count(k) ? "[" + v + "]" : config::yaml_scalar(v)) << "\n";
  return os.str();
}

}  // namespace moesim::torch_backend
