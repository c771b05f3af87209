#include "policies/auction_assign.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moesim {

namespace {

// Seat order inside an expert's heap: cheapest first; at equal price a free seat
// before a held one, then the lower token (so who gets outbid is explicit).
inline bool seat_before(double pa, std::int32_t ha, double pb, std::int32_t hb) {
  return pa < pb || (pa == pb && ha < hb);
}

template <class Seat>
void sift_down(Seat* h, int n, int i) {
  for (;;) {
    const int l = 2 * i + 1, r = l + 1;
    int m = i;
    if (l < n && seat_before(h[l].price, h[l].holder, h[m].price, h[m].holder)) m = l;
    if (r < n && seat_before(h[r].price, h[r].holder, h[m].price, h[m].holder)) m = r;
    if (m == i) return;
    std::swap(h[i], h[m]);
    i = m;
  }
}

// Four independent chains: one running max is bound by the max latency.
inline double max_of(const double* x, int n) {
  constexpr double kNeg = -std::numeric_limits<double>::infinity();
  double m0 = kNeg, m1 = kNeg, m2 = kNeg, m3 = kNeg;
  int i = 0;
  for (; i + 4 <= n; i += 4) {
    m0 = std::max(m0, x[i]);
    m1 = std::max(m1, x[i + 1]);
    m2 = std::max(m2, x[i + 2]);
    m3 = std::max(m3, x[i + 3]);
  }
  for (; i < n; ++i) m0 = std::max(m0, x[i]);
  return std::max(std::max(m0, m1), std::max(m2, m3));
}

}  // namespace

// One seat per token, cap seats per expert, never a -inf entry (an expert the
// token already holds). A perfect assignment must exist (balanced.cpp's rounds
// guarantee it), so the auction ends. Epsilon scaling: coarse phases settle
// prices cheaply, the last phase (eps) fixes the assignment to within T*eps of
// the optimum.
void AuctionAssigner::assign(double* value, int T, int E, int cap, double eps_final, std::int32_t* owner) {
  const auto ucap = static_cast<std::size_t>(cap);
  seat_.assign(static_cast<std::size_t>(E) * ucap, Copy{0.0, -1});
  min_price_.assign(static_cast<std::size_t>(E), 0.0);
  bid_.resize(static_cast<std::size_t>(E));
  owner_.assign(static_cast<std::size_t>(T), -1);
  queue_.resize(static_cast<std::size_t>(T));
  // Price of the cheapest seat of `h` other than seat i.
  auto other_seat = [cap](const Copy* h, int i) {
    if (i != 0) return h[0].price;
    if (cap == 1) return std::numeric_limits<double>::infinity();
    return cap >= 3 ? std::min(h[1].price, h[2].price) : h[1].price;
  };

  std::vector<double> phases{eps_final};
  while (phases.back() * 8.0 < 0.5) phases.push_back(phases.back() * 8.0);
  std::reverse(phases.begin(), phases.end());

  constexpr double kNeg = -std::numeric_limits<double>::infinity();
  for (std::size_t ph = 0; ph < phases.size(); ++ph) {
    const double eps = phases[ph];
    // Warm start: a seat whose holder is still within eps of its best
    // alternative keeps it (eps-complementary slackness); only the rest rebid.
    if (ph > 0) {
      for (int e = 0; e < E; ++e) {
        Copy* h = seat_.data() + static_cast<std::size_t>(e) * ucap;
        for (int i = 0; i < cap; ++i) {
          const std::int32_t t = h[i].holder;
          if (t < 0) continue;
          const double* w = value + static_cast<std::size_t>(t) * E;
          double alt = w[e] - other_seat(h, i);
          for (int f = 0; f < E; ++f)
            if (f != e) alt = std::max(alt, w[f] - min_price_[f]);
          if (w[e] - h[i].price < alt - eps) h[i].holder = -1, owner_[t] = -1;
        }
      }
    }
    double pmin = std::numeric_limits<double>::infinity(), pmax = -pmin;
    for (int e = 0; e < E; ++e) {
      Copy* h = seat_.data() + static_cast<std::size_t>(e) * ucap;
      for (int i = 0; i < cap; ++i) pmin = std::min(pmin, h[i].price), pmax = std::max(pmax, h[i].price);
      for (int i = cap / 2 - 1; i >= 0; --i) sift_down(h, cap, i);
      min_price_[e] = h[0].price;
    }
    std::size_t head = 0, count = 0;
    for (int t = 0; t < T; ++t)
      if (owner_[t] < 0) queue_[count++] = t;
    // A safety net far above the auction's bound (each seat's price rises by at
    // least eps per bid over a span of a few value ranges): exceeding it means a bug.
    const double max_bids = 64.0 * (T + 1.0) * (E + 1.0) * (std::ceil((2.0 + pmax - pmin) / eps) + 1.0);
    double bids = 0;

    while (count > 0) {
      const std::int32_t t = queue_[head];
      head = head + 1 == static_cast<std::size_t>(T) ? 0 : head + 1;
      --count;
      const double* w = value + static_cast<std::size_t>(t) * E;
      // The hot loop: branch-free reductions (held experts are -inf) instead of
      // one running top-2 whose branches mispredict on every token.
      double* b = bid_.data();
      for (int e = 0; e < E; ++e) b[e] = w[e] - min_price_[e];
      const double v1 = max_of(b, E);
      // Prices are built from the values, so exact profit ties do happen; the
      // higher value wins them (then the lower index), which keeps the result
      // independent of how experts are numbered whenever a row's logits differ.
      int e1 = 0;
      while (b[e1] != v1) ++e1;
      for (int e = e1 + 1; e < E; ++e)
        if (b[e] == v1 && w[e] > w[e1]) e1 = e;
      b[e1] = kNeg;
      double v2 = max_of(b, E);
      Copy* h = seat_.data() + static_cast<std::size_t>(e1) * ucap;
      // The second-cheapest seat of the same expert is a distinct object too.
      v2 = std::max(v2, w[e1] - other_seat(h, 0));
      // With no alternative at all any raise keeps eps-complementary slackness.
      const double raise = v2 == kNeg ? eps : v1 - v2 + eps;
      const double old_price = h[0].price;
      const std::int32_t evicted = h[0].holder;
      h[0].price = old_price + raise;
      h[0].holder = t;
      if (!(h[0].price > old_price) || ++bids > max_bids)
        throw Error("balanced assignment: the auction did not converge (eps " + format_real(eps) + ", " +
                    std::to_string(static_cast<long long>(bids)) + " bids): this is a bug, please report it");
      sift_down(h, cap, 0);
      min_price_[e1] = h[0].price;
      owner_[t] = e1;
      if (evicted >= 0) {
        owner_[evicted] = -1;
        queue_[(head + count) % static_cast<std::size_t>(T)] = evicted;
        ++count;
      }
    }
  }
  std::copy(owner_.begin(), owner_.end(), owner);
}

}  // namespace moesim
