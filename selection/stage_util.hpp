#pragma once
// What the stages share: their plans (config section, inputs, outputs: what the
// manifest records and `run` compares), tokenization, progress lines.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "selection/config.hpp"
#include "selection/manifest.hpp"
#include "selection/records.hpp"

namespace moesim::torch_backend {
class Tokenizer;
}

namespace moesim::selection {

// A stage's folder, the config it depends on, and the files it reads.
struct StagePlan {
  std::string name, dir;
  std::vector<std::pair<std::string, std::string>> config;
  std::vector<std::string> inputs;
};
StagePlan plan_mix(const SelectConfig& cfg);
StagePlan plan_warmup(const SelectConfig& cfg);
StagePlan plan_score(const SelectConfig& cfg);
StagePlan plan_train(const SelectConfig& cfg);
StagePlan plan_eval(const SelectConfig& cfg);

// The manifest of a finished stage: its plan with the inputs' digests now, and its outputs'.
void finish_stage(const StagePlan& plan, const std::vector<std::string>& outputs);

// `path` as an output of the producer's finished stage (require_output), made
// with the producer's plan under this config: Error naming the first key or
// input that differs, and the command that remakes it.
void require_from(const StagePlan& producer, const std::string& path);

// A training stage (warmup, train) resumes its checkpoint only when it was
// started with this very plan (config and input digests, kept in DIR/plan.json);
// otherwise the folder's earlier run (checkpoint, logs, summary, epoch folders)
// is removed first, so a changed input is never trained on from a stale state.
void begin_training_stage(const StagePlan& plan, std::FILE* log);

std::string path_in(const std::string& dir, const std::string& name);
void make_dir(const std::string& dir);
// Copies a file into place atomically (temp file, then rename).
void copy_file_atomic(const std::string& from, const std::string& to);

// Documents tokenized into one stream, EOS after each (the trainer's layout).
std::vector<std::int32_t> token_stream(const torch_backend::Tokenizer& tok, const std::vector<std::string>& texts);
std::vector<std::string> texts_of(const std::vector<DocRecord>& docs);
// The C4 validation split of data_dir.
std::vector<std::string> validation_texts(const std::string& data_dir, std::FILE* log);

// "label: done/total, rate/s, ETA" at most every two seconds, and at the end.
class Progress {
 public:
  Progress(std::FILE* log, std::string label, std::int64_t total);
  void tick(std::int64_t done);

 private:
  std::FILE* log_;
  std::string label_;
  std::int64_t total_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace moesim::selection
