#include "selection/scoring.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "common/error.hpp"

namespace moesim::selection {

int trash_count(int experts, double ratio) {
  const auto m = static_cast<int>(std::lround(ratio * experts));
  return std::clamp(m, 0, experts - 1);
}

double good_logit_sum(const float* z, std::int64_t rows, int experts, int trash, const std::string& where) {
  const int good = experts - trash;
  double s = 0.0;
  for (std::int64_t t = 0; t < rows; ++t) {
    const float* row = z + t * experts;
    for (int e = 0; e < experts; ++e)
      if (!std::isfinite(row[e]))
        throw Error(where + ": router logit of token " + std::to_string(t) + ", expert " + std::to_string(e) + " is " +
                    (std::isnan(row[e]) ? "NaN" : "infinite"));
    for (int e = 0; e < good; ++e) s += row[e];
  }
  return s;
}

std::int64_t keep_count(std::int64_t n, double share) {
  const auto k = static_cast<std::int64_t>(std::llround(share * static_cast<double>(n)));
  return std::clamp<std::int64_t>(k, 1, n);
}

std::vector<std::size_t> select_top(const std::vector<double>& score, const std::vector<std::int64_t>& tie_key, double share) {
  if (score.size() != tie_key.size()) throw Error("select_top: scores and keys differ in length");
  if (score.empty()) return {};
  std::vector<std::size_t> idx(score.size());
  std::iota(idx.begin(), idx.end(), std::size_t{0});
  std::stable_sort(idx.begin(), idx.end(), [&](std::size_t a, std::size_t b) {
    if (score[a] != score[b]) return score[a] > score[b];
    return tie_key[a] < tie_key[b];
  });
  idx.resize(static_cast<std::size_t>(keep_count(static_cast<std::int64_t>(score.size()), share)));
  return idx;
}

RejectionStats rejection_stats(const std::vector<bool>& selected, const std::vector<bool>& corrupted) {
  if (selected.size() != corrupted.size()) throw Error("rejection_stats: selection and labels differ in length");
  RejectionStats r;
  std::int64_t kept = 0, kept_clean = 0;
  r.docs = static_cast<std::int64_t>(selected.size());
  for (std::size_t i = 0; i < selected.size(); ++i) {
    r.corrupted += corrupted[i];
    if (selected[i]) {
      ++kept;
      kept_clean += !corrupted[i];
    } else {
      ++r.rejected;
      r.corrupted_rejected += corrupted[i];
    }
  }
  const double nan = std::numeric_limits<double>::quiet_NaN();
  r.precision = r.rejected ? static_cast<double>(r.corrupted_rejected) / static_cast<double>(r.rejected) : nan;
  r.recall = r.corrupted ? static_cast<double>(r.corrupted_rejected) / static_cast<double>(r.corrupted) : nan;
  r.clean_selected = kept ? static_cast<double>(kept_clean) / static_cast<double>(kept) : nan;
  return r;
}

UnigramModel::UnigramModel(int vocab) : counts_(static_cast<std::size_t>(vocab), 0) {}

void UnigramModel::add(const std::vector<int>& ids) {
  for (int id : ids) {
    if (id < 0 || id >= static_cast<int>(counts_.size())) throw Error("unigram model: token id " + std::to_string(id) + " outside the vocabulary");
    ++counts_[static_cast<std::size_t>(id)];
    ++total_;
  }
}

double UnigramModel::log_prob(int id) const {
  const double v = static_cast<double>(counts_.size());
  return std::log((static_cast<double>(counts_.at(static_cast<std::size_t>(id))) + 1.0) / (static_cast<double>(total_) + v));
}

double UnigramModel::mean_log_prob(const std::vector<int>& ids) const {
  if (ids.empty()) return -std::numeric_limits<double>::infinity();
  double s = 0.0;
  for (int id : ids) s += log_prob(id);
  return s / static_cast<double>(ids.size());
}

}  // namespace moesim::selection
