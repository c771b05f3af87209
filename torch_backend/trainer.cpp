#include "torch_backend/trainer.hpp"

#include <ATen/record_function.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>

#include "common/files.hpp"
#include "common/hash.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "torch_backend/checkpoint.hpp"
#include "torch_backend/corpus.hpp"
#include "torch_backend/fused_ce.hpp"
#include "metrics/load_metrics.hpp"
#include "torch_backend/lr_schedule.hpp"
#include "torch_backend/optim.hpp"
#include "trace/trace.hpp"
#include "torch_backend/gemm.hpp"
#include "torch_backend/runtime.hpp"

namespace moesim::torch_backend {

namespace fs = std::filesystem;
namespace F = torch::nn::functional;

namespace {

std::int64_t bits(double d) {
  std::int64_t i;
  std::memcpy(&i, &d, sizeof i);
  return i;
}
double from_bits(std::int64_t i) {
  double d;
  std::memcpy(&d, &i, sizeof d);
  return d;
}

std::vector<std::int64_t> rng_to_vec(const Rng& r) {
  const auto st = r.state();
  std::vector<std::int64_t> v;
  for (auto w : st.s) v.push_back(static_cast<std::int64_t>(w));
  v.push_back(st.has_spare ? 1 : 0);
  v.push_back(bits(st.spare));
  return v;
}

void vec_to_rng(const std::vector<std::int64_t>& v, Rng& r, const std::string& source) {
  if (v.size() != 6) throw Error(source + ": routing RNG state has " + std::to_string(v.size()) + " words, expected 6");
  Rng::State st{};
  for (int i = 0; i < 4; ++i) st.s[i] = static_cast<std::uint64_t>(v[static_cast<std::size_t>(i)]);
  st.has_spare = v[4] != 0;
  st.spare = from_bits(v[5]);
  r.set_state(st);
}

// Keys whose values must agree for a checkpoint to fit this model.
bool structural(const std::string& key) {
  return key.rfind("model.", 0) == 0 || key.rfind("policy.", 0) == 0 || key.rfind("lora.", 0) == 0 ||
         key == "tokenizer.vocab";
}

void check_compatible(const TrainConfig& mine, const TrainConfig& saved, const std::string& path) {
  auto a = config_fields(mine), b = config_fields(saved);
  std::map<std::string, std::string> sb(b.begin(), b.end()), sa(a.begin(), a.end());
  for (const auto& [k, v] : sa) {
    if (!structural(k)) continue;
    auto it = sb.find(k);
    const std::string theirs = it == sb.end() ? "<unset>" : it->second;
    if (theirs != v) throw Error(path + ": checkpoint has " + k + "=" + theirs + ", this run has " + k + "=" + v);
  }
  for (const auto& [k, v] : sb)
    if (structural(k) && !sa.count(k)) throw Error(path + ": checkpoint has " + k + "=" + v + ", this run leaves it unset");
}

// Keys a resume may change: how long, how often to log, evaluate, save and trace,
// where, and on how many threads. A change to any other key makes another run.
bool resumable(const std::string& key) {
  static const std::set<std::string> keys = {
      "train.steps",      "train.resume",  "train.allow_config_change", "train.out_dir",     "train.log_every",
      "train.eval_every", "train.eval_batches", "train.ckpt_every",     "train.threads",     "train.trace_steps", "train.trace_every",
      "train.exit_interval", "train.ddp_overlap",
      "data.cache_dir"};
  return keys.count(key) > 0;
}

void check_same_run(const TrainConfig& mine, const TrainConfig& saved, const std::string& path) {
  if (mine.train.allow_config_change) return;
  const auto a = config_fields(mine), b = config_fields(saved);
  std::map<std::string, std::string> sa(a.begin(), a.end()), sb(b.begin(), b.end());
  std::string diff;
  for (const auto& [k, v] : sa) {
    if (structural(k) || resumable(k)) continue;
    const auto it = sb.find(k);
    const std::string theirs = it == sb.end() ? "<unset>" : it->second;
    if (theirs != v) diff += (diff.empty() ? "" : ", ") + k + " (checkpoint " + theirs + ", now " + v + ")";
  }
  if (!diff.empty())
    throw Error(path + ": resuming with another config: " + diff +
                "; set train.allow_config_change=true to continue anyway, or train into another train.out_dir");
}

std::string fmt_duration(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = std::lround(s);
  char buf[32];
  if (t >= 3600) std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t / 60) % 60);
  else std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  return buf;
}

// Keeps the header and the rows whose first field (the step) is <= step.
void truncate_csv(const std::string& path, long step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, out;
  bool header = true;
  while (std::getline(in, line)) {
    if (header) {
      out += line + "\n";
      header = false;
      continue;
    }
    long s = 0;
    if (parse_int(std::string_view(line).substr(0, line.find(',')), s) && s <= step) out += line + "\n";
  }
  write_file_atomic(path, out);
}

std::string join_csv(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& x : v) {
    if (!out.empty()) out += ',';
    out += x;
  }
  return out;
}


}  // namespace

Trainer::Trainer(const TrainConfig& cfg, TrainData data, std::FILE* log, DataParallel* dp)
    : cfg_(cfg),
      data_(std::move(data)),
      log_(log),
      dp_(dp),
      train_seq_(data_.train, cfg.data.seq_len),
      val_seq_(data_.val, cfg.data.seq_len) {
  validate(cfg_);
  configure_runtime(cfg_.train.threads);
  torch::manual_seed(cfg_.seed);
  model_ = std::make_shared<Transformer>(cfg_, data_.vocab);
  if (dp_) {
    if (cfg_.train.batch % dp_->size() != 0)
      throw KeyError("train.batch", "train.batch=" + std::to_string(cfg_.train.batch) + " (the global batch) is not divisible by the " +
                                        std::to_string(dp_->size()) + " data-parallel processes");
    for (const auto& l : model_->moe_layers()) l->set_data_parallel(dp_);
  }
  sampler_ = std::make_unique<Sampler>(train_seq_.size(), derive_seed(cfg_.seed, "data"));
  trace_steps_ = cfg_.train.trace_steps;
  std::sort(trace_steps_.begin(), trace_steps_.end());
  make_optimizer();
  if (dp_) dp_->attach(trainable_);
}

void Trainer::make_optimizer() {
  std::vector<torch::Tensor> decay, no_decay;
  trainable_.clear();
  if (cfg_.train.router_only) {
    for (auto& p : model_->parameters()) p.set_requires_grad(false);
    for (auto& g : model_->gate_parameters()) {
      g.set_requires_grad(true);
      (g.dim() >= 2 ? decay : no_decay).push_back(g);
    }
    if (decay.empty()) throw Error("train.router_only=true but the model has no MoE layer (model.moe_layers is empty)");
  } else if (cfg_.lora.rank > 0) {
    // PEFT trains the adapters without weight decay; everything else is frozen.
    for (auto& p : model_->parameters()) p.set_requires_grad(false);
    for (auto& p : model_->adapter_parameters()) {
      p.set_requires_grad(true);
      no_decay.push_back(p);
    }
  } else {
    // Decoupled decay on matrices only: gains of the norms are not shrunk.
    for (auto& p : model_->parameters()) (p.dim() >= 2 ? decay : no_decay).push_back(p);
  }
  trainable_.insert(trainable_.end(), decay.begin(), decay.end());
  trainable_.insert(trainable_.end(), no_decay.begin(), no_decay.end());
  auto opts = torch::optim::AdamWOptions(cfg_.train.lr)
                  .betas({cfg_.train.beta1, cfg_.train.beta2})
                  .eps(cfg_.train.eps)
                  .weight_decay(cfg_.train.weight_decay);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  if (!decay.empty()) groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(opts));
  if (!no_decay.empty()) {
    auto nd = opts;
    nd.weight_decay(0.0);
    groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(nd));
  }
  opt_ = std::make_unique<torch::optim::AdamW>(std::move(groups), opts);
}

double Trainer::set_lr() {
  const double lr = lr_at(step_, cfg_.train.warmup, cfg_.train.steps, cfg_.train.lr, cfg_.train.min_lr_ratio);
  for (auto& g : opt_->param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
  return lr;
}

StepStats Trainer::step() {
  const auto t0 = std::chrono::steady_clock::now();
  StepStats st;
  st.step = step_ + 1;
  st.lr = set_lr();
  // Gradients start undefined (PyTorch's zero_grad(set_to_none=True)): the first
  // backward writes them rather than adding to zeroed buffers. A parameter with
  // no gradient this step (an expert that got no tokens) is skipped by AdamW.
  for (auto& p : model_->parameters()) p.mutable_grad().reset();
  const auto& moe = model_->moe_layers();
  for (const auto& l : moe) {
    LayerStepStats ls;
    ls.layer = l->layer();
    ls.loads.assign(static_cast<std::size_t>(l->experts()), 0);
    ls.mean_prob.assign(static_cast<std::size_t>(l->experts()), 0.0);
    st.layers.push_back(std::move(ls));
  }
  model_->begin_step();
  const int B = cfg_.train.batch, T = cfg_.data.seq_len, accum = cfg_.train.accum;
  // This rank's rows of the global batch.
  const int b_local = dp_ ? B / dp_->size() : B, row0 = dp_ ? dp_->rank() * b_local : 0;
  const bool trace = std::binary_search(trace_steps_.begin(), trace_steps_.end(), st.step) ||
                     (cfg_.train.trace_every > 0 && st.step % cfg_.train.trace_every == 0);
  for (int micro = 0; micro < accum; ++micro) {
    auto inputs = torch::empty({b_local, T}, torch::kLong), targets = torch::empty({b_local, T}, torch::kLong);
    const auto idx = sampler_->next(B);
    for (int b = 0; b < b_local; ++b)
      train_seq_.fill(idx[static_cast<std::size_t>(row0 + b)], inputs.data_ptr<std::int64_t>() + static_cast<std::ptrdiff_t>(b) * T,
                      targets.data_ptr<std::int64_t>() + static_cast<std::ptrdiff_t>(b) * T);
    // The scope covers backward too: each GEMM remembers its forward precision.
    GemmPrecisionScope precision(cfg_.train.bf16 ? GemmPrecision::bf16 : GemmPrecision::fp32);
    ForwardOut fo;
    torch::Tensor ce_tok, ce, total;
    {
      RECORD_FUNCTION("moesim::forward", std::vector<c10::IValue>());
      fo = model_->forward(inputs, false);
      {
        RECORD_FUNCTION("moesim::head", std::vector<c10::IValue>());
        auto lce = linear_cross_entropy(fo.hidden.view({-1, fo.hidden.size(2)}), model_->embedding, targets.view({-1}));
        ce_tok = lce.per_token;
        ce = lce.mean;
      }
      const auto& m = cfg_.moe;
      total = ce + m.aux_loss_coef * fo.aux_lb + m.z_loss_coef * fo.aux_z;
      if (m.seq_aux_coef != 0.0) total = total + m.seq_aux_coef * fo.aux_seq;
      if (m.entropy_coef != 0.0) total = total - m.entropy_coef * fo.aux_entropy;
    }
    if (dp_ && micro == accum - 1 && cfg_.train.ddp_overlap) dp_->arm();  // this backward's hooks start the all-reduce
    {
      RECORD_FUNCTION("moesim::backward", std::vector<c10::IValue>());
      (total / static_cast<double>(accum)).backward();
    }
    if (dp_ && micro == accum - 1) {
      // Before observe's all-gathers: each rank issues its collectives in one order,
      // whichever buckets its own backward happened to complete.
      RECORD_FUNCTION("moesim::allreduce", std::vector<c10::IValue>());
      dp_->average_gradients();
    }
    model_->observe(cfg_.moe.perf_signal == "loss" ? ce_tok.detach() : torch::Tensor());

    st.loss += total.item<double>() / accum;
    st.ce += ce.item<double>() / accum;
    st.aux_lb += fo.aux_lb.item<double>() / accum;
    st.aux_z += fo.aux_z.item<double>() / accum;
    st.aux_seq += fo.aux_seq.item<double>() / accum;
    st.aux_entropy += fo.aux_entropy.item<double>() / accum;
    st.tokens += static_cast<std::int64_t>(B) * T;
    add_routing(st, accum);
    if (trace && micro == 0) record_trace(st.step, inputs);
  }
  if (dp_) reduce_stats(st);
  const double max_norm = cfg_.train.clip > 0 ? cfg_.train.clip : std::numeric_limits<double>::infinity();
  {
    RECORD_FUNCTION("moesim::optimizer", std::vector<c10::IValue>());
    // The clip factor is applied as AdamW reads each gradient: one pass fewer
    // over the gradients than clip_grad_norm followed by the step.
    st.grad_norm = grad_norm(trainable_);
    fused_adamw_step(*opt_, clip_scale(st.grad_norm, max_norm), cfg_.train.bf16);
  }
  ++step_;
  tokens_seen_ += st.tokens;
  for (std::size_t i = 0; i < moe.size(); ++i) st.layers[i].state = moe[i]->policy().state_vectors();
  st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  st.tokens_per_s = st.seconds > 0 ? static_cast<double>(st.tokens) / st.seconds : 0.0;
  return st;
}

// The micro-batch's routing (of the routed batch) into the step's per-layer stats.
void Trainer::add_routing(StepStats& st, int accum) const {
  const auto& moe = model_->moe_layers();
  for (std::size_t i = 0; i < moe.size(); ++i) {
    const auto& a = moe[i]->last_assignment;
    auto& ls = st.layers[i];
    for (std::size_t e = 0; e < ls.loads.size(); ++e) {
      ls.loads[e] += a.counts[e];
      ls.mean_prob[e] += moe[i]->last_mean_prob[e] / accum;
    }
    ls.routed += a.routed;
    ls.dropped += a.dropped;
    ls.dropped_tokens += a.dropped_tokens;
    ls.tokens += a.tokens;
  }
}

// The routed batch's tokens, logits, choices and performance of every MoE layer.
void Trainer::record_trace(long step, const torch::Tensor& inputs) {
  // Every rank's tokens, gathered: a collective, so on every rank.
  const auto tokens = dp_ ? dp_->all_gather(inputs).contiguous() : inputs;
  if (!lead()) return;
  if (!trace_) trace_ = std::make_unique<TraceWriter>((fs::path(cfg_.train.out_dir) / "traces").string());
  trace_->record_tokens(step, tokens.data_ptr<std::int64_t>(), tokens.numel());
  for (const auto& l : model_->moe_layers()) {
    const auto& lg = l->routed_logits;
    trace_->record_logits(l->layer(), step, lg.data_ptr<float>(), lg.size(0), lg.size(1));
    trace_->record_routing(l->layer(), step, l->last_assignment, l->last_perf.data());
  }
  trace_->commit();
}

// Data-parallel ranks must hold one model: same parameter bytes, same policy
// states and routing streams (checked at checkpoints and at the end). Digests of each are gathered
// and compared on every rank; a difference is an Error naming the part and the rank.
void Trainer::verify_replicas() {
  if (!dp_ || verified_step_ == step_) return;
  verified_step_ = step_;
  std::uint64_t params = kFnvOffset, policies = kFnvOffset;
  for (const auto& p : model_->parameters()) {
    auto c = p.detach().contiguous();
    params = fnv1a_bytes(c.data_ptr(), c.nbytes(), params);
  }
  for (const auto& l : model_->moe_layers()) {
    std::ostringstream ps;
    l->policy().save(ps);
    const auto text = ps.str();
    const auto rng = rng_to_vec(l->rng());
    policies = fnv1a_bytes(rng.data(), rng.size() * sizeof(std::int64_t), fnv1a(text, policies));
  }
  auto mine = torch::tensor({static_cast<std::int64_t>(params >> 1), static_cast<std::int64_t>(policies >> 1)}, torch::kLong);
  auto all = dp_->all_gather(mine).view({dp_->size(), 2});
  const char* what[] = {"parameters", "policy states and routing streams"};
  for (int r = 1; r < dp_->size(); ++r)
    for (int k = 0; k < 2; ++k)
      if (all[r][k].item<std::int64_t>() != all[0][k].item<std::int64_t>())
        throw Error("data-parallel rank " + std::to_string(r) + "'s " + what[k] + " differ from rank 0's after step " +
                    std::to_string(step_));
  if (log_) std::fprintf(log_, "step %ld: parameters, policy states and routing streams identical on %d ranks\n", step_, dp_->size());
}

// Losses and mean probabilities were this rank's: their mean over ranks is the
// global batch's (equal shards). Loads and counts already are (the routed batch).
void Trainer::reduce_stats(StepStats& st) {
  std::vector<double> v = {st.loss, st.ce, st.aux_lb, st.aux_z, st.aux_seq, st.aux_entropy};
  for (const auto& l : st.layers) v.insert(v.end(), l.mean_prob.begin(), l.mean_prob.end());
  auto t = torch::from_blob(v.data(), {static_cast<std::int64_t>(v.size())}, torch::kDouble);
  dp_->all_reduce_sum(t);
  const double inv = 1.0 / dp_->size();
  std::size_t i = 0;
  for (double* x : {&st.loss, &st.ce, &st.aux_lb, &st.aux_z, &st.aux_seq, &st.aux_entropy}) *x = v[i++] * inv;
  for (auto& l : st.layers)
    for (auto& p : l.mean_prob) p = v[i++] * inv;
}

double Trainer::evaluate(long max_batches) {
  return evaluate_model(*model_, val_seq_, cfg_.train.batch, max_batches, cfg_.train.bf16).loss;
}

EvalResult evaluate_model(Transformer& model, const PackedSequences& seqs, int batch, long max_batches, bool bf16) {
  const int B = batch, T = seqs.seq_len();
  const auto n = seqs.size();
  if (n == 0) throw Error("validation split has fewer than data.seq_len+1 tokens: cannot evaluate");
  long batches = static_cast<long>((n + B - 1) / B);
  if (max_batches > 0) batches = std::min(batches, max_batches);
  torch::NoGradGuard ng;
  const bool was_training = model.is_training();
  model.eval();
  double sum = 0;
  std::int64_t count = 0;
  for (long b = 0; b < batches; ++b) {
    const auto first = static_cast<std::int64_t>(b) * B;
    const int rows = static_cast<int>(std::min<std::int64_t>(B, n - first));
    auto inputs = torch::empty({rows, T}, torch::kLong), targets = torch::empty({rows, T}, torch::kLong);
    for (int r = 0; r < rows; ++r)
      seqs.fill(first + r, inputs.data_ptr<std::int64_t>() + static_cast<std::ptrdiff_t>(r) * T,
                targets.data_ptr<std::int64_t>() + static_cast<std::ptrdiff_t>(r) * T);
    GemmPrecisionScope precision(bf16 ? GemmPrecision::bf16 : GemmPrecision::fp32);
    const ForwardOut fo = model.forward(inputs, false);
    const auto lce = linear_cross_entropy(fo.hidden.reshape({-1, fo.hidden.size(2)}), model.embedding, targets.view({-1}));
    sum += lce.per_token.to(torch::kDouble).sum().item<double>();
    count += static_cast<std::int64_t>(rows) * T;
  }
  if (was_training) model.train();
  return {sum / static_cast<double>(count), count};
}

void Trainer::save(const std::string& path) const {
  CheckpointMeta meta = {
      {"config", c10::IValue(dump_config(cfg_))},
      {"tokenizer", c10::IValue(data_.tokenizer_proto)},
      {"vocab", c10::IValue(static_cast<std::int64_t>(data_.vocab))},
      {"step", c10::IValue(static_cast<std::int64_t>(step_))},
      {"tokens_seen", c10::IValue(tokens_seen_)},
      {"data_epoch", c10::IValue(sampler_->state().epoch)},
      {"data_pos", c10::IValue(sampler_->state().pos)},
      {"torch_rng", c10::IValue(at::detail::getDefaultCPUGenerator().get_state())},
  };
  for (const auto& l : model_->moe_layers()) {
    std::ostringstream ps;
    l->policy().save(ps);
    const std::string tag = std::to_string(l->layer());
    meta.emplace_back("policy_" + tag, c10::IValue(ps.str()));
    meta.emplace_back("route_rng_" + tag, c10::IValue(rng_to_vec(l->rng())));
  }
  write_checkpoint(path, *model_, *opt_, meta);
}

namespace {

void load_policies(Transformer& model, const CheckpointReader& ck, bool rngs) {
  for (const auto& l : model.moe_layers()) {
    const std::string tag = std::to_string(l->layer());
    std::istringstream ps(ck.get("policy_" + tag).toStringRef());
    l->policy().load(ps, ck.path() + " (policy of layer " + tag + ")");
    if (rngs) vec_to_rng(ck.get("route_rng_" + tag).toIntVector(), l->rng(), ck.path());
  }
}

}  // namespace

void Trainer::load(const std::string& path) {
  CheckpointReader ck(path);
  const auto saved = parse_config_text(ck.get("config").toStringRef(), path + " (config)");
  check_compatible(cfg_, saved, path);
  check_same_run(cfg_, saved, path);
  if (ck.get("vocab").toInt() != data_.vocab)
    throw Error(path + ": checkpoint vocabulary differs from this run's tokenizer");
  ck.load_model(*model_);
  ck.load_optimizer(*opt_, *model_);
  load_policies(*model_, ck, true);
  step_ = ck.get("step").toInt();
  tokens_seen_ = ck.get("tokens_seen").toInt();
  sampler_->set_state({ck.get("data_epoch").toInt(), ck.get("data_pos").toInt()});
  auto gen = at::detail::getDefaultCPUGenerator();
  gen.set_state(ck.get("torch_rng").toTensor());
}

void Trainer::load_weights(const std::string& path) {
  if (cfg_.lora.rank == 0) {
    CheckpointReader ck(path);
    ck.load_model(*model_);
    return;
  }
  // The base model has no adapters: load it as it was saved, then copy its weights under the fresh adapters.
  const auto base = load_model(path);
  copy_weights(*base.model, *model_, path);
}

std::vector<std::string> Trainer::log_columns() const {
  std::vector<std::string> h = {"step", "tokens", "loss", "ce", "aux_lb", "aux_z", "aux_seq", "aux_entropy",
                                "lr", "grad_norm", "tokens_per_s"};
  for (const auto& l : model_->moe_layers()) {
    std::string p = "L";
    p += std::to_string(l->layer());
    p += "_";
    for (int e = 0; e < l->experts(); ++e) h.push_back(p + "load" + std::to_string(e));
    for (int e = 0; e < l->experts(); ++e) h.push_back(p + "prob" + std::to_string(e));
    for (const char* c : {"maxvio", "gini", "drop", "unrouted", "cv", "idle", "routed", "dropped",
                          "dropped_tokens", "routed_tokens"})
      h.push_back(p + c);
    for (const auto& nv : l->policy().state_vectors())
      for (const char* c : {"_mean", "_min", "_max"}) h.push_back(p + nv.first + c);
  }
  return h;
}

void Trainer::write_logs_header(bool resume) {
  const auto dir = fs::path(cfg_.train.out_dir);
  const auto csv = (dir / "train_log.csv").string(), eval_csv = (dir / "eval_log.csv").string();
  const std::string header = join_csv(log_columns());
  if (resume && fs::exists(csv)) {
    // Rows appended under another header (a log written by an older build) would misalign every column.
    std::ifstream in(csv);
    std::string first;
    std::getline(in, first);
    if (first != header)
      throw Error(csv + ": its header is not the one this build writes (a log from another version); "
                  "train into a new train.out_dir");
    truncate_csv(csv, step_);
    truncate_csv(eval_csv, step_);
    csv_ = std::fopen(csv.c_str(), "a");
    eval_csv_ = std::fopen(eval_csv.c_str(), "a");
  } else {
    csv_ = std::fopen(csv.c_str(), "w");
    eval_csv_ = std::fopen(eval_csv.c_str(), "w");
    if (csv_) std::fprintf(csv_, "%s\n", header.c_str());
    if (eval_csv_) std::fprintf(eval_csv_, "step,tokens,val_loss,val_ppl\n");
  }
  if (!csv_ || !eval_csv_) throw Error(csv + ": cannot open log for writing");
  std::fflush(csv_);
  std::fflush(eval_csv_);
}

void Trainer::log_step(const StepStats& s) {
  std::vector<std::string> row = {std::to_string(s.step), std::to_string(tokens_seen_), format_number(s.loss), format_number(s.ce),
                                  format_number(s.aux_lb), format_number(s.aux_z), format_number(s.aux_seq), format_number(s.aux_entropy), format_number(s.lr),
                                  format_number(s.grad_norm), format_number(s.tokens_per_s)};
  for (const auto& l : s.layers) {
    for (auto v : l.loads) row.push_back(std::to_string(v));
    for (auto v : l.mean_prob) row.push_back(format_number(v));
    const double drop = l.routed > 0 ? static_cast<double>(l.dropped) / static_cast<double>(l.routed) : 0.0;
    const double unrouted = l.tokens > 0 ? static_cast<double>(l.dropped_tokens) / static_cast<double>(l.tokens) : 0.0;
    const std::vector<double> loads(l.loads.begin(), l.loads.end());
    const auto idle = std::count(l.loads.begin(), l.loads.end(), std::int64_t{0});
    for (double x : {max_violation(loads), gini(loads), drop, unrouted, load_cv(loads)}) row.push_back(format_number(x));
    for (std::int64_t n : {static_cast<std::int64_t>(idle), l.routed, l.dropped, l.dropped_tokens, l.tokens})
      row.push_back(std::to_string(n));
    for (const auto& nv : l.state) {
      const auto& v = nv.second;
      double sum = 0, mn = v.empty() ? 0 : v[0], mx = mn;
      for (double x : v) {
        sum += x;
        mn = std::min(mn, x);
        mx = std::max(mx, x);
      }
      for (double x : {v.empty() ? 0.0 : sum / static_cast<double>(v.size()), mn, mx}) row.push_back(format_number(x));
    }
  }
  std::fprintf(csv_, "%s\n", join_csv(row).c_str());
  std::fflush(csv_);
}

// Resumes from ckpt (or takes train.init_from's weights), then rank 0 opens the
// folder's outputs. Returns whether it resumed.
bool Trainer::start_from(const std::string& ckpt) {
  const auto dir = fs::path(cfg_.train.out_dir);
  bool resumed = false;
  if (cfg_.train.resume && fs::exists(ckpt)) {
    load(ckpt);  // refuses another run's config before anything in the folder changes
    resumed = true;
    if (log_) std::fprintf(log_, "resumed from %s at step %ld\n", ckpt.c_str(), step_);
  } else if (!cfg_.train.init_from.empty()) {
    load_weights(cfg_.train.init_from);
    if (log_) std::fprintf(log_, "weights from %s\n", cfg_.train.init_from.c_str());
  }
  if (dp_) {
    // Same seed, same weights; rank 0's are broadcast anyway, as DistributedDataParallel does.
    dp_->broadcast(model_->parameters());
    dp_->barrier();  // every rank has read the checkpoint before rank 0 may overwrite it
  }
  if (lead()) {
    write_file_atomic((dir / "config.yaml").string(), dump_config(cfg_));
    write_logs_header(resumed);
    if (!trace_steps_.empty() || cfg_.train.trace_every > 0) {
      trace_ = std::make_unique<TraceWriter>((dir / "traces").string());
      if (resumed) trace_->truncate_after(step_);
    }
  }
  return resumed;
}

void Trainer::run() {
  const auto dir = fs::path(cfg_.train.out_dir);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error("train.out_dir '" + cfg_.train.out_dir + "': cannot create: " + ec.message());
  // Rank 0 writes the folder; the other ranks only read its checkpoint.
  std::optional<DirLock> lock;
  if (lead()) lock.emplace(dir.string(), "another `moesim train` is writing into this folder (wait for it, or pick another train.out_dir)");
  const std::string ckpt = (dir / "checkpoint.pt").string();
  const bool resumed = start_from(ckpt);
  if (log_)
    std::fprintf(log_, "training %s: %ld steps x %d x %d x %d tokens%s, policy %s, %s\n", cfg_.train.out_dir.c_str(),
                 cfg_.train.steps, cfg_.train.accum, cfg_.train.batch, cfg_.data.seq_len,
                 dp_ ? (" on " + std::to_string(dp_->size()) + " data-parallel processes (Gloo)").c_str() : "",
                 cfg_.policy.name.c_str(), cfg_.train.bf16 ? "bf16 GEMMs" : "fp32");
  const long start_step = step_;
  double recent = 0;  // EMA of seconds per step for the ETA
  double last_val = std::numeric_limits<double>::quiet_NaN();
  long last_eval_step = -1;
  auto do_eval = [&] {
    const double v = evaluate(cfg_.train.eval_batches);
    last_val = v;
    last_eval_step = step_;
    std::fprintf(eval_csv_, "%ld,%lld,%s,%s\n", step_, static_cast<long long>(tokens_seen_), format_number(v).c_str(), format_number(std::exp(v)).c_str());
    std::fflush(eval_csv_);
    if (log_) std::fprintf(log_, "eval step %ld: val loss %.4f, val ppl %.2f\n", step_, v, std::exp(v));
  };
  bool exited = false;
  while (step_ < cfg_.train.steps) {
    const auto s = step();
    recent = recent == 0 ? s.seconds : 0.9 * recent + 0.1 * s.seconds;
    if (lead()) {
      log_step(s);
      if (log_ && (s.step % cfg_.train.log_every == 0 || s.step == 1 || s.step == cfg_.train.steps)) {
        std::fprintf(log_, "step %ld/%ld | loss %.4f ce %.4f lb %.3f z %.3f | lr %.2e | %.0f tok/s | %.2f s/step | ETA %s\n",
                     s.step, cfg_.train.steps, s.loss, s.ce, s.aux_lb, s.aux_z, s.lr, s.tokens_per_s, s.seconds,
                     fmt_duration(recent * static_cast<double>(cfg_.train.steps - s.step)).c_str());
        std::fflush(log_);
      }
      if (cfg_.train.eval_every > 0 && step_ % cfg_.train.eval_every == 0) do_eval();
    }
    if (cfg_.train.ckpt_every > 0 && step_ % cfg_.train.ckpt_every == 0) {
      verify_replicas();
      if (lead()) save(ckpt);
    }
    if (cfg_.train.exit_interval > 0 && step_ % cfg_.train.exit_interval == 0 && step_ < cfg_.train.steps) {
      verify_replicas();
      if (lead()) save(ckpt);
      if (log_) std::fprintf(log_, "exit_interval: stopped after step %ld of %ld; the same command resumes\n", step_, cfg_.train.steps);
      exited = true;
      break;
    }
  }
  if (exited) {
    if (lead()) {
      std::fclose(csv_);
      std::fclose(eval_csv_);
      csv_ = eval_csv_ = nullptr;
    }
    if (dp_) dp_->barrier();
    return;
  }
  // A resumed run that was already complete has nothing new to evaluate or save.
  const bool trained_now = step_ > start_step;
  if (trained_now || !resumed) verify_replicas();
  if (!lead()) {
    dp_->barrier();  // rank 0 has saved
    return;
  }
  if (trained_now && last_eval_step != step_) do_eval();
  if (trained_now || !resumed) save(ckpt);
  if (!trained_now && resumed && log_) std::fprintf(log_, "run already complete at step %ld\n", step_);
  std::ostringstream js;
  // No evaluation (train.steps=0): val_loss is NaN, which JSON spells null.
  js << "{\"policy\": " << json_string(cfg_.policy.name) << ", \"steps\": " << step_ << ", \"tokens\": " << tokens_seen_
     << ", \"val_loss\": " << json_number(last_val) << ", \"val_ppl\": " << json_number(std::exp(last_val)) << "}\n";
  if (trained_now || !resumed) write_file_atomic((dir / "summary.json").string(), js.str());
  std::fclose(csv_);
  std::fclose(eval_csv_);
  csv_ = eval_csv_ = nullptr;
  if (dp_) dp_->barrier();
}

LoadedModel load_model(const std::string& checkpoint) {
  CheckpointReader ck(checkpoint);
  LoadedModel lm;
  lm.cfg = parse_config_text(ck.get("config").toStringRef(), checkpoint + " (config)");
  lm.tokenizer_proto = ck.get("tokenizer").toStringRef();
  const auto vocab = static_cast<int>(ck.get("vocab").toInt());
  lm.step = ck.get("step").toInt();
  torch::manual_seed(lm.cfg.seed);
  lm.model = std::make_shared<Transformer>(lm.cfg, vocab);
  ck.load_model(*lm.model);
  load_policies(*lm.model, ck, true);
  lm.model->eval();
  return lm;
}

double train_flops_per_token(const ModelConfig& m, int vocab, int seq_len) {
  const double d = m.dim;
  double params = static_cast<double>(vocab) * d;  // output head (the input lookup is free)
  for (int l = 0; l < m.layers; ++l) {
    params += 4.0 * d * d;
    const bool moe = std::find(m.moe_layers.begin(), m.moe_layers.end(), l) != m.moe_layers.end();
    params += moe ? m.k * 3.0 * d * m.expert_hidden + d * m.experts : 3.0 * d * m.ff_hidden;
  }
  // 6N for the weights (forward 2N, backward 4N) plus attention scores and
  // context, 2 * 2 * T * d per layer forward, tripled (PaLM appendix B).
  return 6.0 * params + 12.0 * m.layers * seq_len * d;
}

}  // namespace moesim::torch_backend
