#include "selection/stage_util.hpp"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

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
  StagePlan p{"eval", stage_dir(cfg, "eval"), with(section_fields(cfg, "target"), section_fields(cfg, "eval")),
              {cfg.target.base, path_in(train, "checkpoint.pt"), path_in(stage_dir(cfg, "score"), "scores.csv"), c.heldout, c.labels}};
  if (cfg.target.mode == "lora") p.inputs.push_back(path_in(train, "adapter.pt"));
  return p;
}

void finish_stage(const StagePlan& plan, const std::vector<std::string>& outputs) {
  Manifest m;
  m.stage = plan.name;
  m.config = plan.config;
  for (const auto& p : plan.inputs) m.inputs[p] = file_digest(p);
  for (const auto& p : outputs) m.outputs[p] = file_digest(p);
  write_manifest(plan.dir, m);
}

void require_from(const StagePlan& producer, const std::string& path) {
  require_output(producer.dir, producer.name, path);
  const auto m = read_manifest(producer.dir);
  const std::string redo = "; rerun `moesim select " + producer.name + "` with this config";
  std::map<std::string, std::string> then(m.config.begin(), m.config.end());
  for (const auto& [k, v] : producer.config) {
    const auto it = then.find(k);
    if (it == then.end() || it->second != v)
      throw Error(path + ": made by `select " + producer.name + "` with " + k + "=" + (it == then.end() ? "<unset>" : it->second) +
                  ", this config has " + k + "=" + v + redo);
  }
  for (const auto& in : producer.inputs) {
    const auto it = m.inputs.find(in);
    if (it == m.inputs.end()) throw Error(path + ": `select " + producer.name + "` did not read " + in + redo);
    if (!fs::exists(in) || file_digest(in) != it->second)
      throw Error(path + ": stale: " + in + " changed since `select " + producer.name + "` read it" + redo);
  }
}

void begin_training_stage(const StagePlan& plan, std::FILE* log) {
  std::string text;
  for (const auto& [k, v] : plan.config) text += k + "=" + v + "\n";
  for (const auto& in : plan.inputs) text += in + " " + file_digest(in) + "\n";
  const auto path = path_in(plan.dir, "plan.txt");
  if (fs::exists(path) && read_file(path) == text) return;  // the same run: resume it
  std::error_code ec;
  bool cleared = false;
  if (fs::exists(plan.dir))
    for (const auto& e : fs::directory_iterator(plan.dir)) {
      const auto name = e.path().filename().string();
      if (name == "checkpoint.pt" || name == "train_log.csv" || name == "eval_log.csv" || name == "summary.json" ||
          name == "adapter.pt" || name == "manifest.json" || name.rfind("epoch_", 0) == 0) {
        fs::remove_all(e.path(), ec);
        if (ec) throw Error(e.path().string() + ": cannot remove the earlier run's file: " + ec.message());
        cleared = true;
      }
    }
  if (cleared && log) std::fprintf(log, "%s: config or inputs changed since its last run: starting afresh\n", plan.dir.c_str());
  make_dir(plan.dir);
  write_file_atomic(path, text);
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
