#include "selection/config.hpp"

#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <map>
#include <sstream>

#include "common/files.hpp"
#include "config/flatten.hpp"

namespace moesim::selection {

namespace {

using Field = config::Field<SelectConfig>;
using F = config::FieldsOf<SelectConfig>;
constexpr long kBig = 1L << 50;

// Plain (string) field accessors keep the table one line per key.
#define REF(T, expr) [](SelectConfig& c) -> T& { return c.expr; }

const std::vector<Field>& fields() {
  static const std::vector<Field> all = [] {
    std::vector<Field> f;
    f.push_back(F::seed_field("seed", "seed of the corruptions, the data order of both trainings and the random selection", REF(std::uint64_t, seed)));
    f.push_back(F::string_field("out_dir", "pipeline folder: corpus/, warmup/, score/, train/, eval/", REF(std::string, out_dir), {}, true));
    f.push_back(F::int_field<int>("threads", "intra-op threads (0 = every hardware thread)", REF(int, threads), 0, 4096));
    f.push_back(F::string_field("corpus.data_dir", "C4 folder (c4-train.*, c4-validation.*)", REF(std::string, corpus.data_dir), {}, true));
    f.push_back(F::int_field<long>("corpus.first_doc", "first C4 train document of the target corpus", REF(long, corpus.first_doc), 0, kBig));
    f.push_back(F::int_field<long>("corpus.docs", "documents in the target corpus", REF(long, corpus.docs), 1, kBig));
    f.push_back(F::real_field("corpus.corrupt_fraction", "share of the target corpus replaced by corrupted versions", REF(double, corpus.corrupt_fraction), 0.0, 1.0));
    f.push_back(F::string_field("corpus.kinds", "corruptions, assigned in turn: comma list of shuffle, boilerplate, random_chars, truncate, char_noise", REF(std::string, corpus.kinds), {}, true));
    f.push_back(F::int_field<long>("corpus.heldout_first", "first C4 train document of the clean held-out set", REF(long, corpus.heldout_first), 0, kBig));
    f.push_back(F::int_field<long>("corpus.heldout_docs", "held-out documents (0 = to the end of the split)", REF(long, corpus.heldout_docs), 0, kBig));
    f.push_back(F::string_field("corpus.out", "corpus folder (empty = out_dir/corpus)", REF(std::string, corpus.out)));
    f.push_back(F::string_field("warmup.selector", "trained MoE checkpoint whose router is warmed up (moesim train)", REF(std::string, warmup.selector)));
    f.push_back(F::int_field<int>("warmup.epochs", "router-only epochs over the corpus; a checkpoint after each", REF(int, warmup.epochs), 1, 1000));
    f.push_back(F::real_field("warmup.lr", "peak learning rate of the router", REF(double, warmup.lr), 0.0, 10.0));
    f.push_back(F::int_field<long>("warmup.warmup_steps", "linear learning-rate warm-up steps", REF(long, warmup.warmup_steps), 0, kBig));
    f.push_back(F::int_field<int>("warmup.batch", "sequences per step", REF(int, warmup.batch), 1, 1 << 20));
    f.push_back(F::string_field("warmup.out", "warm-up folder (empty = out_dir/warmup)", REF(std::string, warmup.out)));
    f.push_back(F::int_field<int>("score.epoch", "warm-up epoch whose selector scores (0 = the last)", REF(int, score.epoch), 0, 1000));
    f.push_back(F::string_field("score.selector", "score with this checkpoint instead of a warm-up epoch", REF(std::string, score.selector)));
    f.push_back(F::real_field("score.trash_expert_ratio", "the last round(ratio * experts) experts of each MoE layer are trash; the rest are good", REF(double, score.trash_expert_ratio), 0.0, 1.0));
    f.push_back(F::string_field("score.aggregate", "router score over a document's tokens: sum, or mean per token", REF(std::string, score.aggregate), {"sum", "mean"}));
    f.push_back(F::string_field("score.method", "what ranks the documents: router (seed 004), or a baseline: random, length (characters), unigram (unigram log-likelihood per token), selector_loss (the selector's own loss); oracle: the clean documents in random order, read from corpus/labels.csv, a reference bound and no selector", REF(std::string, score.method), {"router", "random", "length", "unigram", "selector_loss", "oracle"}));
    f.push_back(F::real_field("score.selection_percentage", "share of the documents kept (round(share * documents), at least 1)", REF(double, score.selection_percentage), 0.0, 1.0, true));
    f.push_back(F::string_field("target.base", "pre-trained target checkpoint (moesim train)", REF(std::string, target.base)));
    f.push_back(F::string_field("target.mode", "lora: adapters on a frozen base; full: every weight trains", REF(std::string, target.mode), {"lora", "full"}));
    f.push_back(F::int_field<int>("target.lora_rank", "LoRA rank", REF(int, target.lora_rank), 1, 4096));
    f.push_back(F::real_field("target.lora_alpha", "LoRA alpha (updates scaled by alpha / rank)", REF(double, target.lora_alpha), 0.0, 1e6, true));
    f.push_back(F::string_field("target.lora_targets", "weights with adapters: attention, experts or attention,experts", REF(std::string, target.lora_targets), {"attention", "experts", "attention,experts"}));
    f.push_back(F::int_field<int>("target.epochs", "epochs over the selection", REF(int, target.epochs), 1, 1000));
    f.push_back(F::real_field("target.lr", "peak learning rate", REF(double, target.lr), 0.0, 10.0));
    f.push_back(F::int_field<long>("target.warmup_steps", "linear learning-rate warm-up steps", REF(long, target.warmup_steps), 0, kBig));
    f.push_back(F::int_field<int>("target.batch", "sequences per step", REF(int, target.batch), 1, 1 << 20));
    f.push_back(F::bool_field("eval.base", "also evaluate the untrained base on both sets (the same for every arm and seed; null in eval.json when off)", REF(bool, eval_base)));
    f.push_back(F::int_field<long>("eval.batches", "evaluation batches per held-out set (0 = all)", REF(long, eval_batches), 0, kBig));
    return f;
  }();
  return all;
}

#undef REF

void check_leaf(const std::string& key, const std::string& value) {
  SelectConfig scratch;
  set_select_field(scratch, key, value);
}

const config::Schema& schema() {
  static const config::Schema s(select_keys(), {}, check_leaf);
  return s;
}

void apply_settings(SelectConfig& cfg, const std::vector<config::Setting>& settings) {
  for (const auto& s : settings) set_select_field(cfg, s.key, s.value);
}

}  // namespace

const std::vector<ConfigKey>& select_keys() {
  static const std::vector<ConfigKey> keys = [] {
    std::vector<ConfigKey> k;
    for (const auto& f : fields()) k.push_back(f.info);
    return k;
  }();
  return keys;
}

std::vector<std::pair<std::string, std::string>> select_fields(const SelectConfig& cfg) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : fields()) out.emplace_back(f.info.key, f.get(cfg));
  return out;
}

std::vector<std::pair<std::string, std::string>> section_fields(const SelectConfig& cfg, std::string_view section) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, v] : select_fields(cfg)) {
    const auto dot = k.find('.');
    const std::string_view head = dot == std::string::npos ? std::string_view() : std::string_view(k).substr(0, dot);
    if (head == section) out.emplace_back(k, v);
  }
  return out;
}

void set_select_field(SelectConfig& cfg, std::string_view key, std::string_view value) {
  for (const auto& f : fields())
    if (f.info.key == key) return f.set(cfg, value);
  std::vector<std::string> names;
  for (const auto& f : fields()) names.push_back(f.info.key);
  const auto hint = did_you_mean(key, names);
  throw KeyError(std::string(key), "unknown config key '" + std::string(key) + "'" +
                                       (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
}

void validate(const SelectConfig& cfg) {
  config::check_all(fields(), cfg);
  const auto& c = cfg.corpus;
  const long end = c.first_doc + c.docs;
  if (c.heldout_first < end && (c.heldout_docs == 0 || c.heldout_first + c.heldout_docs > c.first_doc))
    throw KeyError("corpus.heldout_first", "config key 'corpus.heldout_first' = " + std::to_string(c.heldout_first) +
                                               ": the held-out documents overlap the target corpus [" +
                                               std::to_string(c.first_doc) + ", " + std::to_string(end) + ")");
  std::stringstream kinds(c.kinds);
  for (std::string k; std::getline(kinds, k, ',');)
    if (k != "shuffle" && k != "boilerplate" && k != "random_chars" && k != "truncate" && k != "char_noise")
      throw KeyError("corpus.kinds", "config key 'corpus.kinds': unknown corruption '" + k +
                                         "' (expected shuffle, boilerplate, random_chars, truncate, char_noise)");
}

SelectConfig load_select_config(const std::string& path) {
  SelectConfig cfg;
  apply_settings(cfg, config::file_settings(schema(), path, "selection/configs/"));
  return cfg;
}

void apply_select_overrides(SelectConfig& cfg, const std::vector<std::string>& overrides) {
  for (const auto& o : overrides) apply_settings(cfg, config::override_settings(schema(), o));
}

std::string dump_select_config(const SelectConfig& cfg) {
  std::ostringstream os;
  for (const auto& [k, v] : select_fields(cfg)) os << k << ": " << config::yaml_scalar(v) << "\n";
  return os.str();
}

std::string corpus_dir(const SelectConfig& cfg) {
  return cfg.corpus.out.empty() ? (std::filesystem::path(cfg.out_dir) / "corpus").string() : cfg.corpus.out;
}

std::string warmup_dir(const SelectConfig& cfg) {
  return cfg.warmup.out.empty() ? (std::filesystem::path(cfg.out_dir) / "warmup").string() : cfg.warmup.out;
}

std::string stage_dir(const SelectConfig& cfg, std::string_view stage) {
  return (std::filesystem::path(cfg.out_dir) / std::string(stage)).string();
}

}  // namespace moesim::selection
