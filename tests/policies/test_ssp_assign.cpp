// Exact balanced assignment by successive shortest paths (policies/ssp_assign.hpp),
// against the Hungarian algorithm and exhaustive search.
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <cmath>
#include <functional>
#include <limits>

#include "helpers.hpp"
#include "hungarian.hpp"
#include "policies/ssp_assign.hpp"

using namespace testutil;

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Forbids r distinct experts per token, each expert for exactly r*cap tokens (as
// the policy's earlier rounds do): token sigma(t) forbids (sigma(t) + j) mod E, j < r.
void forbid(std::vector<float>& v, int T, int E, int r, std::uint64_t seed) {
  std::vector<int> sigma(static_cast<std::size_t>(T));
  std::iota(sigma.begin(), sigma.end(), 0);
  DataRng g(seed);
  for (int i = T - 1; i > 0; --i) std::swap(sigma[static_cast<std::size_t>(i)], sigma[static_cast<std::size_t>(g.below(i + 1))]);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < r; ++j) v[static_cast<std::size_t>(t) * E + (sigma[static_cast<std::size_t>(t)] + j) % E] = kNegInf;
}

long double total_of(const std::vector<float>& v, int E, const std::vector<std::int32_t>& owner) {
  long double s = 0;
  for (std::size_t t = 0; t < owner.size(); ++t) s += v[t * static_cast<std::size_t>(E) + static_cast<std::size_t>(owner[t])];
  return s;
}

// Balanced, allowed, and the counts; returns a message or "".
std::string violation(const std::vector<float>& v, int T, int E, int cap, const std::vector<std::int32_t>& owner) {
  std::vector<int> load(static_cast<std::size_t>(E), 0);
  for (int t = 0; t < T; ++t) {
    const int e = owner[static_cast<std::size_t>(t)];
    if (e < 0 || e >= E) return "token " + std::to_string(t) + " has expert " + std::to_string(e);
    if (std::isinf(v[static_cast<std::size_t>(t) * E + e])) return "token " + std::to_string(t) + " on a forbidden expert";
    ++load[static_cast<std::size_t>(e)];
  }
  for (int e = 0; e < E; ++e)
    if (load[static_cast<std::size_t>(e)] != cap) return "expert " + std::to_string(e) + " has " + std::to_string(load[static_cast<std::size_t>(e)]);
  return "";
}

}  // namespace

TEST_CASE("hungarian oracle equals exhaustive search on tiny balanced cases") {
  rc::prop("hungarian == brute force", [] {
    const int E = 1 + choose(3), cap = 1 + choose(7 / E);
    const int T = E * cap;
    auto v = make_logits(T, E, any_seed(), choose(3));
    std::vector<int> load(static_cast<std::size_t>(E), 0);
    long double best = -std::numeric_limits<long double>::infinity();
    std::function<void(int, long double)> dfs = [&](int t, long double acc) {
      if (t == T) return void(best = std::max(best, acc));
      for (int e = 0; e < E; ++e) {
        if (load[static_cast<std::size_t>(e)] == cap) continue;
        ++load[static_cast<std::size_t>(e)];
        dfs(t + 1, acc + v[static_cast<std::size_t>(t) * E + e]);
        --load[static_cast<std::size_t>(e)];
      }
    };
    dfs(0, 0);
    RC_ASSERT(std::fabs(static_cast<double>(hungarian_balanced_max(v, T, E, cap) - best)) < 1e-9);
  });
}

TEST_CASE("ssp_assign: total equals the Hungarian optimum, with ties and forbidden experts") {
  rc::prop("ssp total == optimum", [] {
    const int E = 1 + choose(8), cap = 1 + choose(6);
    const int T = E * cap;
    const int r = choose(E);  // experts already held per token
    const std::uint64_t seed = any_seed();
    const int style = choose(4);
    auto v = make_logits(T, E, seed, style);
    forbid(v, T, E, r, seed ^ 0x9e37u);
    RC_LOG() << "E=" << E << " cap=" << cap << " r=" << r << " style=" << style << " seed=" << seed << '\n';
    std::vector<std::int32_t> owner(static_cast<std::size_t>(T), -1);
    moesim::SspAssigner solver;
    solver.assign(v.data(), T, E, cap, owner.data());
    RC_ASSERT(violation(v, T, E, cap, owner) == "");
    const long double opt = hungarian_balanced_max(v, T, E, cap);
    long double scale = 1;
    for (float x : v)
      if (!std::isinf(x)) scale = std::max<long double>(scale, std::fabs(x));
    // Exact up to the rounding of double potentials over at most T moves.
    RC_ASSERT(std::fabs(static_cast<double>(total_of(v, E, owner) - opt)) <= 1e-12 * static_cast<double>(scale) * T);
  });
}

TEST_CASE("ssp_assign: the vectorised start (8 to 32 arcs at a time) gives the scalar start's assignment, token for token, "
          "at the optimum") {
  rc::prop("vector init == scalar init", [] {
    const int E = *rc::gen::element(8, 16, 24, 40, 64, 72), cap = 1 + choose(4);
    const int T = E * cap;
    const int r = choose(3);
    const std::uint64_t seed = any_seed();
    const int style = choose(4);  // includes heavily tied values
    auto v = make_logits(T, E, seed, style);
    forbid(v, T, E, r, seed ^ 0x51u);
    RC_LOG() << "E=" << E << " cap=" << cap << " r=" << r << " style=" << style << " seed=" << seed << '\n';
    std::vector<std::int32_t> fast(static_cast<std::size_t>(T), -1), slow(fast);
    moesim::SspAssigner a, b;
    b.use_simd(false);
    a.assign(v.data(), T, E, cap, fast.data());
    b.assign(v.data(), T, E, cap, slow.data());
    RC_ASSERT(fast == slow);
    RC_ASSERT(violation(v, T, E, cap, fast) == "");
    if (T <= 160) {
      long double scale = 1;
      for (float x : v)
        if (!std::isinf(x)) scale = std::max<long double>(scale, std::fabs(x));
      const long double opt = hungarian_balanced_max(v, T, E, cap);
      RC_ASSERT(std::fabs(static_cast<double>(total_of(v, E, fast) - opt)) <= 1e-12 * static_cast<double>(scale) * T);
    }
  });
}

TEST_CASE("ssp_assign: every token keeps its best expert when that is already balanced") {
  // Token t prefers expert t mod 4 by a margin; 8 tokens, 2 per expert.
  const int T = 8, E = 4;
  std::vector<float> v(static_cast<std::size_t>(T) * E, 0.0f);
  for (int t = 0; t < T; ++t) v[static_cast<std::size_t>(t) * E + t % E] = 1.0f + 0.1f * t;
  std::vector<std::int32_t> owner(T);
  moesim::SspAssigner().assign(v.data(), T, E, 2, owner.data());
  CHECK(owner == std::vector<std::int32_t>{0, 1, 2, 3, 0, 1, 2, 3});
}

TEST_CASE("ssp_assign hand-computed: the one move that costs least leaves the crowded expert") {
  // 3 tokens want expert 0 (cap 1 each with E = 3, T = 3). Values: t0 {5, 4, 0},
  // t1 {5, 1, 3}, t2 {5, 0, 0}. Optimum: t2 -> 0 (5), t0 -> 1 (4), t1 -> 2 (3) = 12;
  // any other split is lower (e.g. t0 -> 0, t1 -> 2, t2 -> 1 gives 5 + 3 + 0 = 8).
  const std::vector<float> v = {5, 4, 0, 5, 1, 3, 5, 0, 0};
  std::vector<std::int32_t> owner(3);
  moesim::SspAssigner().assign(v.data(), 3, 3, 1, owner.data());
  CHECK(owner == std::vector<std::int32_t>{1, 2, 0});
}

TEST_CASE("ssp_assign: a batch whose values are all equal splits evenly, and the same input gives the same split") {
  const int E = 8, cap = 64, T = E * cap;
  const std::vector<float> v(static_cast<std::size_t>(T) * E, 0.25f);
  std::vector<std::int32_t> a(T), b(T);
  moesim::SspAssigner s;
  s.assign(v.data(), T, E, cap, a.data());
  CHECK(violation(v, T, E, cap, a).empty());
  moesim::SspAssigner().assign(v.data(), T, E, cap, b.data());
  CHECK(a == b);
}

TEST_CASE("ssp_assign refuses T != E*cap and a token with no expert left") {
  std::vector<float> v(6, 0.0f);
  std::vector<std::int32_t> owner(3);
  REQUIRE_THROWS_WITH(moesim::SspAssigner().assign(v.data(), 3, 2, 1, owner.data()), Catch::Contains("E*cap"));
  std::vector<float> w = {0.0f, kNegInf, kNegInf, kNegInf};
  std::vector<std::int32_t> o2(2);
  REQUIRE_THROWS_WITH(moesim::SspAssigner().assign(w.data(), 2, 2, 1, o2.data()), Catch::Contains("token 1"));
}
