#include "policies/aux_losses.hpp"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace moesim {

namespace {
// Softmax of one row in double: these are diagnostics, precision beats speed.
void softmax_row(const float* z, int E, std::vector<double>& p) {
  p.resize(static_cast<std::size_t>(E));
  const double m = *std::max_element(z, z + E);
  double s = 0;
  for (int e = 0; e < E; ++e) s += p[e] = std::exp(static_cast<double>(z[e]) - m);
  for (auto& x : p) x /= s;
}
}  // namespace

double load_balancing_loss(const float* logits, int T, int E, const Assignment& a) {
  if (T <= 0) return 0.0;
  std::vector<double> P(static_cast<std::size_t>(E), 0.0), p;
  for (int t = 0; t < T; ++t) {
    softmax_row(logits + static_cast<std::size_t>(t) * E, E, p);
    for (int e = 0; e < E; ++e) P[e] += p[e];
  }
  const double served = static_cast<double>(a.served());
  if (served <= 0) return 0.0;
  double loss = 0;
  for (int e = 0; e < E; ++e) loss += (static_cast<double>(a.counts[e]) / served) * (P[e] / T);
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

double sequence_balance_loss(const float* logits, int T, int E, const Assignment& a, int seq_len,
                             bool sigmoid) {
  if (seq_len < 1) throw Error("sequence_balance_loss: seq_len=" + std::to_string(seq_len) + " must be >= 1");
  if (T <= 0) return 0.0;
  const int k = std::max(1, a.width);
  std::vector<double> f(static_cast<std::size_t>(E)), P(static_cast<std::size_t>(E)), p;
  double total = 0;
  int nseq = 0;
  for (int s0 = 0; s0 < T; s0 += seq_len) {
    const int L = std::min(seq_len, T - s0);
    std::fill(f.begin(), f.end(), 0.0);
    std::fill(P.begin(), P.end(), 0.0);
    for (int t = s0; t < s0 + L; ++t) {
      const float* z = logits + static_cast<std::size_t>(t) * E;
      if (sigmoid) {
        p.resize(static_cast<std::size_t>(E));
        double s = 0;
        for (int e = 0; e < E; ++e) s += p[e] = 1.0 / (1.0 + std::exp(-static_cast<double>(z[e])));
        for (auto& x : p) x /= s;
      } else {
        softmax_row(z, E, p);
      }
      for (int e = 0; e < E; ++e) P[e] += p[e] / L;
      for (int j = 0; j < a.width; ++j)
        if (a.at(t, j) >= 0) f[a.at(t, j)] += static_cast<double>(E) / (static_cast<double>(k) * L);
    }
    double l = 0;
    for (int e = 0; e < E; ++e) l += f[e] * P[e];
    total += l;
    ++nseq;
  }
  return total / nseq;
}

double router_entropy(const float* logits, int T, int E) {
  if (T <= 0) return 0.0;
  std::vector<double> p;
  double acc = 0;
  for (int t = 0; t < T; ++t) {
    softmax_row(logits + static_cast<std::size_t>(t) * E, E, p);
    for (double x : p)
      if (x > 0) acc -= x * std::log(x);
  }
  return acc / T;
}

}  // namespace moesim
