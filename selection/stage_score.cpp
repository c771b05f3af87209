// Stage 2: every document scored by the selector (router logits, and the
// baselines' scores from the same pass), the top share kept.
#include <torch/torch.h>

#include <cmath>
#include <filesystem>
#include <limits>
#include <map>
#include <sstream>

#include "common/csv.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"
#include "policies/rng.hpp"
#include "reports/plotter.hpp"
#include "selection/scoring.hpp"
#include "selection/stage_util.hpp"
#include "selection/stages.hpp"
#include "torch_backend/c4_loader.hpp"
#include "torch_backend/fused_ce.hpp"
#include "torch_backend/gemm.hpp"
#include "torch_backend/model.hpp"
#include "torch_backend/runtime.hpp"
#include "torch_backend/tokenizer.hpp"
#include "torch_backend/trainer.hpp"

namespace moesim::selection {

namespace tb = torch_backend;

DocScore score_document(tb::Transformer& model, const std::vector<int>& ids, int eos, int trash, const std::string& where) {
  torch::NoGradGuard ng;
  tb::GemmPrecisionScope fp32(tb::GemmPrecision::fp32);
  const auto n = static_cast<std::int64_t>(ids.size());
  std::vector<std::int64_t> in(static_cast<std::size_t>(n + 1)), tgt(static_cast<std::size_t>(n + 1));
  in[0] = eos;
  for (std::int64_t i = 0; i < n; ++i) in[static_cast<std::size_t>(i + 1)] = tgt[static_cast<std::size_t>(i)] = ids[static_cast<std::size_t>(i)];
  tgt[static_cast<std::size_t>(n)] = eos;
  DocScore s;
  const std::int64_t L = model.max_len();
  for (std::int64_t w0 = 0; w0 < n + 1; w0 += L) {
    const auto len = std::min(L, n + 1 - w0);
    auto x = torch::from_blob(in.data() + w0, {1, len}, torch::kLong);
    auto y = torch::from_blob(tgt.data() + w0, {len}, torch::kLong);
    const auto fo = model.forward(x, false);
    s.loss_sum += tb::linear_cross_entropy(fo.hidden.view({len, -1}), model.embedding, y).per_token.to(torch::kDouble).sum().item<double>();
    s.predicted += len;
    const std::int64_t skip = w0 == 0 ? 1 : 0;  // the leading EOS is context, not document
    for (const auto& l : model.moe_layers()) {
      const auto z = l->last_logits.contiguous();
      s.router_sum += good_logit_sum(z.data_ptr<float>() + skip * l->experts(), len - skip, l->experts(), trash,
                                     where + ", MoE layer " + std::to_string(l->layer()) + ", window at token " + std::to_string(w0));
    }
    s.tokens += len - skip;
  }
  return s;
}

namespace {

struct Scored {
  std::vector<DocScore> doc;
  std::vector<double> unigram, random, chars;
  std::vector<bool> clean;  // method oracle only: from labels.csv
};

// The oracle's one input the selector never sees: which documents are clean.
std::vector<bool> clean_labels(const SelectConfig& cfg, const std::vector<DocRecord>& docs) {
  const auto path = corpus_paths(cfg).labels;
  require_from(plan_mix(cfg), path);
  const auto t = read_csv(path);
  const auto si = t.need_column("source_index"), sc = t.need_column("corrupted");
  std::map<long, bool> clean;
  for (std::size_t r = 0; r < t.rows.size(); ++r) clean[std::lround(t.number(r, si))] = t.number(r, sc) == 0;
  std::vector<bool> out;
  for (const auto& d : docs) {
    const auto it = clean.find(static_cast<long>(d.source_index));
    if (it == clean.end()) throw Error(path + ": no label for document " + std::to_string(d.source_index));
    out.push_back(it->second);
  }
  return out;
}

// The unigram baseline's counts: C4 train documents [0, corpus.first_doc), clean
// and disjoint from the target corpus, in the selector's tokenizer.
UnigramModel unigram_model(const SelectConfig& cfg, const tb::Tokenizer& tok) {
  tb::LoadReport rep;
  const auto docs = tb::load_split(cfg.corpus.data_dir, "c4-train.", rep, std::max(1L, cfg.corpus.first_doc));
  UnigramModel u(tok.vocab_size());
  for (long i = 0; i < std::min<long>(cfg.corpus.first_doc, static_cast<long>(docs.size())); ++i) u.add(tok.encode(docs[static_cast<std::size_t>(i)]));
  return u;
}

Scored score_all(const SelectConfig& cfg, const std::string& selector, const std::vector<DocRecord>& docs, std::FILE* log) {
  auto lm = tb::load_model(selector);
  if (lm.model->moe_layers().empty()) throw Error(selector + ": the selector has no MoE layer: no router logits to score with");
  auto tok = tb::Tokenizer::from_proto(lm.tokenizer_proto, selector);
  const int experts = lm.cfg.model.experts, trash = trash_count(experts, cfg.score.trash_expert_ratio);
  if (log)
    std::fprintf(log, "score: %s (%zu MoE layers, %d experts: %d good, the last %d trash), %zu documents\n", selector.c_str(),
                 lm.model->moe_layers().size(), experts, experts - trash, trash, docs.size());
  const auto uni = unigram_model(cfg, tok);
  Scored out;
  Progress prog(log, "score", static_cast<std::int64_t>(docs.size()));
  const std::string mixed = corpus_paths(cfg).mixed;
  for (std::size_t i = 0; i < docs.size(); ++i) {
    const auto ids = tok.encode(docs[i].text);
    const std::string where = mixed + ":" + std::to_string(i + 1) + " (source_index " + std::to_string(docs[i].source_index) + ")";
    if (ids.empty()) throw Error(where + ": the document has no tokens");
    out.doc.push_back(score_document(*lm.model, ids, tok.eos_id(), trash, where));
    out.unigram.push_back(uni.mean_log_prob(ids));
    Rng r(derive_seed(cfg.seed, static_cast<std::uint64_t>(docs[i].source_index)) ^ 0x5e1ec7ULL);
    out.random.push_back(r.uniform());
    out.chars.push_back(static_cast<double>(docs[i].text.size()));
    prog.tick(static_cast<std::int64_t>(i + 1));
  }
  return out;
}

// The score the method ranks by (higher is kept).
std::vector<double> quality(const SelectConfig& cfg, const Scored& s) {
  std::vector<double> q;
  const auto& m = cfg.score.method;
  for (std::size_t i = 0; i < s.doc.size(); ++i) {
    const auto& d = s.doc[i];
    if (m == "router") q.push_back(cfg.score.aggregate == "sum" ? d.router_sum : d.router_sum / static_cast<double>(d.tokens));
    else if (m == "random") q.push_back(s.random[i]);
    else if (m == "length") q.push_back(s.chars[i]);
    else if (m == "unigram") q.push_back(s.unigram[i]);
    else if (m == "oracle") q.push_back((s.clean[i] ? 1.0 : 0.0) + s.random[i]);
    else q.push_back(-d.loss_sum / static_cast<double>(d.predicted));
  }
  return q;
}

void plot_scores(const std::string& dir, const std::vector<double>& q, double cutoff, const std::string& what, std::FILE* log) {
  std::vector<std::string> warnings;
  Plotter plot(path_in(dir, "plots"), true, "gnuplot", warnings);
  if (plot.enabled()) {
    std::ostringstream d;
    d << "# quality_score\n";
    for (double x : q) d << format_number(x) << "\n";
    plot.data("scores.dat", d.str());
    double lo = q[0], hi = q[0];
    for (double x : q) lo = std::min(lo, x), hi = std::max(hi, x);
    const double width = hi > lo ? (hi - lo) / 40.0 : 1.0;
    std::ostringstream b;
    b << "set title " << gq("Document scores (" + what + "); kept: right of the line") << "\n"
      << "set xlabel 'quality score'\nset ylabel 'documents'\nset grid\nset style fill solid 0.6\n"
      << "w = " << format_real(width) << "\nbin(x) = w * floor(x / w) + w / 2\n"
      << "set arrow from " << format_real(cutoff) << ", graph 0 to " << format_real(cutoff) << ", graph 1 nohead lw 2 lc rgb '#d62728'\n"
      << "plot " << data_file("scores.dat") << " using (bin($1)):(1.0) smooth freq with boxes lc rgb '#1f77b4' title 'documents'\n";
    plot.plot("scores", 900, 500, b.str());
  }
  if (log)
    for (const auto& w : warnings) std::fprintf(log, "score: warning: %s\n", w.c_str());
}

}  // namespace

void run_score(const SelectConfig& cfg, std::FILE* log) {
  validate(cfg);
  tb::configure_runtime(cfg.threads);
  const auto selector = selector_checkpoint(cfg);
  if (cfg.score.selector.empty()) {
    const int epochs = cfg.warmup.epochs;
    if (cfg.score.epoch > epochs)
      throw KeyError("score.epoch", "config key 'score.epoch' = " + std::to_string(cfg.score.epoch) + ": the warm-up has " +
                                        std::to_string(epochs) + " epochs (warmup.epochs)");
    require_from(plan_warmup(cfg), selector);
  }
  const auto mixed = corpus_paths(cfg).mixed;
  require_from(plan_mix(cfg), mixed);
  auto docs = read_jsonl(mixed);
  if (docs.empty()) throw Error(mixed + ": no documents");
  auto s = score_all(cfg, selector, docs, log);
  if (cfg.score.method == "oracle") s.clean = clean_labels(cfg, docs);
  const auto q = quality(cfg, s);
  std::vector<std::int64_t> key;
  for (const auto& d : docs) key.push_back(d.source_index);
  const auto kept = select_top(q, key, cfg.score.selection_percentage);
  std::vector<std::int64_t> rank(docs.size(), 0);
  {
    // Rank of every document in the full order (kept ones first).
    const auto all = select_top(q, key, 1.0);
    for (std::size_t r = 0; r < all.size(); ++r) rank[all[r]] = static_cast<std::int64_t>(r + 1);
  }
  std::vector<DocRecord> selected;
  for (auto i : kept) {
    auto d = docs[i];
    d.has_score = true;
    d.quality_score = q[i];
    selected.push_back(std::move(d));
  }
  std::ostringstream csv;
  csv << "source_index,chars,tokens,router_sum,router_mean,selector_loss,unigram_logp,random,quality_score,rank,selected\n";
  for (std::size_t i = 0; i < docs.size(); ++i) {
    const auto& d = s.doc[i];
    csv << docs[i].source_index << ',' << format_number(s.chars[i]) << ',' << d.tokens << ',' << format_real(d.router_sum) << ','
        << format_real(d.router_sum / static_cast<double>(d.tokens)) << ',' << format_real(d.loss_sum / static_cast<double>(d.predicted))
        << ',' << format_real(s.unigram[i]) << ',' << format_real(s.random[i]) << ',' << format_real(q[i]) << ',' << rank[i] << ','
        << (rank[i] <= static_cast<std::int64_t>(kept.size()) ? 1 : 0) << "\n";
  }
  const auto dir = stage_dir(cfg, "score");
  make_dir(dir);
  const auto scores = path_in(dir, "scores.csv"), sel = path_in(dir, "selected.jsonl");
  write_file_atomic(scores, csv.str());
  write_jsonl(sel, selected);
  const std::string what = cfg.score.method == "router" ? "router, " + cfg.score.aggregate : cfg.score.method;
  plot_scores(dir, q, q[kept.back()], what, log);
  finish_stage(plan_score(cfg), {scores, sel});
  if (log)
    std::fprintf(log, "score: kept %zu of %zu documents by %s (score >= %s): %s; every score in %s\n", kept.size(), docs.size(),
                 what.c_str(), format_number(q[kept.back()]).c_str(), sel.c_str(), scores.c_str());
}

}  // namespace moesim::selection
