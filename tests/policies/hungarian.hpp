#pragma once
// The Hungarian algorithm (Kuhn-Munkres with potentials, O(n^3)), written out
// independently of the solvers under test: the exact optimum of a balanced
// assignment, every expert expanded into `cap` identical seats.
#include <cmath>
#include <limits>
#include <vector>

namespace testutil {

// Max over assignments with exactly cap tokens per expert of sum_t v[t][a(t)]
// (v: T x E, -inf = forbidden; T = E * cap). Returns -inf when none exists.
inline long double hungarian_balanced_max(const std::vector<float>& v, int T, int E, int cap) {
  const int n = T;
  const long double kBig = 1e300L;  // the cost of a forbidden pair
  auto cost = [&](int t, int seat) -> long double {
    const float x = v[static_cast<std::size_t>(t) * E + seat / cap];
    return std::isinf(x) && x < 0 ? kBig : -static_cast<long double>(x);
  };
  const long double inf = std::numeric_limits<long double>::infinity();
  // 1-based rows (tokens) and columns (seats); p[j]: the row matched to column j.
  std::vector<long double> u(n + 1, 0), w(n + 1, 0);
  std::vector<int> p(n + 1, 0), way(n + 1, 0);
  for (int i = 1; i <= n; ++i) {
    p[0] = i;
    int j0 = 0;
    std::vector<long double> minv(n + 1, inf);
    std::vector<char> used(n + 1, 0);
    do {
      used[j0] = 1;
      const int i0 = p[j0];
      long double delta = inf;
      int j1 = 0;
      for (int j = 1; j <= n; ++j) {
        if (used[j]) continue;
        const long double cur = cost(i0 - 1, j - 1) - u[i0] - w[j];
        if (cur < minv[j]) minv[j] = cur, way[j] = j0;
        if (minv[j] < delta) delta = minv[j], j1 = j;
      }
      for (int j = 0; j <= n; ++j) {
        if (used[j]) u[p[j]] += delta, w[j] -= delta;
        else minv[j] -= delta;
      }
      j0 = j1;
    } while (p[j0] != 0);
    do {
      const int j1 = way[j0];
      p[j0] = p[j1];
      j0 = j1;
    } while (j0);
  }
  long double total = 0;
  for (int j = 1; j <= n; ++j) {
    const long double c = cost(p[j] - 1, j - 1);
    if (c >= kBig) return -inf;
    total -= c;
  }
  return total;
}

}  // namespace testutil
