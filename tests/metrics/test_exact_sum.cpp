// served_sums_exact: the bound on hand-built batches, and the property it
// promises (every order of the sum gives the same bits) on random ones.
#include <catch2/catch.hpp>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "metrics/exact_sum.hpp"
#include "policies/rng.hpp"

using moesim::served_sums_exact;

namespace {

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

}  // namespace

TEST_CASE("served_sums_exact: the exponent bound, by hand", "[exact_sum]") {
  // n = 16 values (n < 2^5, the vector block) and n = 5 (n < 2^3, the scalar
  // loop): hi - lo + 24 + bits <= 53 allows 24 and 26 exponent fields between the
  // largest field and the smallest nonzero one.
  for (const auto& [n, apart] : {std::pair<std::size_t, int>{16, 24}, std::pair<std::size_t, int>{5, 26}}) {
    INFO("n " << n);
    std::vector<std::int32_t> ex(n, 0);
    std::vector<float> v(n, 1.5f);  // field 127
    CHECK(served_sums_exact(ex.data(), v.data(), n));
    v[3] = std::ldexp(1.0f, -apart);  // field 127 - apart
    CHECK(served_sums_exact(ex.data(), v.data(), n));
    v[3] = std::ldexp(1.0f, -apart - 1);  // one field more
    CHECK_FALSE(served_sums_exact(ex.data(), v.data(), n));
    ex[3] = -1;  // dropped: no longer counted
    CHECK(served_sums_exact(ex.data(), v.data(), n));
    v[1] = 0.0f;  // a zero is a multiple of every quantum
    v[2] = -0.0f;
    CHECK(served_sums_exact(ex.data(), v.data(), n));
    v[4] = std::numeric_limits<float>::infinity();
    CHECK_FALSE(served_sums_exact(ex.data(), v.data(), n));
    ex[4] = -1;
    v[0] = std::nanf("");
    CHECK_FALSE(served_sums_exact(ex.data(), v.data(), n));
    ex[0] = -1;
    CHECK(served_sums_exact(ex.data(), v.data(), n));
  }
  // Subnormals count as field 1, whose quantum 2^-149 they share: fine beside
  // 2^-126, and the bound still applies when every value is subnormal.
  std::vector<float> tiny = {0x1p-126f, 0x1p-149f, 0x1p-140f};
  std::vector<std::int32_t> ex3(3, 1);
  CHECK(served_sums_exact(ex3.data(), tiny.data(), 3));
  std::vector<float> sub = {0x1p-149f, 0x1p-130f};
  CHECK(served_sums_exact(ex3.data(), sub.data(), 2));
  const std::vector<float> zeros(20, 0.0f);
  const std::vector<std::int32_t> ex20(20, 2);
  CHECK(served_sums_exact(ex20.data(), zeros.data(), 20));
  CHECK(served_sums_exact(ex20.data(), zeros.data(), 0));
}

TEST_CASE("served_sums_exact true means forward, reverse and 8-lane sums have the same bits", "[exact_sum]") {
  // Random batches over a spread of exponent ranges, some inside the bound and
  // some outside; whenever the check holds, three orders must agree bit for bit,
  // and the test also requires that both answers occurred.
  moesim::Rng rng(11);
  int held = 0, refused = 0;
  for (int trial = 0; trial < 400; ++trial) {
    const auto n = static_cast<std::size_t>(1 + rng.below(20000));
    const int spread = static_cast<int>(rng.below(40));
    const bool mixed_signs = trial % 2 == 0;  // one sign: the sums grow to n, near the bound
    std::vector<std::int32_t> ex(n);
    std::vector<float> v(n);
    for (std::size_t i = 0; i < n; ++i) {
      ex[i] = rng.uniform() < 0.1 ? -1 : 0;
      const float m = static_cast<float>(rng.uniform(1.0, 2.0)) * (mixed_signs && rng.uniform() < 0.5 ? -1.0f : 1.0f);
      v[i] = std::ldexp(m, -static_cast<int>(rng.below(static_cast<std::uint64_t>(spread) + 1)));
    }
    if (!served_sums_exact(ex.data(), v.data(), n)) {
      ++refused;
      continue;
    }
    ++held;
    double fwd = 0.0, rev = 0.0, lane[8] = {};
    for (std::size_t i = 0; i < n; ++i)
      if (ex[i] >= 0) fwd += v[i], lane[i % 8] += v[i];
    for (std::size_t i = n; i-- > 0;)
      if (ex[i] >= 0) rev += v[i];
    double lanes = 0.0;
    for (double x : lane) lanes += x;
    INFO("trial " << trial << " n " << n << " spread " << spread);
    CHECK(same_bits(fwd, rev));
    CHECK(same_bits(fwd, lanes));
  }
  CHECK(held > 50);
  CHECK(refused > 50);
}
