// Every metric against values computed by hand, plus properties over random loads.
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <cmath>
#include <vector>

#include "metrics/load_metrics.hpp"

using namespace moesim;
using V = std::vector<double>;

TEST_CASE("load CV by hand", "[metrics]") {
  // {1,1,1,1}: std 0.
  CHECK(load_cv(V{1, 1, 1, 1}) == 0.0);
  // {0,0,0,4}: mean 1, var = (1+1+1+9)/4 = 3, CV = sqrt 3.
  CHECK(load_cv(V{0, 0, 0, 4}) == Approx(std::sqrt(3.0)));
  // {2,4}: mean 3, std 1, CV 1/3.
  CHECK(load_cv(V{2, 4}) == Approx(1.0 / 3.0));
  CHECK(load_cv(V{0, 0}) == 0.0);
}

TEST_CASE("Gini by hand", "[metrics]") {
  // One expert takes all of 4: G = (n-1)/n = 0.75.
  CHECK(gini(V{0, 0, 0, 4}) == Approx(0.75));
  CHECK(gini(V{4, 0, 0, 0}) == Approx(0.75));  // order does not matter
  CHECK(gini(V{3, 3, 3}) == Approx(0.0).margin(1e-15));
  // {1,3}: sum|xi-xj| over ordered pairs = 4, 2 n^2 mu = 2*4*2 = 16 -> 0.25.
  CHECK(gini(V{1, 3}) == Approx(0.25));
  // {1,2,3}: pairs |1-2|+|1-3|+|2-3| = 4, twice = 8; 2 n^2 mu = 2*9*2 = 36 -> 2/9.
  CHECK(gini(V{1, 2, 3}) == Approx(2.0 / 9.0));
  CHECK(gini(V{0, 0, 0}) == 0.0);
}

TEST_CASE("normalised entropy by hand", "[metrics]") {
  CHECK(normalized_entropy(V{5, 5, 5, 5}) == Approx(1.0));
  CHECK(normalized_entropy(V{0, 0, 7, 0}) == Approx(0.0).margin(1e-15));
  // {1,1,0,0}: H = ln 2, normalised by ln 4 -> 0.5.
  CHECK(normalized_entropy(V{1, 1, 0, 0}) == Approx(0.5));
  CHECK(normalized_entropy(V{3}) == 1.0);
  CHECK(normalized_entropy(V{0, 0}) == 0.0);
}

TEST_CASE("MaxVio by hand", "[metrics]") {
  // {0,0,0,4}: (4 - 1)/1 = 3.
  CHECK(max_violation(V{0, 0, 0, 4}) == Approx(3.0));
  // {2,2,2,2}: 0. {1,2,3}: (3-2)/2 = 0.5.
  CHECK(max_violation(V{2, 2, 2, 2}) == 0.0);
  CHECK(max_violation(V{1, 2, 3}) == Approx(0.5));
  CHECK(max_violation(V{0, 0}) == 0.0);
}

TEST_CASE("mutual information and specialisation by hand", "[metrics]") {
  // Perfectly specialised 2x2: cluster c always goes to expert c -> MI = H = 1 bit.
  CHECK(mutual_information_bits(V{5, 0, 0, 5}, 2, 2) == Approx(1.0));
  CHECK(specialisation(V{5, 0, 0, 5}, 2, 2) == Approx(1.0));
  // Independent table: MI 0.
  CHECK(mutual_information_bits(V{2, 2, 6, 6}, 2, 2) == Approx(0.0).margin(1e-12));
  CHECK(specialisation(V{2, 2, 6, 6}, 2, 2) == Approx(0.0).margin(1e-12));
  // Experts x clusters = 4 x 2, each cluster split evenly over its own 2 experts:
  // MI = H(cluster) = 1 bit, although H(expert) = 2 bits.
  CHECK(mutual_information_bits(V{3, 0, 3, 0, 0, 3, 0, 3}, 4, 2) == Approx(1.0));
  CHECK(specialisation(V{3, 0, 3, 0, 0, 3, 0, 3}, 4, 2) == Approx(1.0));
  // 2x2 {{2,1},{1,2}} / 6: p(c,e) = 1/3, 1/6; marginals 1/2.
  // MI = 2*(1/3) log2(4/3) + 2*(1/6) log2(2/3) = 0.0817042...
  const double want = 2.0 / 3.0 * std::log2(4.0 / 3.0) + 1.0 / 3.0 * std::log2(2.0 / 3.0);
  CHECK(mutual_information_bits(V{2, 1, 1, 2}, 2, 2) == Approx(want));
  CHECK(want == Approx(0.0817042).epsilon(1e-5));
  // One cluster only: H(cluster) = 0 -> specialisation 0.
  CHECK(specialisation(V{4, 1}, 2, 1) == 0.0);
  CHECK(entropy_bits(V{1, 1, 1, 1}) == Approx(2.0));
}

TEST_CASE("average ranks and Spearman by hand", "[metrics]") {
  CHECK(average_ranks(V{10, 30, 20}) == V{1, 3, 2});
  // Ties share the mean of their ranks: {5,5,1,7} -> 1 gets 1, the 5s get 2.5, 7 gets 4.
  CHECK(average_ranks(V{5, 5, 1, 7}) == V{2.5, 2.5, 1, 4});
  CHECK(spearman(V{1, 2, 3, 4}, V{10, 20, 30, 40}) == Approx(1.0));
  CHECK(spearman(V{1, 2, 3, 4}, V{4, 3, 2, 1}) == Approx(-1.0));
  // Monotone but non-linear: still 1.
  CHECK(spearman(V{1, 2, 3}, V{1, 10, 1000}) == Approx(1.0));
  // Ranks {1,2,3} vs {1.5,1.5,3}: centred {-1,0,1} and {-0.5,-0.5,1};
  // cov = 0.5+0+1 = 1.5, |a| = sqrt 2, |b| = sqrt 1.5 -> 1.5/sqrt 3 = 0.866025.
  CHECK(spearman(V{1, 2, 3}, V{7, 7, 9}) == Approx(std::sqrt(3.0) / 2.0));
  // A constant side has no ranking: 0 by definition.
  CHECK(spearman(V{1, 1, 1}, V{1, 2, 3}) == 0.0);
}

TEST_CASE("rich-get-richer coefficient by hand", "[metrics]") {
  // early shares a = {.1,.2,.3,.4}, late b = {0,.1,.3,.6}: d = b - a = {-.1,-.1,0,.2}.
  // a - mean = {-.15,-.05,.05,.15}; cov(a,d) = (.015+.005+0+.03)/4 = .0125 = var(a) -> slope 1.
  CHECK(rich_get_richer_slope(V{1, 2, 3, 4}, V{0, 1, 3, 6}) == Approx(1.0));
  // Shares that persist exactly: slope 0 (loads may scale).
  CHECK(rich_get_richer_slope(V{1, 2, 3, 4}, V{10, 20, 30, 40}) == Approx(0.0).margin(1e-12));
  // Complete equalisation: slope -1, correlation -1.
  CHECK(rich_get_richer_slope(V{1, 2, 3, 4}, V{5, 5, 5, 5}) == Approx(-1.0));
  CHECK(rich_get_richer_corr(V{1, 2, 3, 4}, V{5, 5, 5, 5}) == Approx(-1.0));
  CHECK(rich_get_richer_corr(V{1, 2, 3, 4}, V{0, 1, 3, 6}) > 0.9);
  // Equal early shares: nothing to amplify, 0 by definition.
  CHECK(rich_get_richer_slope(V{2, 2, 2}, V{1, 2, 3}) == 0.0);
}

TEST_CASE("router saturation by hand", "[metrics]") {
  // Equal logits over 4 experts: max prob 1/4.
  const std::vector<float> flat = {0, 0, 0, 0, 3, 3, 3, 3};
  CHECK(router_saturation(flat.data(), 2, 4) == Approx(0.25));
  // Logits {ln 3, 0}: softmax {3/4, 1/4}; with {0, 0}: 1/2 -> mean 5/8.
  const std::vector<float> two = {std::log(3.0f), 0, 0, 0};
  CHECK(router_saturation(two.data(), 2, 2) == Approx(0.625).epsilon(1e-6));
}

TEST_CASE("vector stats by hand", "[metrics]") {
  const auto s = vector_stats(V{1, 2, 3, 6});
  CHECK(s.mean == Approx(3.0));
  CHECK(s.min == 1.0);
  CHECK(s.max == 6.0);
  // deviations {-2,-1,0,3}: var = 14/4.
  CHECK(s.std == Approx(std::sqrt(3.5)));
}

namespace {

// Loads of 1..32 experts, each 0..1000 slots.
rc::Gen<V> gen_loads() {
  return rc::gen::mapcat(rc::gen::inRange(1, 33), [](int n) {
    return rc::gen::container<V>(static_cast<std::size_t>(n),
                                 rc::gen::map(rc::gen::inRange(0, 1001), [](int x) { return double(x); }));
  });
}

}  // namespace

TEST_CASE("metric bounds and invariances (properties)", "[metrics][property]") {
  rc::prop("Gini in [0, (n-1)/n], entropy in [0,1], CV and MaxVio >= 0", [] {
    const V x = *gen_loads();
    const double n = static_cast<double>(x.size());
    const double g = gini(x);
    RC_ASSERT(g >= -1e-12);
    RC_ASSERT(g <= (n - 1) / n + 1e-12);
    const double h = normalized_entropy(x);
    RC_ASSERT(h >= -1e-12);
    RC_ASSERT(h <= 1.0 + 1e-12);
    RC_ASSERT(load_cv(x) >= 0.0);
    RC_ASSERT(max_violation(x) >= 0.0);
    RC_ASSERT(max_violation(x) <= n - 1 + 1e-9);
  });
  rc::prop("scaling all loads changes no shape metric", [] {
    const V x = *gen_loads();
    const double s = *rc::gen::inRange(2, 50);
    V y = x;
    for (auto& v : y) v *= s;
    RC_ASSERT(std::abs(gini(x) - gini(y)) < 1e-9);
    RC_ASSERT(std::abs(load_cv(x) - load_cv(y)) < 1e-9);
    RC_ASSERT(std::abs(normalized_entropy(x) - normalized_entropy(y)) < 1e-9);
    RC_ASSERT(std::abs(max_violation(x) - max_violation(y)) < 1e-9);
  });
  rc::prop("Spearman is symmetric, in [-1,1], and 1 on itself unless constant", [] {
    const V a = *gen_loads();
    const V b = *rc::gen::container<V>(a.size(), rc::gen::map(rc::gen::inRange(0, 10), [](int x) { return double(x); }));
    const double r = spearman(a, b);
    RC_ASSERT(r >= -1.0);
    RC_ASSERT(r <= 1.0);
    RC_ASSERT(std::abs(r - spearman(b, a)) < 1e-12);
    const auto st = vector_stats(a);
    if (st.max > st.min) RC_ASSERT(std::abs(spearman(a, a) - 1.0) < 1e-12);
  });
  rc::prop("0 <= MI <= min(H(rows), H(cols)); specialisation in [0,1]", [] {
    const int rows = *rc::gen::inRange(1, 6), cols = *rc::gen::inRange(1, 6);
    const V t = *rc::gen::container<V>(static_cast<std::size_t>(rows * cols),
                                       rc::gen::map(rc::gen::inRange(0, 20), [](int x) { return double(x); }));
    V pr(static_cast<std::size_t>(rows), 0.0), pc(static_cast<std::size_t>(cols), 0.0);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < cols; ++c) pr[r] += t[r * cols + c], pc[c] += t[r * cols + c];
    const double mi = mutual_information_bits(t, rows, cols);
    RC_ASSERT(mi >= 0.0);
    RC_ASSERT(mi <= entropy_bits(pr) + 1e-9);
    RC_ASSERT(mi <= entropy_bits(pc) + 1e-9);
    const double s = specialisation(t, rows, cols);
    RC_ASSERT(s >= 0.0);
    RC_ASSERT(s <= 1.0);
  });
}
