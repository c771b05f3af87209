#pragma once
// The four stages of seed 004's pipeline (plus the corpus they run on), each a
// function of the config whose inputs and outputs are files (paths below), each
// writing atomically and closing with a manifest (manifest.hpp):
//
//   mix     C4 train documents -> corpus/mixed.jsonl (target corpus, corrupted
//           share unmarked), corpus/labels.csv (kept aside: never read by
//           warmup, nor by score but for its labelled reference arm
//           score.method=oracle), corpus/heldout.jsonl (clean held-out set)
//   warmup  warmup.selector + mixed.jsonl -> warmup/epoch_N/checkpoint.pt
//           (router-only training; everything else frozen)
//   score   a selector epoch + mixed.jsonl -> score/scores.csv (every score of
//           every document), score/selected.jsonl, score/plots/scores.png
//   train   target.base + selected.jsonl -> train/adapter.pt (LoRA) or
//           train/checkpoint.pt (full), train/train_log.csv, train/plots/loss.png
//   eval    base + adapter (merged) -> eval/eval.json: perplexity on C4
//           validation and on heldout.jsonl, and how well the selection
//           rejected the corrupted documents (labels.csv)
//
// `run` runs them in order and skips each stage whose manifest already matches
// its config and inputs, so an interrupted pipeline resumes at the stage it
// stopped in (warmup and train also resume inside, from their checkpoints).
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "selection/config.hpp"

namespace moesim::torch_backend {
class Transformer;
}

namespace moesim::selection {

struct CorpusPaths {
  std::string mixed, labels, heldout;
};
CorpusPaths corpus_paths(const SelectConfig& cfg);
// The selector checkpoint that `score` reads: score.selector, or warm-up epoch
// score.epoch (0 = warmup.epochs).
std::string selector_checkpoint(const SelectConfig& cfg);
std::string epoch_checkpoint(const SelectConfig& cfg, int epoch);

void run_mix(const SelectConfig& cfg, std::FILE* log);
void run_warmup(const SelectConfig& cfg, std::FILE* log);
void run_score(const SelectConfig& cfg, std::FILE* log);
void run_train(const SelectConfig& cfg, std::FILE* log);
void run_eval(const SelectConfig& cfg, std::FILE* log);
// All five in order, skipping the finished ones.
void run_pipeline(const SelectConfig& cfg, std::FILE* log);

// One document through a model in eval mode: ids are its tokens (without EOS).
// The model reads EOS + ids in windows of the model's max_len positions (each
// window a fresh context) and predicts ids + EOS.
struct DocScore {
  std::int64_t tokens = 0;      // router rows summed: the document's tokens (not the leading EOS)
  double router_sum = 0.0;      // sum over MoE layers and tokens of the good experts' logits
  double loss_sum = 0.0;        // cross-entropy summed over the predicted tokens (nats)
  std::int64_t predicted = 0;   // tokens + 1 (the closing EOS)
};
DocScore score_document(torch_backend::Transformer& model, const std::vector<int>& ids, int eos, int trash,
                        const std::string& where);

}  // namespace moesim::selection
