#pragma once
// The maths of selection (seed 004, stage 2), apart from the model that feeds it.
//
// Router score of a document d with tokens t = 1..n, MoE layers l, experts
// e = 0..E-1 of which the last m = round(trash_expert_ratio * E) are "trash":
//
//   S(d) = sum_l sum_t sum_{e < E - m} z_{l,t,e}      (z: pre-softmax router logits)
//   aggregate sum: S(d);  aggregate mean: S(d) / n
//
// Layers are always summed; the document's tokens exclude the EOS that starts
// its context. Selection keeps the round(share * N) highest scores (at least
// one), ties by the smaller source_index, and lists them in that order.
#include <cstdint>
#include <string>
#include <vector>

namespace moesim::selection {

// round(ratio * experts), at most experts - 1 (a layer keeps one good expert).
int trash_count(int experts, double ratio);

// sum over rows t of sum_{e < experts - trash} z[t * experts + e], in double.
// A NaN or infinite logit throws Error naming where (the row and the expert).
double good_logit_sum(const float* z, std::int64_t rows, int experts, int trash, const std::string& where);

// round(share * n), clamped to [1, n] (n > 0).
std::int64_t keep_count(std::int64_t n, double share);

// Indices of the kept documents, best first: descending score, ties by ascending
// tie_key (the source index), then by position.
std::vector<std::size_t> select_top(const std::vector<double>& score, const std::vector<std::int64_t>& tie_key, double share);

// How well a selection rejects the corrupted documents (corrupted = positive,
// rejected = predicted positive).
struct RejectionStats {
  std::int64_t docs = 0, corrupted = 0, rejected = 0, corrupted_rejected = 0;
  double precision = 0.0;      // corrupted_rejected / rejected (NaN when nothing was rejected)
  double recall = 0.0;         // corrupted_rejected / corrupted (NaN when nothing was corrupted)
  double clean_selected = 0.0; // share of clean documents in the selection
};
RejectionStats rejection_stats(const std::vector<bool>& selected, const std::vector<bool>& corrupted);

// A unigram language model over token ids with add-one (Laplace) smoothing:
// p(v) = (c_v + 1) / (C + V). The baseline scores a document by its mean log p.
class UnigramModel {
 public:
  explicit UnigramModel(int vocab);
  void add(const std::vector<int>& ids);
  double log_prob(int id) const;
  // Mean log p over the ids (-inf for none).
  double mean_log_prob(const std::vector<int>& ids) const;

 private:
  std::vector<std::int64_t> counts_;
  std::int64_t total_ = 0;
};

}  // namespace moesim::selection
