#include "selection/stage_util.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"
#include "selection/stages.hpp"
#include "torch_backend/c4_loader.hpp"
#include "torch_backend/tokenizer.hpp"

namespace moesim::selection {

namespace fs = std::filesystem;

namespace {

std::vector<std::pair<std::string, std::string>> with(std::vector<std::pair<std::string, std::string>> a,
                                                      const std::vector<std::pair<std::string, std::string>>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

std::vector<std::pair<std::string, std::string>> seed_of(const SelectConfig& cfg) {
  return {{"seed", std::to_string(cfg.seed)}};
}

// The trainings' own evaluations use eval.batches; eval.base concerns the eval stage alone.
std::vector<std::pair<std::string, std::string>> eval_batches(const SelectConfig& cfg) {
  return {{"eval.batches", std::to_string(cfg.eval_batches)}};
}

}  // namespace

StagePlan plan_mix(const SelectConfig& cfg) {
  return {"mix", corpus_dir(cfg), with(seed_of(cfg), section_fields(cfg, "corpus")), {}};
}

StagePlan plan_warmup(const SelectConfig& cfg) {
  return {"warmup", warmup_dir(cfg), with(with(seed_of(cfg), section_fields(cfg, "warmup")), eval_batches(cfg)),
          {cfg.warmup.selector, corpus_paths(cfg).mixed}};
}

StagePlan plan_score(const SelectConfig& cfg) {
  StagePlan p{"score", stage_dir(cfg, "score"), with(seed_of(cfg), section_fields(cfg, "score")),
              {selector_checkpoint(cfg), corpus_paths(cfg).mixed}};
  if (cfg.score.method == "oracle") p.inputs.push_back(corpus_paths(cfg).labels);
  return p;
}

StagePlan plan_train(const SelectConfig& cfg) {
  return {"train", stage_dir(cfg, "train"), with(with(seed_of(cfg), section_fields(cfg, "target")), eval_batches(cfg)),
          {cfg.target.base, path_in(stage_dir(cfg, "score"), "selected.jsonl")}};
}

StagePlan plan_eval(const SelectConfig& cfg) {
  const auto train = stage_dir(cfg, "train");
  const auto c = corpus_paths(cfg);
  return {"eval", stage_dir(cfg, "eval"), with(section_fields(cfg, "target"), section_fields(cfg, "eval")),
          {cfg.target.base, path_in(train, cfg.target.mode == "lora" ? "adapter.pt" : "checkpoint.pt"),
           path_in(stage_dir(cfg, "score"), "scores.csv"), c.heldout, c.labels}};
}

void finish_stage(const StagePlan& plan, const std::vector<std::string>& outputs) {
  Manifest m;
  m.stage = plan.name;
  m.config = plan.config;
  for (const auto& p : plan.inputs) m.inputs[p] = file_digest(p);
  for (const auto& p : outputs) m.outputs[p] = file_digest(p);
  write_manifest(plan.dir, m);
}

std::string path_in(const std::string& dir, const std::string& name) { return (fs::path(dir) / name).string(); }

void make_dir(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create the folder: " + ec.message());
}

void copy_file_atomic(const std::string& from, const std::string& to) {
  const std::string tmp = to + ".tmp";
  std::error_code ec;
  fs::copy_file(from, tmp, fs::copy_options::overwrite_existing, ec);
  if (ec) throw Error(to + ": cannot copy " + from + ": " + ec.message());
  commit_file(tmp, to);
}

std::vector<std::int32_t> token_stream(const torch_backend::Tokenizer& tok, const std::vector<std::string>& texts) {
  std::vector<std::int32_t> s;
  for (const auto& t : texts) {
    for (int id : tok.encode(t)) s.push_back(id);
    s.push_back(tok.eos_id());
  }
  return s;
}

std::vector<std::string> texts_of(const std::vector<DocRecord>& docs) {
  std::vector<std::string> t;
  t.reserve(docs.size());
  for (const auto& d : docs) t.push_back(d.text);
  return t;
}

std::vector<std::string> validation_texts(const std::string& data_dir, std::FILE* log) {
  torch_backend::LoadReport rep;
  auto docs = torch_backend::load_split(data_dir, "c4-validation.", rep);
  if (log)
    for (const auto& w : rep.warnings) std::fprintf(log, "warning: %s\n", w.c_str());
  return docs;
}

Progress::Progress(std::FILE* log, std::string label, std::int64_t total)
    : log_(log), label_(std::move(label)), total_(total), start_(std::chrono::steady_clock::now()), last_(start_) {}

void Progress::tick(std::int64_t done) {
  if (!log_) return;
  const auto now = std::chrono::steady_clock::now();
  if (done < total_ && now - last_ < std::chrono::seconds(2)) return;
  last_ = now;
  const double s = std::chrono::duration<double>(now - start_).count();
  const double rate = s > 0 ? static_cast<double>(done) / s : 0.0;
  const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0.0;
  std::fprintf(log_, "%s: %lld/%lld, %.1f/s, %s %.0fs\n", label_.c_str(), static_cast<long long>(done),
               static_cast<long long>(total_), rate, done < total_ ? "ETA" : "took", done < total_ ? eta : s);
  std::fflush(log_);
}

}  // namespace moesim::selection
