// moesim select: seed 004's data-selection pipeline, one subcommand per stage
// (in the LibTorch plugin, cli/torch/plugin.cpp).
#include <cstdio>
#include <string>

#include "cli/torch/plugin.hpp"
#include "common/args.hpp"
#include "common/error.hpp"
#include "selection/config.hpp"
#include "selection/report.hpp"
#include "selection/stages.hpp"

namespace moesim::cli {

namespace {

const char* kUsage =
    "usage: moesim select STAGE --config FILE [key.path=value ...]\n"
    "       moesim select report OUT_DIR... --out DIR\n"
    "       moesim select --keys\n\n"
    "Router-based data selection (seed 004): does a lightly warmed-up MoE router tell good\n"
    "documents from junk? One config (selection/configs/) drives every stage; each stage\n"
    "reads files and writes files (atomically, then OUT/STAGE/manifest.json) and refuses an\n"
    "input that changed since its producer wrote it. OUT is out_dir.\n\n"
    "stages:\n"
    "  mix     in:  C4 train split (corpus.data_dir)\n"
    "          out: corpus/mixed.jsonl (documents [corpus.first_doc, +corpus.docs), a share\n"
    "               corrupted: shuffled words, boilerplate, random characters, truncated\n"
    "               fragments, other-language-like noise), corpus/labels.csv (the corruption\n"
    "               of each, never read by warmup or score), corpus/heldout.jsonl (clean)\n"
    "  warmup  in:  warmup.selector (an MoE checkpoint of `moesim train`), corpus/mixed.jsonl\n"
    "          out: warmup/epoch_N/checkpoint.pt for N = 1..warmup.epochs (router weights\n"
    "               trained, everything else frozen), warmup/train_log.csv\n"
    "  score   in:  warmup/epoch_{score.epoch}/checkpoint.pt (or score.selector), mixed.jsonl\n"
    "          out: score/scores.csv (every score of every document), score/selected.jsonl\n"
    "               ({source_dataset, source_index, text, quality_score}, best first),\n"
    "               score/plots/scores.png (histogram and cut-off)\n"
    "  train   in:  target.base (a pre-trained checkpoint), score/selected.jsonl\n"
    "          out: train/adapter.pt (LoRA adapters alone) and train/checkpoint.pt,\n"
    "               train/train_log.csv, eval_log.csv, train/plots/loss.png\n"
    "  eval    in:  target.base + train/adapter.pt (merged), corpus/heldout.jsonl,\n"
    "               score/scores.csv, corpus/labels.csv\n"
    "          out: eval/eval.json (perplexity on C4 validation and the held-out set, base\n"
    "               and trained; rejection precision and recall of the corrupted documents)\n"
    "  run     every stage in order, skipping those whose manifest matches (resumes)\n"
    "  report  eval/eval.json of several OUT folders -> DIR/select_report.csv and .md\n"
    "          (mean and spread over seeds per arm)\n";

}  // namespace

int select_command(const std::vector<std::string>& args) {
  using namespace moesim::selection;
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::printf("%s", kUsage);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--keys") {
    for (const auto& k : select_keys()) std::printf("  %-28s %-7s %s\n", k.key.c_str(), k.type.c_str(), k.help.c_str());
    return 0;
  }
  const std::string stage = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  if (stage == "report") return select_report_command(rest);
  void (*fn)(const SelectConfig&, std::FILE*) = stage == "mix"      ? run_mix
                                               : stage == "warmup" ? run_warmup
                                               : stage == "score"  ? run_score
                                               : stage == "train"  ? run_train
                                               : stage == "eval"   ? run_eval
                                               : stage == "run"    ? run_pipeline
                                                                   : nullptr;
  if (!fn) throw Error("select: unknown stage '" + stage + "' (mix, warmup, score, train, eval, run, report; --help)");
  ArgSpec spec;
  spec.options = {"--config"};
  spec.switches = {"--help"};
  const auto a = parse_args(rest, spec, "select " + stage);
  if (a.has("--help")) {
    std::printf("%s", kUsage);
    return 0;
  }
  if (!a.has("--config")) throw Error("select " + stage + ": --config FILE is required (selection/configs/ has examples)");
  auto cfg = load_select_config(a.get("--config"));
  apply_select_overrides(cfg, a.overrides);
  validate(cfg);
  std::fprintf(stderr, "moesim select %s: seed %llu; replay: moesim select %s --config %s", stage.c_str(),
               static_cast<unsigned long long>(cfg.seed), stage.c_str(), a.get("--config").c_str());
  for (const auto& o : a.overrides) std::fprintf(stderr, " %s", o.c_str());
  std::fprintf(stderr, "\n");
  fn(cfg, stderr);
  return 0;
}

}  // namespace moesim::cli
