#include "policies/aux_losses.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "policies/select.hpp"

namespace moesim {

AuxScore aux_score_for(const WeightSpec& spec) {
  switch (spec.rule) {
    case WeightRule::SigmoidGather: return AuxScore::Sigmoid;
    case WeightRule::SqrtSoftplusGather: return AuxScore::SqrtSoftplus;
    case WeightRule::SoftmaxSelected:
    case WeightRule::SoftmaxGather: return AuxScore::Softmax;
  }
  return AuxScore::Softmax;
}

void aux_scores_row(const float* z, int E, AuxScore s, std::vector<double>& p) {
  p.resize(static_cast<std::size_t>(E));
  double sum = 0;
  if (s == AuxScore::Softmax) {
    const double m = *std::max_element(z, z + E);
    for (int e = 0; e < E; ++e) sum += p[e] = std::exp(static_cast<double>(z[e]) - m);
  } else {
    for (int e = 0; e < E; ++e) {
      const double x = z[e];
      sum += p[e] = s == AuxScore::Sigmoid ? 1.0 / (1.0 + std::exp(-x)) : std::sqrt(softplus(x));
    }
  }
  for (auto& x : p) x /= sum;
}

namespace {

// The k best of a score row, ties to the lower index (for AuxCounts::TopK).
void topk_of(const std::vector<double>& p, int k, std::vector<int>& idx) {
  idx.resize(p.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(),
                    [&p](int a, int b) { return p[a] > p[b] || (p[a] == p[b] && a < b); });
  idx.resize(static_cast<std::size_t>(k));
}

}  // namespace

AuxCountsOut aux_counts(const float* logits, int T, int E, const Assignment& a, const AuxLossSpec& spec) {
  AuxCountsOut out;
  out.count.assign(static_cast<std::size_t>(E), 0.0);
  if (spec.counts == AuxCounts::Served) {
    for (int e = 0; e < E; ++e) out.count[e] = static_cast<double>(a.counts[e]);
    out.total = static_cast<double>(a.served());
    return out;
  }
  if (spec.k < 1 || spec.k > E)
    throw Error("aux loss: top-k counts need k in [1, E=" + std::to_string(E) + "], got " + std::to_string(spec.k));
  std::vector<double> p;
  std::vector<int> idx;
  for (int t = 0; t < T; ++t) {
    aux_scores_row(logits + static_cast<std::size_t>(t) * E, E, spec.score, p);
    topk_of(p, spec.k, idx);
    for (int e : idx) out.count[e] += 1.0;
  }
  out.total = static_cast<double>(T) * spec.k;
  return out;
}

double load_balancing_loss(const float* logits, int T, int E, const Assignment& a, const AuxLossSpec& spec) {
  if (T <= 0) return 0.0;
  std::vector<double> P(static_cast<std::size_t>(E), 0.0), p;
  for (int t = 0; t < T; ++t) {
    aux_scores_row(logits + static_cast<std::size_t>(t) * E, E, spec.score, p);
    for (int e = 0; e < E; ++e) P[e] += p[e];
  }
  const auto n = aux_counts(logits, T, E, a, spec);
  if (n.total <= 0) return 0.0;
  double loss = 0;
  for (int e = 0; e < E; ++e) loss += (n.count[e] / n.total) * (P[e] / T);
  return E * loss;
}

double z_loss(const float* logits, int T, int E) {
  if (T <= 0) return 0.0;
  double acc = 0;
  for (int t = 0; t < T; ++t) {
    const float* z = logits + static_cast<std::size_t>(t) * E;
    const double m = *std::max_element(z, z + E);
    double s = 0;
    for (int e = 0; e < E; ++e) s += std::exp(static_cast<double>(z[e]) - m);
    const double lse = m + std::log(s);
    acc += lse * lse;
  }
  return acc / T;
}

std::vector<double> sequence_fractions(const float* logits, int T, int E, const Assignment& a, int seq_len,
                                       const AuxLossSpec& spec) {
  if (seq_len < 1) throw Error("sequence_balance_loss: seq_len=" + std::to_string(seq_len) + " must be >= 1");
  const bool topk = spec.counts == AuxCounts::TopK;
  const int k = topk ? spec.k : std::max(1, a.width);
  std::vector<double> f, p;
  std::vector<int> idx;
  for (int s0 = 0; s0 < T; s0 += seq_len) {
    const int L = std::min(seq_len, T - s0);
    const std::size_t row = f.size();
    f.resize(row + static_cast<std::size_t>(E), 0.0);
    const double unit = static_cast<double>(E) / (static_cast<double>(k) * L);
    for (int t = s0; t < s0 + L; ++t) {
      if (topk) {
        aux_scores_row(logits + static_cast<std::size_t>(t) * E, E, spec.score, p);
        topk_of(p, k, idx);
        for (int e : idx) f[row + static_cast<std::size_t>(e)] += unit;
      } else {
        for (int j = 0; j < a.width; ++j)
          if (a.at(t, j) >= 0) f[row + static_cast<std::size_t>(a.at(t, j))] += unit;
      }
    }
  }
  return f;
}

double sequence_balance_loss(const float* logits, int T, int E, const Assignment& a, int seq_len,
                             const AuxLossSpec& spec) {
  const auto f = sequence_fractions(logits, T, E, a, seq_len, spec);
  if (T <= 0) return 0.0;
  std::vector<double> P(static_cast<std::size_t>(E)), p;
  double total = 0;
  int nseq = 0;
  for (int s0 = 0; s0 < T; s0 += seq_len, ++nseq) {
    const int L = std::min(seq_len, T - s0);
    std::fill(P.begin(), P.end(), 0.0);
    for (int t = s0; t < s0 + L; ++t) {
      aux_scores_row(logits + static_cast<std::size_t>(t) * E, E, spec.score, p);
      for (int e = 0; e < E; ++e) P[e] += p[e] / L;
    }
    for (int e = 0; e < E; ++e) total += f[static_cast<std::size_t>(nseq) * E + e] * P[e];
  }
  return total / nseq;
}

double router_entropy(const float* logits, int T, int E) {
  if (T <= 0) return 0.0;
  std::vector<double> p;
  double acc = 0;
  for (int t = 0; t < T; ++t) {
    aux_scores_row(logits + static_cast<std::size_t>(t) * E, E, AuxScore::Softmax, p);
    for (double x : p)
      if (x > 0) acc -= x * std::log(x);
  }
  return acc / T;
}

}  // namespace moesim
