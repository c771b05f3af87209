#pragma once
// The training loop: AdamW (decoupled decay on matrices), warm-up + cosine,
// gradient clipping and accumulation, optional bf16 GEMMs, validation
// perplexity, per-step CSV logs with per-layer routing statistics, router traces,
// and checkpoints (written atomically) that resume bit-exactly: model, optimizer,
// policy states, routing RNG streams and the data position all travel with it.
// Data-parallel (a DataParallel of N ranks, data_parallel.hpp): train.batch is the
// global batch, each rank trains its B/N rows, gradients and logged statistics are
// the global batch's; rank 0 alone writes logs, traces, evaluations and
// checkpoints, and a checkpoint resumes on any N.
#include <torch/torch.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "torch_backend/config.hpp"
#include "torch_backend/data_parallel.hpp"
#include "torch_backend/model.hpp"
#include "trace/trace.hpp"
#include "torch_backend/packed_data.hpp"

namespace moesim::torch_backend {

struct LayerStepStats {
  int layer = 0;
  std::vector<std::int64_t> loads;  // served slots per expert, summed over micro-batches
  std::vector<double> mean_prob;    // per expert: mean aux-loss score (routing probability), over micro-batches
  std::int64_t routed = 0, dropped = 0, dropped_tokens = 0, tokens = 0;
  std::vector<NamedVector> state;   // Policy::state_vectors() after the step
};

struct StepStats {
  long step = 0;  // 1-based index of the optimizer step just taken
  double loss = 0, ce = 0, aux_lb = 0, aux_z = 0, aux_seq = 0, aux_entropy = 0, lr = 0, grad_norm = 0;
  double seconds = 0, tokens_per_s = 0;
  std::int64_t tokens = 0;
  std::vector<LayerStepStats> layers;
};

// Data a trainer reads: token streams (EOS-separated documents) and the tokenizer
// that made them (stored in checkpoints so eval/generate need nothing else).
struct TrainData {
  const std::vector<std::int32_t>* train = nullptr;
  const std::vector<std::int32_t>* val = nullptr;
  int vocab = 0;
  std::string tokenizer_proto;
};

class Trainer {
 public:
  // dp: the ranks of a data-parallel launch, or nullptr for one process.
  Trainer(const TrainConfig& cfg, TrainData data, std::FILE* log, DataParallel* dp = nullptr);

  StepStats step();
  // Mean validation cross-entropy (nats/token) over max_batches batches (0 = all).
  double evaluate(long max_batches);
  void save(const std::string& path) const;
  // Restores everything save() wrote; throws Error naming the file on mismatch.
  void load(const std::string& path);
  // Copies only the model weights of a checkpoint (train.init_from).
  void load_weights(const std::string& path);
  // The whole run as configured: resume, loop, logs, evals, checkpoints, traces.
  void run();

  long current_step() const { return step_; }
  Transformer& model() { return *model_; }
  const TrainConfig& config() const { return cfg_; }
  const SamplerState& data_position() const { return sampler_->state(); }

 private:
  void make_optimizer();
  double set_lr();
  void write_logs_header(bool resume);
  void log_step(const StepStats& s);

  bool lead() const { return dp_ == nullptr || dp_->rank() == 0; }
  void reduce_stats(StepStats& st);
  void add_routing(StepStats& st, int accum) const;
  void record_trace(long step, const torch::Tensor& inputs);
  void verify_replicas();
  bool start_from(const std::string& ckpt);

  TrainConfig cfg_;
  TrainData data_;
  std::FILE* log_;
  DataParallel* dp_;
  std::shared_ptr<Transformer> model_;
  std::unique_ptr<torch::optim::AdamW> opt_;
  std::vector<torch::Tensor> trainable_;
  PackedSequences train_seq_, val_seq_;
  std::unique_ptr<Sampler> sampler_;
  long step_ = 0;
  long verified_step_ = -1;
  std::int64_t tokens_seen_ = 0;
  std::vector<std::string> log_columns() const;  // train_log.csv's header
  std::vector<long> trace_steps_;
  std::unique_ptr<TraceWriter> trace_;
  std::FILE* csv_ = nullptr;
  std::FILE* eval_csv_ = nullptr;
};

// A model rebuilt from a checkpoint for eval/generate: its config and tokenizer.
struct LoadedModel {
  TrainConfig cfg;
  std::string tokenizer_proto;
  std::shared_ptr<Transformer> model;
  long step = 0;
};
LoadedModel load_model(const std::string& checkpoint);

// Mean cross-entropy (nats/token) of the model over seqs in order, in batches
// (max_batches 0 = all); routing in eval mode leaves policy states untouched.
struct EvalResult {
  double loss = 0;          // mean cross-entropy per token (nats)
  std::int64_t tokens = 0;  // tokens it averages over (max_batches may stop early)
};
EvalResult evaluate_model(Transformer& model, const PackedSequences& seqs, int batch, long max_batches, bool bf16);

// Counts for MFU: matmul FLOPs of one training token (forward + backward), with
// k active experts per MoE token and attention over seq_len positions.
double train_flops_per_token(const ModelConfig& m, int vocab, int seq_len);

}  // namespace moesim::torch_backend
