// Stage 3: the target model trained on the selection (LoRA on a frozen base, or full).
#include <algorithm>
#include <sstream>

#include "common/csv.hpp"
#include "common/error.hpp"
#include "common/text.hpp"
#include "reports/plotter.hpp"
#include "selection/stage_util.hpp"
#include "selection/stages.hpp"
#include "torch_backend/lora.hpp"
#include "torch_backend/tokenizer.hpp"
#include "torch_backend/trainer.hpp"

namespace moesim::selection {

namespace tb = torch_backend;

namespace {

tb::TrainConfig target_train_config(const SelectConfig& cfg, const tb::TrainConfig& base, long per_epoch) {
  auto t = base;
  const auto& g = cfg.target;
  t.seed = cfg.seed;
  t.data.dir = cfg.corpus.data_dir;
  t.lora = {};
  if (g.mode == "lora") t.lora = {g.lora_rank, g.lora_alpha, g.lora_targets};
  t.train.router_only = false;
  t.train.init_from = g.base;
  t.train.lr = g.lr;
  t.train.warmup = g.warmup_steps;
  t.train.batch = g.batch;
  t.train.accum = 1;
  t.train.steps = per_epoch * g.epochs;
  t.train.exit_interval = 0;
  t.train.eval_every = per_epoch;
  t.train.eval_batches = cfg.eval_batches;
  t.train.ckpt_every = per_epoch;
  t.train.log_every = std::max(1L, per_epoch / 4);
  t.train.trace_steps.clear();
  t.train.trace_every = 0;
  t.train.out_dir = stage_dir(cfg, "train");
  t.train.resume = true;
  t.train.allow_config_change = false;
  t.train.threads = cfg.threads;
  return t;
}

void plot_loss(const std::string& dir, std::FILE* log) {
  const auto train = read_csv(path_in(dir, "train_log.csv")), eval = read_csv(path_in(dir, "eval_log.csv"));
  std::ostringstream a, b;
  a << "# step ce\n";
  for (std::size_t r = 0; r < train.rows.size(); ++r)
    a << train.rows[r][train.need_column("step")] << ' ' << train.rows[r][train.need_column("ce")] << "\n";
  b << "# step val_loss\n";
  for (std::size_t r = 0; r < eval.rows.size(); ++r)
    b << eval.rows[r][eval.need_column("step")] << ' ' << eval.rows[r][eval.need_column("val_loss")] << "\n";
  std::vector<std::string> warnings;
  Plotter plot(path_in(dir, "plots"), true, "gnuplot", warnings);
  if (plot.enabled()) {
    plot.data("train.dat", a.str());
    plot.data("eval.dat", b.str());
    plot.plot("loss", 900, 500,
              "set title 'Target model on the selection: loss'\nset xlabel 'step'\nset ylabel 'cross-entropy (nats/token)'\nset grid\n"
              "plot " + data_file("train.dat") + " using 1:2 with lines lw 1.5 title 'train (selection)', " + data_file("eval.dat") +
                  " using 1:2 with linespoints lw 2 pt 7 title 'C4 validation'\n");
  }
  if (log)
    for (const auto& w : warnings) std::fprintf(log, "train: warning: %s\n", w.c_str());
}

}  // namespace

void run_train(const SelectConfig& cfg, std::FILE* log) {
  validate(cfg);
  const auto& g = cfg.target;
  if (g.base.empty()) throw KeyError("target.base", "config key 'target.base': required: the pre-trained target checkpoint (moesim train)");
  const auto selected = path_in(stage_dir(cfg, "score"), "selected.jsonl");
  require_from(plan_score(cfg), selected);
  const auto base = tb::load_model(g.base);
  if (base.cfg.lora.rank > 0)
    throw Error(g.base + ": already carries LoRA adapters (lora.rank=" + std::to_string(base.cfg.lora.rank) +
                "); the base must be a plain pre-trained checkpoint");
  // Neither the target corpus nor the held-out set may be in the pre-training documents.
  const long pre_docs = base.cfg.data.max_docs, limit = std::min(cfg.corpus.first_doc, cfg.corpus.heldout_first);
  if (pre_docs == 0 || pre_docs > limit)
    throw Error(g.base + ": pre-trained on " + (pre_docs == 0 ? std::string("every") : "the first " + std::to_string(pre_docs)) +
                " C4 train documents, which include the target corpus or the held-out set (they start at document " +
                std::to_string(limit) + "); pre-train it with data.max_docs <= " + std::to_string(limit));
  auto tok = tb::Tokenizer::from_proto(base.tokenizer_proto, g.base);
  const auto docs = read_jsonl(selected);
  const auto train = token_stream(tok, texts_of(docs));
  const auto val = token_stream(tok, validation_texts(cfg.corpus.data_dir, log));
  const long seqs = static_cast<long>(tb::PackedSequences(&train, base.cfg.data.seq_len).size());
  if (seqs == 0) throw Error(selected + ": the selection holds fewer than " + std::to_string(base.cfg.data.seq_len + 1) + " tokens");
  const long per_epoch = std::max(1L, seqs / g.batch);
  const auto tcfg = target_train_config(cfg, base.cfg, per_epoch);
  if (log)
    std::fprintf(log, "train: %s on %zu selected documents (%ld sequences), %s, %d epochs x %ld steps\n", g.base.c_str(), docs.size(),
                 seqs, g.mode == "lora" ? ("LoRA rank " + std::to_string(g.lora_rank) + " on " + g.lora_targets).c_str() : "full fine-tuning",
                 g.epochs, per_epoch);
  const auto dir = stage_dir(cfg, "train");
  begin_training_stage(plan_train(cfg), log);
  tb::Trainer tr(tcfg, {&train, &val, tok.vocab_size(), tok.proto()}, log);
  tr.run();
  std::vector<std::string> outputs = {path_in(dir, "checkpoint.pt"), path_in(dir, "train_log.csv"), path_in(dir, "summary.json")};
  if (g.mode == "lora") {
    const auto adapter = path_in(dir, "adapter.pt");
    tb::write_adapters(adapter, tr.model(), {g.lora_rank, g.lora_alpha, g.lora_targets, file_digest(g.base), 0});
    outputs.push_back(adapter);
  }
  plot_loss(dir, log);
  finish_stage(plan_train(cfg), outputs);
  if (log)
    std::fprintf(log, "train: %s%s\n", g.mode == "lora" ? outputs.back().c_str() : outputs.front().c_str(),
                 g.mode == "lora" ? " (adapters only; the base is unchanged)" : "");
}

}  // namespace moesim::selection
