// Top-k selection: the kernels against a reference sort, the top-k policy against
// an independent oracle (selection, group limiting, combine weights in double),
// hand-computed cases, and the policies that must coincide with top-k.
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <numeric>
#include <random>
#include <map>

#include "helpers.hpp"
#include "policies/registry.hpp"
#include "policies/select.hpp"
#include "policies/topk.hpp"

using namespace testutil;
using moesim::Assignment;
using moesim::Rng;

TEST_CASE("topk_row and the scalar kernel equal the reference full sort (ties -> lower index), with and without bias") {
  rc::prop("topk_row == topk_row_sorted == topk_row_scalar on random rows", [] {
    const int n = *rc::gen::inRange(1, 80);  // crosses several 16-lane blocks
    const int k = 1 + choose(std::min(n, 12));
    const int style = choose(4);
    const std::uint64_t seed = any_seed();
    const auto row = make_logits(1, n, seed, style);
    std::vector<std::int32_t> got(static_cast<std::size_t>(k)), ref(static_cast<std::size_t>(k)),
        scal(static_cast<std::size_t>(k));
    std::vector<float> val(static_cast<std::size_t>(k)), sval(static_cast<std::size_t>(k));
    moesim::topk_row(row.data(), n, k, got.data(), val.data());
    moesim::topk_row_sorted(row.data(), n, k, ref.data());
    moesim::topk_row_scalar(row.data(), n, k, scal.data(), sval.data());
    const auto mine = ref_topk(row.data(), n, k);
    for (int j = 0; j < k; ++j) {
      RC_ASSERT(ref[static_cast<std::size_t>(j)] == mine[static_cast<std::size_t>(j)]);
      RC_ASSERT(got[static_cast<std::size_t>(j)] == ref[static_cast<std::size_t>(j)]);
      RC_ASSERT(scal[static_cast<std::size_t>(j)] == ref[static_cast<std::size_t>(j)]);
      RC_ASSERT(val[static_cast<std::size_t>(j)] == row[static_cast<std::size_t>(ref[static_cast<std::size_t>(j)])]);
      RC_ASSERT(sval[static_cast<std::size_t>(j)] == val[static_cast<std::size_t>(j)]);
    }
    // With a bias: the same as the reference on row + bias computed in float.
    const auto bias = make_logits(1, n, seed ^ 77, style);
    std::vector<float> sum(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) sum[static_cast<std::size_t>(i)] = row[static_cast<std::size_t>(i)] + bias[static_cast<std::size_t>(i)];
    // Near +-FLT_MAX the sum overflows; rows with -inf are the known-bug case below.
    for (float x : sum) RC_SUCCEED_IF(x == -std::numeric_limits<float>::infinity());
    moesim::topk_row(row.data(), n, k, got.data(), val.data(), bias.data());
    const auto mine_b = ref_topk(sum.data(), n, k);
    for (int j = 0; j < k; ++j) {
      RC_ASSERT(got[static_cast<std::size_t>(j)] == mine_b[static_cast<std::size_t>(j)]);
      RC_ASSERT(val[static_cast<std::size_t>(j)] == sum[static_cast<std::size_t>(mine_b[static_cast<std::size_t>(j)])]);
    }
  });
}

// Regression: the AVX-512 kernels pad with -inf, so a row whose k-th best is -inf
// (overflowing scores) once returned index 2^31-1; such rows now take the scalar kernel.
TEST_CASE("topk_row equals the scalar kernel on rows holding -inf") {
  const float inf = std::numeric_limits<float>::infinity(), M = std::numeric_limits<float>::max();
  struct Row {
    std::vector<float> z, b;
    int k;
  };
  const std::vector<Row> rows = {{{-M}, {-M}, 1},
                                 {{-inf}, {}, 1},
                                 {{1.0f, -inf, 2.0f}, {}, 3},
                                 {{-inf, -inf, 0.5f, -inf}, {}, 2},
                                 {{-M, -M, 3.0f}, {-M, -M, 0.0f}, 3}};
  for (const auto& r : rows) {
    const int n = static_cast<int>(r.z.size());
    std::vector<float> sum = r.z;
    if (!r.b.empty())
      for (int i = 0; i < n; ++i) sum[static_cast<std::size_t>(i)] += r.b[static_cast<std::size_t>(i)];
    std::vector<std::int32_t> got(static_cast<std::size_t>(r.k)), want(static_cast<std::size_t>(r.k));
    std::vector<float> val(static_cast<std::size_t>(r.k)), wval(static_cast<std::size_t>(r.k));
    moesim::topk_row(r.z.data(), n, r.k, got.data(), val.data(), r.b.empty() ? nullptr : r.b.data());
    moesim::topk_row_scalar(sum.data(), n, r.k, want.data(), wval.data());
    CAPTURE(n, r.k);
    CHECK(got == want);
  }
}

TEST_CASE("topk_row: k larger than the 64-entry stack buffer and k == n still match the reference") {
  for (int n : {1, 2, 65, 70, 100}) {
    for (int k : {1, n / 2 + 1, n}) {
      CAPTURE(n, k);
      const auto row = make_logits(1, n, 1000 + static_cast<std::uint64_t>(n * 7 + k), kMixed);
      std::vector<std::int32_t> got(static_cast<std::size_t>(k));
      std::vector<float> val(static_cast<std::size_t>(k));
      moesim::topk_row(row.data(), n, k, got.data(), val.data());
      const auto ref = ref_topk(row.data(), n, k);
      for (int j = 0; j < k; ++j) REQUIRE(got[static_cast<std::size_t>(j)] == ref[static_cast<std::size_t>(j)]);
    }
  }
}

TEST_CASE("topk policy (dropless): selection = reference top-k per token, weights = the declared score rule") {
  const auto& info = moesim::policy_info("topk");
  rc::prop("topk selection and weights match an independent oracle", [&info] {
    Scenario s = gen_scenario(info, false);
    s.knobs["dropless"] = "true";
    const bool sigmoid = choose(2) == 1, renorm = choose(2) == 0;
    s.knobs["score_fn"] = sigmoid ? "sigmoid" : "softmax";
    s.knobs["renormalize"] = renorm ? "true" : "false";
    RC_LOG() << s.describe() << '\n';
    auto p = make(s);
    const Assignment a = route_once(*p, s.logits, s.T, s.E);
    RC_ASSERT(a.width == s.k);
    RC_ASSERT(a.dropped == 0);
    RC_ASSERT(a.capacity == 0);
    for (int t = 0; t < s.T; ++t) {
      const float* z = s.logits.data() + static_cast<std::size_t>(t) * s.E;
      const auto want = ref_topk(z, s.E, s.k);
      const auto w = ref_weights(z, s.E, want, sigmoid, renorm);
      for (int j = 0; j < s.k; ++j) {
        RC_ASSERT(a.at(t, j) == want[static_cast<std::size_t>(j)]);
        RC_ASSERT(std::fabs(a.weight_at(t, j) - w[static_cast<std::size_t>(j)]) <= 1e-5 * (1 + w[static_cast<std::size_t>(j)]));
      }
    }
  });
}

TEST_CASE("topk group-limited routing: groups ranked by the sum of their top m selection values, then top-k "
          "inside the kept groups") {
  const auto& info = moesim::policy_info("topk");
  rc::prop("group-limited selection matches an independent oracle", [&info] {
    const int G = *rc::gen::inRange(1, 9), gs = *rc::gen::inRange(1, 9);
    const int E = G * gs;
    const int tg = 1 + choose(G);
    const int k = 1 + choose(tg * gs);
    std::vector<std::string> scores = {"max"};
    if (gs >= 2) scores.push_back("top2sum");
    if (tg <= k) scores.push_back("sum_topk");
    const std::string gscore_name = scores[static_cast<std::size_t>(choose(static_cast<int>(scores.size())))];
    const int m = gscore_name == "max" ? 1 : gscore_name == "top2sum" ? 2 : k / tg;
    static const char* kFns[] = {"softmax", "sigmoid", "sqrtsoftplus"};
    const std::string fn = kFns[choose(3)];
    const bool renorm = choose(2) == 0;
    const int T = *rc::gen::inRange(0, 60);
    const std::uint64_t seed = any_seed();
    const auto logits = make_logits(T, E, seed, choose(4));
    moesim::KnobMap kn = {{"n_groups", std::to_string(G)},      {"topk_groups", std::to_string(tg)},
                          {"group_score", gscore_name},          {"score_fn", fn},
                          {"renormalize", renorm ? "true" : "false"}, {"dropless", "true"}};
    RC_LOG() << "G=" << G << " gs=" << gs << " tg=" << tg << " k=" << k << " " << gscore_name << " " << fn
             << " renorm=" << renorm << " T=" << T << '\n';
    auto p = moesim::make_policy(info.name, E, k, kn);
    const Assignment a = route_once(*p, logits, T, E);
    for (int t = 0; t < T; ++t) {
      const float* z = logits.data() + static_cast<std::size_t>(t) * E;
      // Megatron-Core's group_limited_topk runs on what its top-k sees: the logits when
      // the softmax comes after the top-k, probabilities before it, sigmoid or
      // sqrt(softplus) scores otherwise.
      double zmax = z[0];
      for (int e = 1; e < E; ++e) zmax = std::max(zmax, double(z[e]));
      double zsum = 0;
      for (int e = 0; e < E; ++e) zsum += std::exp(double(z[e]) - zmax);
      auto value = [&](int e) {
        const double x = z[e];
        if (fn == "sigmoid") return 1.0 / (1.0 + std::exp(-x));
        if (fn == "sqrtsoftplus") return std::sqrt(x > 30 ? x : std::log1p(std::exp(x)));
        return renorm ? x : std::exp(x - zmax) / zsum;
      };
      std::vector<double> gscore(static_cast<std::size_t>(G));
      for (int g = 0; g < G; ++g) {
        const auto best = ref_topk(z + g * gs, gs, m);
        double sum = 0;
        for (int i : best) sum += value(g * gs + i);
        gscore[static_cast<std::size_t>(g)] = sum;
      }
      const auto groups = ref_topk(gscore.data(), G, tg);
      // Groups whose scores differ by round-off only may rank either way: skip such tokens.
      if (tg < G) {
        const double kept = gscore[static_cast<std::size_t>(groups.back())];
        bool near = false;
        for (int g = 0; g < G; ++g)
          if (std::find(groups.begin(), groups.end(), g) == groups.end())
            near |= std::fabs(gscore[static_cast<std::size_t>(g)] - kept) <= 1e-9 * (1 + std::fabs(kept)) &&
                    gscore[static_cast<std::size_t>(g)] != kept;
        if (near) continue;
      }
      std::vector<float> masked(static_cast<std::size_t>(E), -std::numeric_limits<float>::infinity());
      for (int g : groups)
        for (int i = 0; i < gs; ++i) masked[static_cast<std::size_t>(g * gs + i)] = z[g * gs + i];
      const auto want = ref_topk(masked.data(), E, k);
      for (int j = 0; j < k; ++j) RC_ASSERT(a.at(t, j) == want[static_cast<std::size_t>(j)]);
    }
  });
}

TEST_CASE("topk hand-computed: DeepSeek-V3-style group scores on sigmoid values, not logits") {
  // logits {3, -3, 1, 1}, groups {0,1}, {2,3}, k = 2, one group kept, sum of the top 2.
  //   on logits:   g0 = 3 + (-3) = 0,            g1 = 1 + 1 = 2             -> g1
  //   on sigmoid:  g0 = 0.952574 + 0.047426 = 1, g1 = 2 * 0.731059 = 1.462117 -> g1
  // and logits {4, 0, 1.5, 1.5}:
  //   on logits:   g0 = 4,                       g1 = 3                     -> g0
  //   on sigmoid:  g0 = 0.982014 + 0.5 = 1.482014, g1 = 2 * 0.817574 = 1.635149 -> g1
  const std::vector<float> z = {4, 0, 1.5f, 1.5f};
  auto sig = moesim::make_policy("topk", 4, 2, {{"n_groups", "2"}, {"topk_groups", "1"}, {"score_fn", "sigmoid"}});
  auto a = route_once(*sig, z, 1, 4);
  CHECK(a.at(0, 0) == 2);
  CHECK(a.at(0, 1) == 3);
  // Softmax after top-k (renormalize = true): Megatron-Core ranks groups on the logits.
  auto soft = moesim::make_policy("topk", 4, 2, {{"n_groups", "2"}, {"topk_groups", "1"}});
  a = route_once(*soft, z, 1, 4);
  CHECK(a.at(0, 0) == 0);
  CHECK(a.at(0, 1) == 1);
  // Softmax before top-k (renormalize = false): on probabilities e^z / sum, i.e. on
  // e^4 + e^0 = 55.598 vs 2 e^1.5 = 8.963 -> g0.
  auto pre = moesim::make_policy("topk", 4, 2, {{"n_groups", "2"}, {"topk_groups", "1"}, {"renormalize", "false"}});
  a = route_once(*pre, z, 1, 4);
  CHECK(a.at(0, 0) == 0);
  // k = 1 with topk_groups = 2 under sum_topk sums 1/2 = 0 values per group: refused.
  CHECK_THROWS_WITH(moesim::make_policy("topk", 4, 1, {{"n_groups", "2"}, {"topk_groups", "2"}}),
                    Catch::Contains("every group would score the same"));
}

TEST_CASE("topk hand-computed: logits {1,3,2,3}, k=2 -> experts {1,3} (tie: lower index first), weights {0.5,0.5}") {
  // softmax p = e^z / Z; p1 = p3 = e^3/Z, so renormalised over {1,3}: e^3/(e^3+e^3) = 0.5 each.
  auto p = moesim::make_policy("topk", 4, 2);
  const std::vector<float> z = {1, 3, 2, 3};
  const auto a = route_once(*p, z, 1, 4);
  REQUIRE(a.at(0, 0) == 1);
  REQUIRE(a.at(0, 1) == 3);
  CHECK(a.weight_at(0, 0) == Approx(0.5).margin(1e-6));
  CHECK(a.weight_at(0, 1) == Approx(0.5).margin(1e-6));
  CHECK(a.counts == std::vector<std::int64_t>{0, 1, 0, 1});
}

TEST_CASE("topk hand-computed: logits ln{1,2,3,4}, k=2, softmax/sigmoid, with and without renormalisation") {
  const std::vector<float> z = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};
  // softmax: p = {1,2,3,4}/10; top-2 = experts 3 (0.4) then 2 (0.3).
  //   renormalised: 0.4/0.7 = 4/7 = 0.5714286, 0.3/0.7 = 3/7 = 0.4285714
  //   raw:          0.4, 0.3
  // sigmoid(ln x) = x/(1+x): expert 3 -> 4/5 = 0.8, expert 2 -> 3/4 = 0.75
  //   renormalised: 0.8/1.55 = 0.5161290, 0.75/1.55 = 0.4838710
  //   raw:          0.8, 0.75
  struct Case {
    const char* score_fn;
    const char* renorm;
    double w0, w1;
  };
  for (const Case& c : {Case{"softmax", "true", 4.0 / 7, 3.0 / 7}, Case{"softmax", "false", 0.4, 0.3},
                        Case{"sigmoid", "true", 0.8 / 1.55, 0.75 / 1.55}, Case{"sigmoid", "false", 0.8, 0.75}}) {
    CAPTURE(c.score_fn, c.renorm);
    auto p = moesim::make_policy("topk", 4, 2, {{"score_fn", c.score_fn}, {"renormalize", c.renorm}});
    const auto a = route_once(*p, z, 1, 4);
    REQUIRE(a.at(0, 0) == 3);
    REQUIRE(a.at(0, 1) == 2);
    CHECK(a.weight_at(0, 0) == Approx(c.w0).epsilon(1e-5));
    CHECK(a.weight_at(0, 1) == Approx(c.w1).epsilon(1e-5));
    CHECK(p->weight_spec().normalized() == (std::string(c.renorm) == "true"));
  }
}

TEST_CASE("topk hand-computed group limiting: groups {0,1},{2,3}, one group kept") {
  // logits {5, -5, 4, 3}: group score by max: g0 = 5, g1 = 4 -> keep g0 -> experts {0, 1}.
  //                       by top-2 sum:      g0 = 0, g1 = 7 -> keep g1 -> experts {2, 3}.
  const std::vector<float> z = {5, -5, 4, 3};
  auto pm = moesim::make_policy("topk", 4, 2, {{"n_groups", "2"}, {"topk_groups", "1"}, {"group_score", "max"}});
  auto a = route_once(*pm, z, 1, 4);
  CHECK(a.at(0, 0) == 0);
  CHECK(a.at(0, 1) == 1);
  auto ps = moesim::make_policy("topk", 4, 2, {{"n_groups", "2"}, {"topk_groups", "1"}, {"group_score", "top2sum"}});
  a = route_once(*ps, z, 1, 4);
  CHECK(a.at(0, 0) == 2);
  CHECK(a.at(0, 1) == 3);
}

TEST_CASE("switch hand-computed: k=1, weight = softmax probability (not renormalised)") {
  // logits {0, ln 3, 0, 0}: softmax = {1, 3, 1, 1}/6 -> expert 1, weight 3/6 = 0.5.
  auto p = moesim::make_policy("switch", 4, 1);
  const std::vector<float> z = {0.0f, std::log(3.0f), 0.0f, 0.0f, /*token 1:*/ 2.0f, 0.0f, 0.0f, 2.0f};
  // token 1: tie between experts 0 and 3 at 2 -> expert 0; p = e^2/(2e^2 + 2) = 7.389056/16.778112 = 0.4403985
  const auto a = route_once(*p, z, 2, 4);
  REQUIRE(a.width == 1);
  CHECK(a.at(0, 0) == 1);
  CHECK(a.weight_at(0, 0) == Approx(0.5).epsilon(1e-5));
  CHECK(a.at(1, 0) == 0);
  CHECK(a.weight_at(1, 0) == Approx(0.4403985).epsilon(1e-5));
  CHECK_FALSE(p->weight_spec().normalized());
}

TEST_CASE("switch equals topk with k=1 and no renormalisation, bitwise") {
  rc::prop("switch == topk(k=1, renormalize=false) with the same capacity knobs", [] {
    const auto& info = moesim::policy_info("switch");
    Scenario s = gen_scenario(info);
    s.knobs.erase("jitter_eps");
    RC_LOG() << s.describe() << '\n';
    auto sw = make(s);
    auto kn = s.knobs;
    kn["renormalize"] = "false";
    auto tk = moesim::make_policy("topk", s.E, 1, kn);
    const auto a = route_once(*sw, s.logits, s.T, s.E), b = route_once(*tk, s.logits, s.T, s.E);
    const auto d = diff_assignments(a, b);
    if (!d.empty()) RC_FAIL(d);
  });
}

TEST_CASE("noisy_topk without noise equals topk bitwise") {
  rc::prop("noisy_topk(noise=none, weights_from=clean) == topk; noise_std=0 likewise", [] {
    const auto& info = moesim::policy_info("noisy_topk");
    Scenario s = gen_scenario(info);
    for (const char* key : {"noise", "noise_std", "jitter_eps", "weights_from"}) s.knobs.erase(key);
    auto kn = s.knobs;
    if (choose(2)) kn["noise"] = "none";
    else kn["noise_std"] = "0";
    kn["weights_from"] = "clean";
    RC_LOG() << s.describe() << '\n';
    auto nt = moesim::make_policy("noisy_topk", s.E, s.k, kn);
    kn.erase("noise"), kn.erase("noise_std"), kn.erase("weights_from");
    auto tk = moesim::make_policy("topk", s.E, s.k, kn);
    const auto a = route_once(*nt, s.logits, s.T, s.E), b = route_once(*tk, s.logits, s.T, s.E);
    const auto d = diff_assignments(a, b);
    if (!d.empty()) RC_FAIL(d);
  });
}

TEST_CASE("noisy_topk uses its Rng: two seeds route a large batch differently, one seed identically") {
  auto p = moesim::make_policy("noisy_topk", 8, 2);
  const auto z = make_logits(256, 8, 5, kContinuous);
  const auto a = route_once(*p, z, 256, 8, 1), b = route_once(*p, z, 256, 8, 2), c = route_once(*p, z, 256, 8, 1);
  CHECK(a.expert != b.expert);  // 512 noisy selections (noise_std 1 on logits in [-4,4]) cannot all coincide
  CHECK(diff_assignments(a, c).empty());
}

TEST_CASE("noisy_topk weights_from=noisy: softmax over the selected noisy logits") {
  // With noise off, the selected "noisy" logits are the logits: for {0, ln2, ln3, ln4},
  // k=2 -> experts {3, 2}, softmax over {ln4, ln3} = {4/7, 3/7}.
  auto p = moesim::make_policy("noisy_topk", 4, 2, {{"noise", "none"}, {"weights_from", "noisy"}});
  const std::vector<float> z = {0.0f, std::log(2.0f), std::log(3.0f), std::log(4.0f)};
  const auto a = route_once(*p, z, 1, 4);
  REQUIRE(a.at(0, 0) == 3);
  REQUIRE(a.at(0, 1) == 2);
  CHECK(a.weight_at(0, 0) == Approx(4.0 / 7).epsilon(1e-5));
  CHECK(a.weight_at(0, 1) == Approx(3.0 / 7).epsilon(1e-5));
}

TEST_CASE("multiplicative jitter routes on the logits of the gate input x W^T (noisy_topk and switch)") {
  // x (T=2 x d=3) one-hot rows, W (E=3 x d=3); z[t][e] = sum_d x[t][d] W[e][d]:
  //   t0 = x row e_0 -> z = column 0 of W = {W00, W10, W20} = {0, 0, 5} -> expert 2
  //   t1 = x row e_1 -> z = column 1 of W = {W01, W11, W21} = {5, 0, 0} -> expert 0
  // (x W without the transpose would give rows of W: t0 {0, 5, 0} -> expert 1.)
  // jitter_eps = 1e-4 moves these logits by at most 5e-4: the margins (5) stand.
  const std::vector<float> x = {1, 0, 0, 0, 1, 0};
  const std::vector<float> W = {0, 5, 0, 0, 0, 5, 5, 0, 0};
  // The logits passed alongside (used for the weights) deliberately point elsewhere.
  const std::vector<float> z = {1, 0, 0, 1, 0, 0};
  moesim::RouteInput in;
  in.logits = z.data();
  in.tokens = 2;
  in.experts = 3;
  in.gate_input = x.data();
  in.gate_weight = W.data();
  in.gate_dim = 3;
  for (const char* name : {"noisy_topk", "switch"}) {
    CAPTURE(name);
    moesim::KnobMap kn = {{"jitter_eps", "0.0001"}, {"dropless", "true"}};
    if (std::string(name) == "noisy_topk") kn["noise"] = "none";
    auto p = moesim::make_policy(name, 3, 1, kn);
    moesim::Rng rng(4);
    Assignment a;
    p->route(in, rng, a);
    CHECK(a.expert == std::vector<std::int32_t>{2, 0});
  }
}

TEST_CASE("topk group-limited top2sum survives logits near +-FLT_MAX (group sums would overflow)") {
  // Regression: the float sum of two -FLT_MAX logits is -inf; with every group at -inf
  // the group top-k returned -1 and allowed[-1] was written (heap corruption, crashes).
  const float M = std::numeric_limits<float>::max();
  auto p = moesim::make_policy("topk", 4, 2, {{"n_groups", "2"}, {"topk_groups", "1"}, {"group_score", "top2sum"}});
  // Both groups score -2*FLT_MAX: a tie -> group 0 -> experts {0, 1}.
  const std::vector<float> lo = {-M, -M, -M, -M};
  auto a = route_once(*p, lo, 1, 4);
  CHECK(a.at(0, 0) == 0);
  CHECK(a.at(0, 1) == 1);
  // Group 0 sums to 2*FLT_MAX, group 1 to FLT_MAX (both "inf" in float): group 0 must win.
  const std::vector<float> hi = {M, M, 0.0f, M};
  a = route_once(*p, hi, 1, 4);
  CHECK(a.at(0, 0) == 0);
  CHECK(a.at(0, 1) == 1);
  // Group 1 sums higher (FLT_MAX + FLT_MAX/2 vs FLT_MAX + 0): experts {2, 3}, 3 first.
  const std::vector<float> hi2 = {M, 0.0f, M / 2, M};
  a = route_once(*p, hi2, 1, 4);
  CHECK(a.at(0, 0) == 3);
  CHECK(a.at(0, 1) == 2);
}

TEST_CASE("topk hand-computed: sqrt(softplus) scores and Megatron-Core's topk_scaling_factor") {
  // z = {0, ln(e - 1), 2}: sqrt(softplus) = {sqrt(ln 2), 1, sqrt(ln(1 + e^2))} = {0.8325546, 1, 1.4583991}.
  const std::vector<float> z = {0.0f, static_cast<float>(std::log(std::exp(1.0) - 1.0)), 2.0f};
  auto p = moesim::make_policy("topk", 3, 2, {{"score_fn", "sqrtsoftplus"}, {"dropless", "true"}});
  auto a = route_once(*p, z, 1, 3);
  REQUIRE(a.expert == std::vector<std::int32_t>{2, 1});
  CHECK(a.weight_at(0, 0) == Approx(1.4583991 / 2.4583991).epsilon(1e-6));  // 0.5932350
  CHECK(a.weight_at(0, 1) == Approx(1.0 / 2.4583991).epsilon(1e-6));
  p = moesim::make_policy("topk", 3, 2, {{"score_fn", "sqrtsoftplus"}, {"renormalize", "false"}, {"dropless", "true"}});
  a = route_once(*p, z, 1, 3);
  CHECK(a.weight_at(0, 0) == Approx(1.4583991).epsilon(1e-6));
  CHECK(a.weight_at(0, 1) == Approx(1.0).epsilon(1e-6));
  // Scaled by 2.5 after the renormalisation, as Megatron-Core applies it.
  p = moesim::make_policy("topk", 3, 2,
                          {{"score_fn", "sqrtsoftplus"}, {"topk_scaling_factor", "2.5"}, {"dropless", "true"}});
  a = route_once(*p, z, 1, 3);
  CHECK(a.weight_at(0, 0) == Approx(2.5 * 1.4583991 / 2.4583991).epsilon(1e-6));
  CHECK(a.weight_at(0, 1) == Approx(2.5 / 2.4583991).epsilon(1e-6));
  CHECK_FALSE(p->weight_spec().normalized());
}

TEST_CASE("tie_break random: tied experts are chosen uniformly, reproducibly per seed; low_index piles on expert 0") {
  const int T = 4000;
  const std::vector<float> flat(static_cast<std::size_t>(T) * 4, 0.0f);
  auto low = moesim::make_policy("topk", 4, 1, {{"dropless", "true"}});
  CHECK(route_once(*low, flat, T, 4).counts == std::vector<std::int64_t>{T, 0, 0, 0});
  auto rnd = moesim::make_policy("topk", 4, 1, {{"dropless", "true"}, {"tie_break", "random"}});
  const auto a = route_once(*rnd, flat, T, 4, 7);
  // Binomial(4000, 1/4): mean 1000, sd 27.4; [850, 1150] is beyond 5 sd.
  for (auto c : a.counts) CHECK((c >= 850 && c <= 1150));
  CHECK(diff_assignments(a, route_once(*rnd, flat, T, 4, 7)).empty());
  CHECK(!diff_assignments(a, route_once(*rnd, flat, T, 4, 8)).empty());
  // {1, 0, 0, 0}, k = 2: slot 0 is expert 0 always; slot 1 uniform over the three tied experts.
  std::vector<float> z;
  for (int t = 0; t < T; ++t) z.insert(z.end(), {1, 0, 0, 0});
  auto rnd2 = moesim::make_policy("topk", 4, 2, {{"dropless", "true"}, {"tie_break", "random"}});
  const auto b = route_once(*rnd2, z, T, 4, 3);
  CHECK(b.counts[0] == T);
  for (int e = 1; e < 4; ++e) CHECK((b.counts[static_cast<std::size_t>(e)] >= 1150 && b.counts[static_cast<std::size_t>(e)] <= 1520));
  // A row without ties draws nothing: the rest of the batch is unaffected by its presence.
  const std::vector<float> distinct = {3, 2, 1, 0};
  const auto c = route_once(*rnd2, distinct, 1, 4, 3);
  CHECK(c.expert == std::vector<std::int32_t>{0, 1});
}

namespace {

// Megatron-Core moe_utils.py, written out from its equations: topk_routing_with_score_function
// (no groups, no expert bias) then apply_router_token_dropping. Returns per token the
// served experts with their final probs (ties: lower index, lower token first).
std::vector<std::map<int, double>> megatron_route(const std::vector<float>& logits, int T, int E, int k,
                                                  const std::string& fn, bool pre_softmax, double scale, double cf,
                                                  const std::string& drop_policy) {
  std::vector<std::vector<double>> probs(static_cast<std::size_t>(T), std::vector<double>(static_cast<std::size_t>(E), 0.0));
  std::vector<std::vector<char>> map(static_cast<std::size_t>(T), std::vector<char>(static_cast<std::size_t>(E), 0));
  for (int t = 0; t < T; ++t) {
    const float* z = logits.data() + static_cast<std::size_t>(t) * E;
    std::vector<double> s(static_cast<std::size_t>(E));
    double m = z[0], sum = 0;
    for (int e = 1; e < E; ++e) m = std::max(m, double(z[e]));
    for (int e = 0; e < E; ++e) sum += std::exp(double(z[e]) - m);
    for (int e = 0; e < E; ++e) {
      const double x = z[e];
      s[static_cast<std::size_t>(e)] = fn == "sigmoid"        ? 1.0 / (1.0 + std::exp(-x))
                                       : fn == "sqrtsoftplus" ? std::sqrt(x > 30 ? x : std::log1p(std::exp(x)))
                                       : pre_softmax          ? std::exp(x - m) / sum
                                                              : x;
    }
    const auto top = ref_topk(s.data(), E, k);
    std::vector<double> p(static_cast<std::size_t>(k));
    if (fn == "softmax" && !pre_softmax) {  // softmax over the top-k logits
      double tm = s[static_cast<std::size_t>(top[0])], ts = 0;
      for (int j = 0; j < k; ++j) ts += std::exp(s[static_cast<std::size_t>(top[j])] - tm);
      for (int j = 0; j < k; ++j) p[static_cast<std::size_t>(j)] = std::exp(s[static_cast<std::size_t>(top[j])] - tm) / ts;
    } else {
      double ts = 0;
      for (int j = 0; j < k; ++j) ts += s[static_cast<std::size_t>(top[j])];
      for (int j = 0; j < k; ++j)  // sigmoid / sqrtsoftplus: probs = scores / (sum + 1e-20) when topk > 1
        p[static_cast<std::size_t>(j)] = fn != "softmax" && k > 1 ? s[static_cast<std::size_t>(top[j])] / (ts + 1e-20)
                                                                  : s[static_cast<std::size_t>(top[j])];
    }
    for (int j = 0; j < k; ++j) {
      probs[static_cast<std::size_t>(t)][static_cast<std::size_t>(top[j])] = p[static_cast<std::size_t>(j)] * scale;
      map[static_cast<std::size_t>(t)][static_cast<std::size_t>(top[j])] = 1;
    }
  }
  if (cf > 0) {
    const long C = static_cast<long>(std::ceil(static_cast<double>(T * k) / E * cf));  // get_capacity
    if (C <= T) {
      for (int e = 0; e < E; ++e) {
        std::vector<int> order(static_cast<std::size_t>(T));
        std::iota(order.begin(), order.end(), 0);
        auto key = [&](int t) {
          return drop_policy == "probs" ? probs[static_cast<std::size_t>(t)][static_cast<std::size_t>(e)]
                                        : static_cast<double>(map[static_cast<std::size_t>(t)][static_cast<std::size_t>(e)]);
        };
        std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return key(a) > key(b); });
        for (long i = C; i < T; ++i) map[static_cast<std::size_t>(order[static_cast<std::size_t>(i)])][static_cast<std::size_t>(e)] = 0;
      }
    }
  }
  std::vector<std::map<int, double>> out(static_cast<std::size_t>(T));
  for (int t = 0; t < T; ++t)
    for (int e = 0; e < E; ++e)
      if (map[static_cast<std::size_t>(t)][static_cast<std::size_t>(e)])
        out[static_cast<std::size_t>(t)][e] = probs[static_cast<std::size_t>(t)][static_cast<std::size_t>(e)];
  return out;
}

}  // namespace

TEST_CASE("topk preset megatron equals Megatron-Core's routing and token dropping, written out from moe_utils.py") {
  rc::prop("topk megatron preset vs a second implementation of Megatron-Core", [] {
    const int E = *rc::gen::inRange(2, 25);
    const int k = 1 + choose(std::min(E, 6));
    const int T = *rc::gen::inRange(1, 120);
    static const char* kFns[] = {"softmax", "sigmoid", "sqrtsoftplus"};
    const std::string fn = kFns[choose(3)];
    // Megatron-Core refuses softmax top-1 without pre-softmax; the preset follows it.
    const bool pre_softmax = fn == "softmax" && (k == 1 || choose(2) == 0);
    static const char* kCf[] = {"0", "0.5", "1", "1.1", "1.25", "2"};
    const std::string cf = kCf[choose(6)];
    const std::string drop = choose(2) ? "probs" : "position";
    const std::string scale = choose(2) ? "1" : "2.5";
    const std::uint64_t seed = any_seed();
    const auto z = make_distinct_logits(T, E, seed);
    moesim::KnobMap kn = {{"preset", "megatron"}, {"score_fn", fn}, {"topk_scaling_factor", scale},
                          {"drop_policy", drop == "probs" ? "probability" : "position"}};
    if (fn == "softmax" && k > 1) kn["renormalize"] = pre_softmax ? "false" : "true";
    if (cf == "0") kn["dropless"] = "true"; else kn["capacity_factor"] = cf;
    RC_LOG() << "E=" << E << " k=" << k << " T=" << T << " " << fn << " pre=" << pre_softmax << " cf=" << cf << " "
             << drop << " scale=" << scale << " seed=" << seed << '\n';
    auto p = moesim::make_policy("topk", E, k, kn);
    const Assignment a = route_once(*p, z, T, E);
    const auto want = megatron_route(z, T, E, k, fn, pre_softmax, std::stod(scale), std::stod(cf), drop);
    for (int t = 0; t < T; ++t) {
      const auto d = diff_served(served_weights(a, t), want[static_cast<std::size_t>(t)]);
      if (!d.empty()) RC_FAIL("token " + std::to_string(t) + ": " + d);
    }
  });
}

TEST_CASE("topk_rows equals topk_row bit for bit on every row, for any T, E and k (E = 64 in half the cases), with "
          "bias, -inf rows, signed zeros and NaN") {
  rc::prop("topk_rows(T rows) == topk_row per row", [] {
    const int T = *rc::gen::inRange(1, 70);
    // Half the cases at n = 64, the benchmarks' and the simulator's row length.
    const int n = *rc::gen::oneOf(rc::gen::just(64), rc::gen::inRange(1, 90));
    const int k = *rc::gen::inRange(1, std::min(n, 10) + 1);
    const bool with_bias = *rc::gen::arbitrary<bool>();
    // continuous, few distinct values (ties), some -inf rows, +0/-0/1 (the vector
    // kernel's max/min must keep the zero the strict '>' keeps), some NaN
    const int style = *rc::gen::inRange(0, 5);
    testutil::DataRng r(*rc::gen::arbitrary<std::uint64_t>());
    std::vector<float> z(static_cast<std::size_t>(T) * n), bias(static_cast<std::size_t>(n));
    const float zeros[3] = {0.0f, -0.0f, 1.0f};
    for (auto& x : z)
      x = style == 1   ? static_cast<float>(r.below(3))
          : style == 3 ? zeros[r.below(3)]
                       : static_cast<float>(r.unit() * 8.0 - 4.0);
    if (style == 2 || style == 4)
      for (int t = 0; t < T; t += 3)
        for (int e = 0; e < n; ++e)
          if (r.below(2))
            z[static_cast<std::size_t>(t) * n + e] =
                style == 2 ? -std::numeric_limits<float>::infinity() : std::numeric_limits<float>::quiet_NaN();
    for (auto& b : bias)
      b = style == 1 ? static_cast<float>(r.below(2)) : style == 3 ? zeros[r.below(2)] : static_cast<float>(r.unit() - 0.5);
    const float* bp = with_bias ? bias.data() : nullptr;
    std::vector<std::int32_t> got(static_cast<std::size_t>(T) * k), want(static_cast<std::size_t>(k));
    std::vector<float> gv(static_cast<std::size_t>(T) * k), wv(static_cast<std::size_t>(k));
    const bool finite = moesim::topk_rows(z.data(), T, n, k, got.data(), gv.data(), bp);
    RC_ASSERT(finite == std::all_of(z.begin(), z.end(), [](float x) { return std::isfinite(x); }));
    for (int t = 0; t < T; ++t) {
      moesim::topk_row(z.data() + static_cast<std::size_t>(t) * n, n, k, want.data(), wv.data(), bp);
      for (int j = 0; j < k; ++j) {
        const std::int32_t e = want[static_cast<std::size_t>(j)];
        RC_ASSERT(got[static_cast<std::size_t>(t) * k + j] == e);
        // The value is the chosen expert's score, bit for bit (the sign of a zero
        // included: the per-row kernels' lane reduction may return either zero).
        const float score = e < 0 ? wv[static_cast<std::size_t>(j)]
                                  : (bp ? z[static_cast<std::size_t>(t) * n + e] + bp[e] : z[static_cast<std::size_t>(t) * n + e]);
        RC_ASSERT(gv[static_cast<std::size_t>(t) * k + j] == wv[static_cast<std::size_t>(j)]);
        RC_ASSERT(std::bit_cast<std::uint32_t>(gv[static_cast<std::size_t>(t) * k + j]) == std::bit_cast<std::uint32_t>(score));
      }
    }
  });
}

#if defined(__AVX2__) && defined(__FMA__)
// The AVX2 kernel is what topk_rows runs without AVX-512; called directly here
// so that an AVX-512 machine tests it too.
TEST_CASE("topk_rows8 (AVX2) equals the scalar kernel bit for bit on every row it does not flag, and flags exactly "
          "the rows with fewer than k selectable experts, with bias, -inf rows, signed zeros and NaN") {
  rc::prop("topk_rows8 == topk_by per row", [] {
    const int n = *rc::gen::oneOf(rc::gen::just(64), rc::gen::inRange(1, 90));
    const int k = *rc::gen::inRange(1, 9);
    const bool with_bias = *rc::gen::arbitrary<bool>();
    const int style = *rc::gen::inRange(0, 5);  // as in the topk_rows property above
    testutil::DataRng r(*rc::gen::arbitrary<std::uint64_t>());
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> z(8 * static_cast<std::size_t>(n)), bias(static_cast<std::size_t>(n));
    const float zeros[3] = {0.0f, -0.0f, 1.0f};
    for (auto& x : z)
      x = style == 1 ? static_cast<float>(r.below(3)) : style == 3 ? zeros[r.below(3)] : static_cast<float>(r.unit() * 8.0 - 4.0);
    if (style == 2 || style == 4)
      for (int t = 0; t < 8; t += 3)
        for (int e = 0; e < n; ++e)
          if (r.below(2)) z[static_cast<std::size_t>(t) * n + e] = style == 2 ? -inf : std::numeric_limits<float>::quiet_NaN();
    for (auto& b : bias)
      b = style == 1 ? static_cast<float>(r.below(2)) : style == 3 ? zeros[r.below(2)] : static_cast<float>(r.unit() - 0.5);
    const float* bp = with_bias ? bias.data() : nullptr;
    std::vector<std::int32_t> got(8 * static_cast<std::size_t>(k)), want(static_cast<std::size_t>(k));
    std::vector<float> gv(8 * static_cast<std::size_t>(k)), wv(static_cast<std::size_t>(k));
    unsigned short_rows = 0;
    bool finite = false;
    RC_ASSERT(moesim::simd2::topk_rows8_dispatch(z.data(), bp, n, k, got.data(), gv.data(), &short_rows, &finite));
    RC_ASSERT(finite == std::all_of(z.begin(), z.end(), [](float x) { return std::isfinite(x); }));
    for (int t = 0; t < 8; ++t) {
      const float* row = z.data() + static_cast<std::size_t>(t) * n;
      moesim::topk_by(n, k, [&](int e) { return bp ? row[e] + bp[e] : row[e]; }, want.data(), wv.data());
      // Fewer than k selectable experts: the scalar kernel leaves kNoExpert or -inf at the end.
      const bool short_row = want[static_cast<std::size_t>(k - 1)] < 0 || wv[static_cast<std::size_t>(k - 1)] == -inf;
      RC_ASSERT(((short_rows >> t) & 1u) == (short_row ? 1u : 0u));
      if (short_row) continue;
      for (int j = 0; j < k; ++j) {
        const auto g = static_cast<std::size_t>(t) * k + static_cast<std::size_t>(j);
        RC_ASSERT(got[g] == want[static_cast<std::size_t>(j)]);
        RC_ASSERT(std::bit_cast<std::uint32_t>(gv[g]) == std::bit_cast<std::uint32_t>(wv[static_cast<std::size_t>(j)]));
      }
    }
  });
}
#endif

TEST_CASE("compute_weights from slot logits (the 16-slot vector blocks at k = 1, 2, 4, 8) equals the gathering "
          "scalar loop bitwise, for every rule, dropped slots, ties, -inf, NaN offsets and tiny sigmoids") {
  rc::prop("weights(slot logits) == weights(gathered), bit for bit", [] {
    // Mostly the widths of the vector blocks, sometimes one without (3, 5, 6, 7).
    const int T = *rc::gen::inRange(1, 60), E = *rc::gen::inRange(2, 40);
    const int k = *rc::gen::oneOf(rc::gen::element(1, 2, 4, 8), rc::gen::inRange(1, 9));
    const int style = *rc::gen::inRange(0, 4);  // continuous, ties, extremes, NaN offsets
    const auto rule = *rc::gen::element(moesim::WeightRule::SoftmaxSelected, moesim::WeightRule::SoftmaxGather,
                                        moesim::WeightRule::SigmoidGather, moesim::WeightRule::SqrtSoftplusGather);
    moesim::WeightSpec spec{rule, *rc::gen::arbitrary<bool>(), *rc::gen::arbitrary<bool>(), 1.0};
    testutil::DataRng r(*rc::gen::arbitrary<std::uint64_t>());
    const float inf = std::numeric_limits<float>::infinity();
    std::vector<float> z(static_cast<std::size_t>(T) * E);
    for (auto& x : z) {
      x = style == 1 ? static_cast<float>(r.below(3)) : static_cast<float>(r.unit() * 16.0 - 8.0);
      if (style == 2 && r.below(6) == 0) x = r.below(2) ? -inf : static_cast<float>(-90.0 - r.unit() * 40.0);
    }
    Assignment a;
    a.reset(T, E, k);
    std::vector<float> slots(static_cast<std::size_t>(T) * k);
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < k; ++j) {
        const std::size_t i = static_cast<std::size_t>(t) * k + j;
        a.expert[i] = r.below(5) == 0 ? moesim::kNoExpert : static_cast<std::int32_t>(r.below(E));
        a.offset[i] = style == 3 && r.below(8) == 0 ? std::numeric_limits<float>::quiet_NaN()
                                                    : static_cast<float>(r.unit() - 0.5);
        slots[i] = a.expert[i] >= 0 ? z[static_cast<std::size_t>(t) * E + a.expert[i]] : 0.0f;
      }
    a.requested = a.expert;
    Assignment b = a;
    moesim::compute_weights(spec, z.data(), a, slots.data());
    moesim::compute_weights(spec, z.data(), b);
    for (std::size_t i = 0; i < a.weight.size(); ++i) {
      const bool same = std::bit_cast<std::uint32_t>(a.weight[i]) == std::bit_cast<std::uint32_t>(b.weight[i]) ||
                        (std::isnan(a.weight[i]) && std::isnan(b.weight[i]));
      RC_ASSERT(same);
    }
  });
}

TEST_CASE("TopKSelector group-limited: 16-row blocks select exactly what select_row selects row by row, ties and "
          "non-finite rows included, and report the non-finite ones") {
  struct Case {
    int E, G, tg, k;
    const char* score;
    moesim::GroupValues values;
  };
  const Case cases[] = {
      {64, 8, 2, 2, "sum_topk", moesim::GroupValues::Identity},  {64, 8, 4, 8, "sum_topk", moesim::GroupValues::Sigmoid},
      {256, 8, 4, 8, "sum_topk", moesim::GroupValues::Identity}, {48, 6, 3, 3, "max", moesim::GroupValues::Softmax},
      {40, 5, 2, 4, "top2sum", moesim::GroupValues::SqrtSoftplus}, {24, 4, 4, 8, "sum_topk", moesim::GroupValues::Identity},
      {64, 16, 1, 2, "sum_topk", moesim::GroupValues::Identity},  {30, 3, 2, 5, "max", moesim::GroupValues::Identity},
  };
  Rng rng(5);
  for (const Case& c : cases) {
    std::vector<moesim::KnobSpec> specs = moesim::group_knobs();
    specs.push_back(moesim::tie_break_knob());
    const moesim::Knobs kn("topk", specs,
                           {{"n_groups", std::to_string(c.G)}, {"topk_groups", std::to_string(c.tg)}, {"group_score", c.score}});
    moesim::TopKSelector sel;
    sel.experts = c.E;
    sel.k = c.k;
    sel.configure(kn, "topk", c.values);
    for (int trial = 0; trial < 24; ++trial) {
      std::vector<float> z(static_cast<std::size_t>(16) * c.E);
      // Plain normals, then few distinct values (ties inside and across groups, +-0), then a NaN or inf row.
      for (auto& v : z)
        v = trial % 3 == 1 ? static_cast<float>(static_cast<int>(rng.next_u64() % 5) - 2) * (rng.uniform() < 0.5 ? 0.0f : 1.0f) *
                                 (rng.uniform() < 0.5 ? -1.0f : 1.0f)
                           : static_cast<float>(3.0 * rng.normal());
      if (trial % 6 == 5)
        z[static_cast<std::size_t>(7) * c.E + 3] = trial % 12 == 5 ? std::numeric_limits<float>::quiet_NaN()
                                                                   : std::numeric_limits<float>::infinity();
      std::vector<std::int32_t> idx(static_cast<std::size_t>(16) * c.k), want(idx.size());
      std::vector<float> val(idx.size()), want_val(idx.size());
      Rng r1(1), r2(1);
      // With AVX-512 the 16-row path scans every value (scans_finite()) and reports a
      // non-finite one, so the policy need not scan first; without it, rows go one by
      // one and the policy scans.
#if defined(__AVX512F__)
      constexpr bool kRowParallel = true;
#else
      constexpr bool kRowParallel = false;
#endif
      const bool finite = sel.select_block(z.data(), 16, idx.data(), val.data(), r1);
      CHECK(sel.scans_finite() == kRowParallel);
      if (kRowParallel) CHECK(finite == (trial % 6 != 5));
      for (int r = 0; r < 16; ++r)
        sel.select_row(z.data() + static_cast<std::size_t>(r) * c.E, want.data() + r * c.k, want_val.data() + r * c.k, r2);
      INFO("E=" << c.E << " G=" << c.G << " tg=" << c.tg << " k=" << c.k << " " << c.score << " trial " << trial);
      CHECK(idx == want);
      for (std::size_t i = 0; i < val.size(); ++i)
        CHECK(std::bit_cast<std::uint32_t>(val[i]) == std::bit_cast<std::uint32_t>(want_val[i]));
    }
  }
}

TEST_CASE("best_keyed takes exactly the take best of a full sort by (key desc, id asc): ties, signed zeros, mixed "
          "signs and spans from 1 ulp to 1e300") {
  // A second implementation: the whole list sorted by the comparator. Styles
  // cover the radix passes' hard cases: keys equal in their top bits (a span of a
  // few ulps), keys spread over every binade, both signs, and ties (-0 == +0).
  rc::prop("ids(best_keyed) == ids(sort)[0, take)", [] {
    const int n = choose(3) == 0 ? choose(70) : choose(3000);
    const int take = choose(n + 3);
    const int style = choose(5);
    std::mt19937_64 g(any_seed());
    RC_LOG() << "n=" << n << " take=" << take << " style=" << style << '\n';
    std::vector<moesim::KeyedItem> items(static_cast<std::size_t>(n));
    for (int i = 0; i < n; ++i) {
      const double u = static_cast<double>(g() >> 11) * 0x1p-53;
      double k = 0.0;
      switch (style) {
        case 0: k = -4.0 + 0.3 * u; break;                                         // a bracket of log-probabilities
        case 1: k = 1.0 + std::ldexp(static_cast<double>(g() % 5), -52); break;  // a few ulps
        case 2: k = std::ldexp(u - 0.5, static_cast<int>(g() % 2000) - 1000); break;  // every binade, both signs
        case 3: k = static_cast<double>(static_cast<int>(g() % 7) - 3); break;   // heavy ties
        default: k = g() % 4 == 0 ? -1.0 : g() % 2 ? 0.0 : -0.0;  // signed zeros (-0 == +0: the ids decide)
      }
      items[static_cast<std::size_t>(i)] = {k, static_cast<std::int32_t>(g() % 100000)};
    }
    auto sorted = items;
    std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
    std::vector<std::int32_t> want;
    for (int i = 0; i < std::min(take, n); ++i) want.push_back(sorted[static_cast<std::size_t>(i)].second);
    std::vector<std::int32_t> got;
    moesim::best_keyed(items, static_cast<std::size_t>(take), got);
    std::sort(want.begin(), want.end());
    std::sort(got.begin(), got.end());
    RC_ASSERT(got == want);
  });
}
