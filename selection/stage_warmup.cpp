// Stage 1: the selector's router trained alone on the corpus, a full checkpoint per epoch.
#include <algorithm>
#include <filesystem>

#include "common/error.hpp"
#include "selection/stage_util.hpp"
#include "selection/stages.hpp"
#include "torch_backend/checkpoint.hpp"
#include "torch_backend/tokenizer.hpp"
#include "torch_backend/trainer.hpp"

namespace moesim::selection {

namespace fs = std::filesystem;
namespace tb = torch_backend;

std::string epoch_checkpoint(const SelectConfig& cfg, int epoch) {
  return path_in(path_in(warmup_dir(cfg), "epoch_" + std::to_string(epoch)), "checkpoint.pt");
}

std::string selector_checkpoint(const SelectConfig& cfg) {
  if (!cfg.score.selector.empty()) return cfg.score.selector;
  return epoch_checkpoint(cfg, cfg.score.epoch > 0 ? cfg.score.epoch : cfg.warmup.epochs);
}

namespace {

// The selector's own config, turned into router-only training on the corpus.
tb::TrainConfig warmup_train_config(const SelectConfig& cfg, const tb::TrainConfig& selector, long per_epoch) {
  auto t = selector;
  t.seed = cfg.seed;
  t.data.dir = cfg.corpus.data_dir;
  t.lora = {};
  t.train.router_only = true;
  t.train.init_from = cfg.warmup.selector;
  t.train.lr = cfg.warmup.lr;
  t.train.warmup = cfg.warmup.warmup_steps;
  t.train.batch = cfg.warmup.batch;
  t.train.accum = 1;
  t.train.steps = per_epoch * cfg.warmup.epochs;
  t.train.exit_interval = per_epoch;  // run() returns after each epoch, checkpoint saved
  t.train.eval_every = per_epoch;
  t.train.eval_batches = cfg.eval_batches;
  t.train.ckpt_every = 0;
  t.train.log_every = std::max(1L, per_epoch / 4);
  t.train.trace_steps.clear();
  t.train.trace_every = 0;
  t.train.out_dir = warmup_dir(cfg);
  t.train.resume = true;
  t.train.allow_config_change = false;
  t.train.threads = cfg.threads;
  return t;
}

}  // namespace

void run_warmup(const SelectConfig& cfg, std::FILE* log) {
  validate(cfg);
  if (cfg.warmup.selector.empty())
    throw KeyError("warmup.selector", "config key 'warmup.selector': required: a trained MoE checkpoint (moesim train ... model.moe_layers=...)");
  const auto mixed = corpus_paths(cfg).mixed;
  require_from(plan_mix(cfg), mixed);
  const auto sel = tb::load_model(cfg.warmup.selector);
  if (sel.model->moe_layers().empty()) throw Error(cfg.warmup.selector + ": the selector has no MoE layer: nothing to warm up");
  auto tok = tb::Tokenizer::from_proto(sel.tokenizer_proto, cfg.warmup.selector);
  const auto train = token_stream(tok, texts_of(read_jsonl(mixed)));
  const auto val = token_stream(tok, validation_texts(cfg.corpus.data_dir, log));
  const long seqs = static_cast<long>(tb::PackedSequences(&train, sel.cfg.data.seq_len).size());
  const long per_epoch = std::max(1L, seqs / cfg.warmup.batch);
  const auto tcfg = warmup_train_config(cfg, sel.cfg, per_epoch);
  if (log)
    std::fprintf(log, "warmup: %s, router only, %d epochs x %ld steps (%ld sequences of %d tokens, batch %d)\n",
                 cfg.warmup.selector.c_str(), cfg.warmup.epochs, per_epoch, seqs, sel.cfg.data.seq_len, cfg.warmup.batch);
  begin_training_stage(plan_warmup(cfg), log);
  tb::Trainer tr(tcfg, {&train, &val, tok.vocab_size(), tok.proto()}, log);
  std::vector<std::string> outputs;
  const auto ckpt = path_in(warmup_dir(cfg), "checkpoint.pt");
  // An epoch's checkpoint.pt is copied to epoch_N/ before the next epoch
  // starts; a run killed between the two copies it here.
  auto keep_epoch = [&](long step) {
    if (step <= 0 || step % per_epoch != 0) return;
    const int epoch = static_cast<int>(step / per_epoch);
    const auto dst = epoch_checkpoint(cfg, epoch);
    if (fs::exists(dst) && step < tcfg.train.steps) return;
    make_dir(fs::path(dst).parent_path().string());
    copy_file_atomic(ckpt, dst);
    if (log) std::fprintf(log, "warmup: epoch %d saved as %s\n", epoch, dst.c_str());
  };
  if (fs::exists(ckpt)) keep_epoch(static_cast<long>(tb::CheckpointReader(ckpt).get("step").toInt()));
  for (;;) {
    tr.run();  // to the end of the current epoch (resuming from checkpoint.pt)
    keep_epoch(tr.current_step());
    if (tr.current_step() >= tcfg.train.steps) break;
  }
  for (int e = 1; e <= cfg.warmup.epochs; ++e) outputs.push_back(epoch_checkpoint(cfg, e));
  finish_stage(plan_warmup(cfg), outputs);
}

}  // namespace moesim::selection
