// Stage 0: the target corpus with its corrupted share, and the clean held-out set.
#include <filesystem>
#include <sstream>

#include "common/error.hpp"
#include "common/files.hpp"
#include "policies/rng.hpp"
#include "selection/corrupt.hpp"
#include "selection/stage_util.hpp"
#include "selection/stages.hpp"
#include "torch_backend/c4_loader.hpp"

namespace moesim::selection {

namespace fs = std::filesystem;

CorpusPaths corpus_paths(const SelectConfig& cfg) {
  const auto d = corpus_dir(cfg);
  return {path_in(d, "mixed.jsonl"), path_in(d, "labels.csv"), path_in(d, "heldout.jsonl")};
}

void run_mix(const SelectConfig& cfg, std::FILE* log) {
  validate(cfg);
  const auto& c = cfg.corpus;
  torch_backend::LoadReport rep;
  const auto docs = torch_backend::load_split(c.data_dir, "c4-train.", rep);
  const auto n = static_cast<long>(docs.size());
  if (c.first_doc + c.docs > n)
    throw KeyError("corpus.docs", "config key 'corpus.docs': documents [" + std::to_string(c.first_doc) + ", " +
                                      std::to_string(c.first_doc + c.docs) + ") do not fit the " + std::to_string(n) +
                                      " training documents of " + c.data_dir);
  const long held_end = c.heldout_docs == 0 ? n : c.heldout_first + c.heldout_docs;
  if (c.heldout_first >= n || held_end > n)
    throw KeyError("corpus.heldout_first", "config key 'corpus.heldout_first': held-out documents [" + std::to_string(c.heldout_first) +
                                               ", " + std::to_string(held_end) + ") do not fit the " + std::to_string(n) +
                                               " training documents of " + c.data_dir);
  const auto kinds = corruptions_from(c.kinds);
  const auto plan = corruption_plan(c.docs, c.corrupt_fraction, static_cast<int>(kinds.size()), derive_seed(cfg.seed, "corruption_plan"));
  auto folder = fs::path(c.data_dir).lexically_normal();
  if (folder.filename().empty()) folder = folder.parent_path();  // "data/c4_tiny/"
  const std::string dataset = folder.filename().string() + "/train";
  std::vector<DocRecord> mixed, held;
  std::ostringstream labels;
  labels << "source_index,corrupted,kind\n";
  long corrupted = 0;
  for (long i = 0; i < c.docs; ++i) {
    const long idx = c.first_doc + i;
    const int k = plan[static_cast<std::size_t>(i)];
    std::string text = docs[static_cast<std::size_t>(idx)];
    if (k >= 0) text = corrupt(text, kinds[static_cast<std::size_t>(k)], derive_seed(cfg.seed, static_cast<std::uint64_t>(idx)));
    corrupted += k >= 0;
    mixed.push_back({dataset, idx, std::move(text), false, 0.0});
    labels << idx << ',' << (k >= 0 ? 1 : 0) << ',' << (k >= 0 ? to_string(kinds[static_cast<std::size_t>(k)]) : "clean") << "\n";
  }
  for (long idx = c.heldout_first; idx < held_end; ++idx) held.push_back({dataset, idx, docs[static_cast<std::size_t>(idx)], false, 0.0});
  const auto p = corpus_paths(cfg);
  make_dir(corpus_dir(cfg));
  write_jsonl(p.mixed, mixed);
  write_file_atomic(p.labels, labels.str());
  write_jsonl(p.heldout, held);
  finish_stage(plan_mix(cfg), {p.mixed, p.labels, p.heldout});
  if (log)
    std::fprintf(log, "mix: %s: %ld documents (%ld corrupted: %s), %s: %zu clean held-out documents; labels in %s\n",
                 p.mixed.c_str(), c.docs, corrupted, c.kinds.c_str(), p.heldout.c_str(), held.size(), p.labels.c_str());
}

}  // namespace moesim::selection
