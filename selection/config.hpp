#pragma once
// SelectConfig: the data-selection pipeline (seed 004) as one typed config. Each
// stage reads its own section; one YAML file and `key.path=value` overrides
// (Hydra-style) configure all of them, with the same key tables, YAML flattening
// and errors as the trainer's configs. `moesim select --keys` lists every key.
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "config/key_table.hpp"

namespace moesim::selection {

// Stage 0 (`select mix`): the target corpus, C4 documents of which a fraction is
// corrupted, and a clean held-out set. Document indices are positions in the C4
// train split as torch_backend/c4_loader.hpp reads it (shards sorted, lines in order).
struct CorpusConfig {
  std::string data_dir = "data/c4_tiny";  // C4 folder (c4-train.*, c4-validation.*)
  long first_doc = 1200;                   // the target corpus is documents [first_doc, first_doc + docs)
  long docs = 1000;
  double corrupt_fraction = 0.4;           // share of them replaced by a corrupted version
  std::string kinds = "shuffle,boilerplate,random_chars,truncate,char_noise";  // corruptions, in turn
  long heldout_first = 2200;               // clean held-out documents [heldout_first, +heldout_docs)
  long heldout_docs = 0;                   // 0 = to the end of the split
  std::string out;                         // "" = OUT/corpus
};

// Stage 1 (`select warmup`): router-only training of the selector, a checkpoint per epoch.
struct WarmupConfig {
  std::string selector;  // a trained MoE checkpoint (`moesim train`); required
  int epochs = 2;
  double lr = 1e-3;
  long warmup_steps = 10;
  int batch = 8;
  std::string out;       // "" = OUT/warmup
};

// Stage 2 (`select score`): a score per document, then the top fraction.
struct ScoreConfig {
  int epoch = 0;                        // warm-up epoch whose selector scores (0 = the last)
  std::string selector;                 // or this checkpoint instead of a warm-up epoch
  double trash_expert_ratio = 0.125;    // the last round(ratio * E) experts of each MoE layer are "trash"
  std::string aggregate = "sum";        // sum | mean: router score summed over tokens, or per token
  std::string method = "router";        // router | random | length | unigram | selector_loss | oracle (labels: a bound)
  double selection_percentage = 0.3;    // share of documents kept
};

// Stage 3 (`select train`): the target model trained on the selection.
struct TargetConfig {
  std::string base;                     // the pre-trained target checkpoint; required
  std::string mode = "lora";            // lora | full
  int lora_rank = 8;
  double lora_alpha = 16.0;
  std::string lora_targets = "attention,experts";
  int epochs = 2;
  double lr = 2e-3;
  long warmup_steps = 10;
  int batch = 8;
};

struct SelectConfig {
  std::uint64_t seed = 1;              // corruptions, data order, random selection
  std::string out_dir = "runs/select";
  int threads = 0;                     // intra-op threads (0 = every hardware thread)
  CorpusConfig corpus;
  WarmupConfig warmup;
  ScoreConfig score;
  TargetConfig target;
  long eval_batches = 0;               // evaluation batches per held-out set (0 = all)
  bool eval_base = true;               // also evaluate the base (the same for every arm: one arm suffices)
};

const std::vector<ConfigKey>& select_keys();
// (key, value) for every key of the table, in table order.
std::vector<std::pair<std::string, std::string>> select_fields(const SelectConfig& cfg);
// The keys of one section ("corpus", "warmup", ...) with their values; "" = the top-level keys.
std::vector<std::pair<std::string, std::string>> section_fields(const SelectConfig& cfg, std::string_view section);
void set_select_field(SelectConfig& cfg, std::string_view key, std::string_view value);
// Range checks and cross-field checks (the corpus and the held-out set disjoint).
void validate(const SelectConfig& cfg);
SelectConfig load_select_config(const std::string& path);
void apply_select_overrides(SelectConfig& cfg, const std::vector<std::string>& overrides);
std::string dump_select_config(const SelectConfig& cfg);

// Where each stage writes (corpus.out and warmup.out may point elsewhere, so
// that experiment arms share one corpus and one warm-up).
std::string corpus_dir(const SelectConfig& cfg);
std::string warmup_dir(const SelectConfig& cfg);
std::string stage_dir(const SelectConfig& cfg, std::string_view stage);  // score, train, eval

}  // namespace moesim::selection
