// Stage 4: the merged target model's held-out perplexity, and how well the
// selection rejected the corrupted documents.
#include <cmath>
#include <limits>
#include <map>
#include <sstream>

#include "common/csv.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/json.hpp"
#include "selection/scoring.hpp"
#include "selection/stage_util.hpp"
#include "selection/stages.hpp"
#include "torch_backend/lora.hpp"
#include "torch_backend/model.hpp"
#include "torch_backend/runtime.hpp"
#include "torch_backend/tokenizer.hpp"
#include "torch_backend/trainer.hpp"

namespace moesim::selection {

namespace tb = torch_backend;

namespace {

// The base with the adapters of adapter.pt merged in (W + alpha/r B A), as a
// plain model, routing with the policy states training ended with (a stateful
// policy's, e.g. loss-free biases, travel in train/checkpoint.pt).
std::shared_ptr<tb::Transformer> merged_model(const std::string& base_path, const std::string& adapter,
                                              const std::string& trained) {
  const auto info = tb::read_adapter_info(adapter);
  if (info.base_digest != file_digest(base_path))
    throw Error(adapter + ": trained on another base checkpoint than " + base_path + " (digest " + info.base_digest + ", now " +
                file_digest(base_path) + "); rerun `moesim select train`");
  auto base = tb::load_model(base_path);
  auto cfg = base.cfg;
  cfg.lora = {info.rank, info.alpha, info.targets};
  tb::Transformer adapted(cfg, base.model->vocab());
  tb::copy_weights(*base.model, adapted, base_path);
  tb::read_adapters(adapter, adapted);
  tb::merge_adapters(adapted, *base.model);
  const auto after = tb::load_model(trained);
  for (std::size_t i = 0; i < base.model->moe_layers().size(); ++i) {
    std::stringstream st;
    after.model->moe_layers()[i]->policy().save(st);
    base.model->moe_layers()[i]->policy().load(st, trained + " (policy state)");
  }
  return base.model;
}

struct Perplexity {
  double loss = 0, ppl = 0;
  std::int64_t tokens = 0;
};

Perplexity perplexity(tb::Transformer& m, const std::vector<std::int32_t>& stream, int seq_len, long batches) {
  tb::PackedSequences seqs(&stream, seq_len);
  const auto r = tb::evaluate_model(m, seqs, 8, batches, false);
  return {r.loss, std::exp(r.loss), r.tokens};
}

std::string selection_json(const SelectConfig& cfg) {
  const auto labels = read_csv(corpus_paths(cfg).labels);
  const auto scores = read_csv(path_in(stage_dir(cfg, "score"), "scores.csv"));
  std::map<long, std::pair<bool, std::string>> label;  // source_index -> corrupted, kind
  const auto li = labels.need_column("source_index"), lc = labels.need_column("corrupted"), lk = labels.need_column("kind");
  for (std::size_t r = 0; r < labels.rows.size(); ++r)
    label[std::lround(labels.number(r, li))] = {labels.number(r, lc) != 0, labels.rows[r][lk]};
  std::vector<bool> sel, bad;
  std::map<std::string, std::pair<int, int>> per_kind;  // kind -> rejected, total
  const auto si = scores.need_column("source_index"), ss = scores.need_column("selected");
  for (std::size_t r = 0; r < scores.rows.size(); ++r) {
    const auto it = label.find(std::lround(scores.number(r, si)));
    if (it == label.end()) throw Error(scores.source + ": document " + scores.rows[r][si] + " is not in " + labels.source);
    sel.push_back(scores.number(r, ss) != 0);
    bad.push_back(it->second.first);
    auto& k = per_kind[it->second.second];
    k.first += !sel.back();
    ++k.second;
  }
  const auto st = rejection_stats(sel, bad);
  std::ostringstream js;
  js << "\"documents\": " << st.docs << ", \"corrupted\": " << st.corrupted << ", \"selected\": " << (st.docs - st.rejected)
     << ", \"rejection_precision\": " << json_number(st.precision) << ", \"rejection_recall\": " << json_number(st.recall)
     << ", \"clean_share_selected\": " << json_number(st.clean_selected) << ", \"rejected_share_by_kind\": {";
  bool first = true;
  for (const auto& [kind, c] : per_kind) {
    js << (first ? "" : ", ") << json_string(kind) << ": " << json_number(static_cast<double>(c.first) / c.second);
    first = false;
  }
  js << "}";
  return js.str();
}

}  // namespace

void run_eval(const SelectConfig& cfg, std::FILE* log) {
  validate(cfg);
  tb::configure_runtime(cfg.threads);
  const auto& g = cfg.target;
  if (g.base.empty()) throw KeyError("target.base", "config key 'target.base': required: the pre-trained target checkpoint");
  const auto plan = plan_eval(cfg);
  const auto train_dir = stage_dir(cfg, "train"), trained = path_in(train_dir, "checkpoint.pt"),
             adapter = path_in(train_dir, "adapter.pt");
  for (const auto& p : {trained, path_in(train_dir, "summary.json")}) require_from(plan_train(cfg), p);
  if (g.mode == "lora") require_from(plan_train(cfg), adapter);
  require_from(plan_score(cfg), path_in(stage_dir(cfg, "score"), "scores.csv"));
  for (const auto& p : {corpus_paths(cfg).heldout, corpus_paths(cfg).labels}) require_from(plan_mix(cfg), p);
  auto base = tb::load_model(g.base);
  auto model = g.mode == "lora" ? merged_model(g.base, adapter, trained) : tb::load_model(trained).model;
  auto tok = tb::Tokenizer::from_proto(base.tokenizer_proto, g.base);
  const auto val = token_stream(tok, validation_texts(cfg.corpus.data_dir, log));
  const auto held = token_stream(tok, texts_of(read_jsonl(corpus_paths(cfg).heldout)));
  const int T = base.cfg.data.seq_len;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  if (log) std::fprintf(log, "eval: perplexity of the base and of the trained model on C4 validation and on the held-out documents\n");
  const int sets = cfg.eval_base ? 4 : 2;
  Progress prog(log, "eval (held-out sets)", sets);
  const auto pv = perplexity(*model, val, T, cfg.eval_batches);
  prog.tick(1);
  const auto ph = perplexity(*model, held, T, cfg.eval_batches);
  prog.tick(2);
  Perplexity bv{nan, nan, 0}, bh{nan, nan, 0};
  if (cfg.eval_base) {
    bv = perplexity(*base.model, val, T, cfg.eval_batches);
    prog.tick(3);
    bh = perplexity(*base.model, held, T, cfg.eval_batches);
    prog.tick(4);
  }
  std::ostringstream js;
  js << "{\"seed\": " << cfg.seed << ", \"method\": " << json_string(cfg.score.method) << ", \"aggregate\": " << json_string(cfg.score.aggregate)
     << ", \"trash_expert_ratio\": " << json_number(cfg.score.trash_expert_ratio)
     << ", \"selector\": " << json_string(selector_checkpoint(cfg)) << ", \"warmup_epoch\": "
     << (cfg.score.selector.empty() ? (cfg.score.epoch > 0 ? cfg.score.epoch : cfg.warmup.epochs) : 0)
     << ", \"selection_percentage\": " << json_number(cfg.score.selection_percentage) << ", \"mode\": " << json_string(g.mode) << ",\n "
     << selection_json(cfg) << ",\n \"val_loss\": " << json_number(pv.loss) << ", \"val_ppl\": " << json_number(pv.ppl)
     << ", \"heldout_loss\": " << json_number(ph.loss) << ", \"heldout_ppl\": " << json_number(ph.ppl)
     << ", \"base_val_ppl\": " << json_number(bv.ppl) << ", \"base_heldout_ppl\": " << json_number(bh.ppl)
     << ", \"val_tokens\": " << pv.tokens << ", \"heldout_tokens\": " << ph.tokens << "}\n";
  const auto dir = stage_dir(cfg, "eval");
  make_dir(dir);
  const auto out = path_in(dir, "eval.json");
  write_file_atomic(out, js.str());
  finish_stage(plan, {out});
  if (log)
    std::fprintf(log, "eval: val ppl %.3f (base %.3f), held-out ppl %.3f (base %.3f): %s\n", pv.ppl, bv.ppl, ph.ppl, bh.ppl,
                 out.c_str());
}

}  // namespace moesim::selection
