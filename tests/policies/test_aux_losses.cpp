// Auxiliary router losses: identities under uniform routing and hand-computed values.
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <cmath>

#include "helpers.hpp"
#include "policies/aux_losses.hpp"

using namespace testutil;
using moesim::Assignment;

namespace {
moesim::AuxLossSpec soft() { return {}; }
moesim::AuxLossSpec sig() { return {moesim::AuxScore::Sigmoid, moesim::AuxCounts::Served, 1}; }
// Token t -> expert t mod E (k=1): perfectly uniform when E divides T.
Assignment round_robin(int T, int E, int k = 1) {
  Assignment a;
  a.reset(T, E, k);
  for (int t = 0; t < T; ++t)
    for (int j = 0; j < k; ++j) {
      const int e = (t * k + j) % E;
      a.expert[static_cast<std::size_t>(t) * k + j] = e;
      a.weight[static_cast<std::size_t>(t) * k + j] = 1.0f / k;
      ++a.counts[static_cast<std::size_t>(e)];
    }
  a.routed = static_cast<std::int64_t>(T) * k;
  return a;
}
}  // namespace

TEST_CASE("load-balancing loss = 1 for uniform routing of zero logits, for any E, k") {
  for (int E : {1, 2, 4, 7, 16}) {
    for (int k : {1, 2}) {
      if (k > E) continue;
      CAPTURE(E, k);
      const int T = 3 * E;
      const std::vector<float> z(static_cast<std::size_t>(T) * E, 0.0f);
      const auto a = round_robin(T, E, k);
      CHECK(moesim::load_balancing_loss(z.data(), T, E, a) == Approx(1.0).epsilon(1e-12));
    }
  }
}

TEST_CASE("load-balancing loss hand-computed: everything on expert 0 with p0 = 3/4") {
  // E=2, T=2, logits {ln3, 0}: softmax = {3/4, 1/4} for both tokens; both routed to e0.
  // f = {1, 0}, P = {0.75, 0.25} -> E * sum f_i P_i = 2 * 0.75 = 1.5.
  const float l3 = std::log(3.0f);
  const std::vector<float> z = {l3, 0, l3, 0};
  Assignment a;
  a.reset(2, 2, 1);
  a.expert = {0, 0};
  a.counts = {2, 0};
  a.routed = 2;
  CHECK(moesim::load_balancing_loss(z.data(), 2, 2, a) == Approx(1.5).epsilon(1e-6));
  // Same routing of zero logits: P = {1/2, 1/2} -> 2 * 0.5 = 1 (collapse is invisible without skewed P).
  const std::vector<float> zero(4, 0.0f);
  CHECK(moesim::load_balancing_loss(zero.data(), 2, 2, a) == Approx(1.0).epsilon(1e-12));
}

TEST_CASE("load-balancing loss of a top-k assignment equals E * sum f_i P_i computed independently") {
  // Property: E * sum f_i P_i with f and P computed here in double from the assignment.
  rc::prop("load_balancing_loss matches its definition", [] {
    const int E = *rc::gen::inRange(1, 17), T = *rc::gen::inRange(1, 80);
    const int k = 1 + choose(E);
    const auto z = make_logits(T, E, any_seed(), choose(4));
    auto p = moesim::make_policy("topk", E, k, {{"dropless", "true"}});
    const auto a = route_once(*p, z, T, E);
    std::vector<double> P(static_cast<std::size_t>(E), 0.0);
    for (int t = 0; t < T; ++t) {
      std::vector<int> all(static_cast<std::size_t>(E));
      for (int e = 0; e < E; ++e) all[static_cast<std::size_t>(e)] = e;
      const auto prob = ref_weights(z.data() + static_cast<std::size_t>(t) * E, E, all, false, false);
      for (int e = 0; e < E; ++e) P[static_cast<std::size_t>(e)] += prob[static_cast<std::size_t>(e)] / T;
    }
    double want = 0.0;
    for (int e = 0; e < E; ++e) want += double(a.counts[static_cast<std::size_t>(e)]) / (double(T) * k) * P[static_cast<std::size_t>(e)];
    want *= E;
    RC_ASSERT(std::fabs(moesim::load_balancing_loss(z.data(), T, E, a) - want) <= 1e-9 * (1 + want));
  });
}

TEST_CASE("z-loss of all-zero logits = (ln E)^2; hand-computed value for {ln 3, 0}") {
  for (int E : {1, 2, 3, 8, 32}) {
    CAPTURE(E);
    const int T = 5;
    const std::vector<float> z(static_cast<std::size_t>(T) * E, 0.0f);
    CHECK(moesim::z_loss(z.data(), T, E) == Approx(std::pow(std::log(double(E)), 2)).margin(1e-12));
  }
  // {ln3, 0}: logsumexp = ln(3 + 1) = ln 4 = 1.3862944; squared = 1.9218121.
  const std::vector<float> z = {std::log(3.0f), 0.0f};
  CHECK(moesim::z_loss(z.data(), 1, 2) == Approx(1.9218121).epsilon(1e-6));
  // Two tokens: {0,0} -> (ln 2)^2 = 0.4804530, {ln3,0} -> 1.9218121; mean = 1.2011326.
  const std::vector<float> z2 = {0.0f, 0.0f, std::log(3.0f), 0.0f};
  CHECK(moesim::z_loss(z2.data(), 2, 2) == Approx(1.2011326).epsilon(1e-6));
  // Negative logsumexp still squares to a positive loss: {-3, -3} -> lse = -3 + ln 2 = -2.3068528,
  // squared 5.3215700.
  const std::vector<float> neg = {-3.0f, -3.0f};
  CHECK(moesim::z_loss(neg.data(), 1, 2) == Approx(5.3215700).epsilon(1e-6));
  // Large logits must not overflow: {1000, 1000} -> (1000 + ln 2)^2 = 1001386.7...
  const std::vector<float> big = {1000.0f, 1000.0f};
  CHECK(moesim::z_loss(big.data(), 1, 2) == Approx(std::pow(1000.0 + std::log(2.0), 2)).epsilon(1e-9));
}

TEST_CASE("router entropy of zero logits = ln E; hand-computed value for {ln 3, 0}") {
  for (int E : {1, 2, 5, 32}) {
    CAPTURE(E);
    const std::vector<float> z(static_cast<std::size_t>(4) * E, 0.0f);
    CHECK(moesim::router_entropy(z.data(), 4, E) == Approx(std::log(double(E))).margin(1e-12));
  }
  // p = {3/4, 1/4}: H = 0.75*ln(4/3) + 0.25*ln 4 = 0.2157616 + 0.3465736 = 0.5623351.
  const std::vector<float> z = {std::log(3.0f), 0.0f};
  CHECK(moesim::router_entropy(z.data(), 1, 2) == Approx(0.5623351).epsilon(1e-6));
  // A saturated router (one logit far above the rest) has entropy ~0, not NaN.
  const std::vector<float> sat = {200.0f, -200.0f, -200.0f};
  const double h = moesim::router_entropy(sat.data(), 1, 3);
  CHECK(std::isfinite(h));
  CHECK(h == Approx(0.0).margin(1e-12));
}

TEST_CASE("sequence balance loss = 1 under uniform routing (softmax and sigmoid scores)") {
  for (bool sigmoid : {false, true}) {
    for (int E : {2, 4, 8}) {
      CAPTURE(sigmoid, E);
      const int L = E, T = 3 * L;  // three sequences, each uniform
      const std::vector<float> z(static_cast<std::size_t>(T) * E, 0.0f);
      const auto a = round_robin(T, E);
      CHECK(moesim::sequence_balance_loss(z.data(), T, E, a, L, sigmoid ? sig() : soft()) == Approx(1.0).epsilon(1e-12));
    }
  }
}

TEST_CASE("sequence balance loss hand-computed: collapsed sequence with skewed scores") {
  // E=2, k=1, one sequence of L=2 tokens, logits {ln3, 0} each, both routed to e0.
  // f_0 = E/(k*L) * 2 = 2/2*2 = 2, f_1 = 0; P_0 = 3/4 -> loss = 2 * 0.75 = 1.5.
  const float l3 = std::log(3.0f);
  const std::vector<float> z = {l3, 0, l3, 0};
  Assignment a;
  a.reset(2, 2, 1);
  a.expert = {0, 0};
  a.counts = {2, 0};
  a.routed = 2;
  CHECK(moesim::sequence_balance_loss(z.data(), 2, 2, a, 2, soft()) == Approx(1.5).epsilon(1e-6));
  // seq_len = 1: two sequences of one token; each: f_0 = 2/1*1 = 2, P_0 = 0.75 -> 1.5; mean 1.5.
  CHECK(moesim::sequence_balance_loss(z.data(), 2, 2, a, 1, soft()) == Approx(1.5).epsilon(1e-6));
  // sigmoid scores, normalised: sigmoid(ln3) = 3/4, sigmoid(0) = 1/2 -> P_0 = 0.75/1.25 = 0.6 -> 1.2.
  CHECK(moesim::sequence_balance_loss(z.data(), 2, 2, a, 2, sig()) == Approx(1.2).epsilon(1e-6));
}

TEST_CASE("sequence balance loss: a short last sequence is normalised by its own length") {
  // E=2, k=1, T=3, seq_len=2 -> sequences [t0, t1] and [t2]; every token {ln3, 0} on e0.
  // first:  f_0 = 2/(1*2) * 2 = 2, P_0 = 0.75 -> 1.5
  // second: f_0 = 2/(1*1) * 1 = 2, P_0 = 0.75 -> 1.5      mean over sequences = 1.5
  const float l3 = std::log(3.0f);
  const std::vector<float> z = {l3, 0, l3, 0, l3, 0};
  Assignment a;
  a.reset(3, 2, 1);
  a.expert = {0, 0, 0};
  a.counts = {3, 0};
  a.routed = 3;
  CHECK(moesim::sequence_balance_loss(z.data(), 3, 2, a, 2, soft()) == Approx(1.5).epsilon(1e-6));
}

TEST_CASE("sequence balance loss: a sequence that balances only across the batch is still penalised") {
  // E=2, k=1, L=2, T=4: sequence 0 all on e0, sequence 1 all on e1 (batch-level uniform).
  // Zero logits -> P = {1/2, 1/2} in each sequence; f = {2, 0} then {0, 2} -> 1 and 1 -> 1.
  // With logits favouring the chosen expert (ln3): each sequence 2 * 0.75 = 1.5 -> mean 1.5,
  // while the batch-level LB loss is 2*(0.5*0.5 + 0.5*0.5) = 1.
  const float l3 = std::log(3.0f);
  const std::vector<float> z = {l3, 0, l3, 0, 0, l3, 0, l3};
  Assignment a;
  a.reset(4, 2, 1);
  a.expert = {0, 0, 1, 1};
  a.counts = {2, 2};
  a.routed = 4;
  CHECK(moesim::sequence_balance_loss(z.data(), 4, 2, a, 2, soft()) == Approx(1.5).epsilon(1e-6));
  CHECK(moesim::load_balancing_loss(z.data(), 4, 2, a) == Approx(1.0).epsilon(1e-6));
}

TEST_CASE("sequence balance loss rejects seq_len < 1") {
  const std::vector<float> z = {0, 0};
  Assignment a;
  a.reset(1, 2, 1);
  REQUIRE_THROWS_AS(moesim::sequence_balance_loss(z.data(), 1, 2, a, 0, soft()), moesim::Error);
  REQUIRE_THROWS_WITH(moesim::sequence_balance_loss(z.data(), 1, 2, a, 0, soft()), Catch::Contains("seq_len=0"));
}

TEST_CASE("aux-loss conventions hand-computed: scores follow the score function, counts served or top-k") {
  // E = 2, T = 2, logits {ln 3, 0} per token. Capacity kept token 1 off expert 0: served {1 on e0, 1 on e1}.
  const float l3 = std::log(3.0f);
  const std::vector<float> z = {l3, 0, l3, 0};
  Assignment a;
  a.reset(2, 2, 1);
  a.expert = {0, 1};
  a.requested = {0, 0};
  a.counts = {1, 1};
  a.routed = 2;
  // Served (Switch, moesim): f = {1/2, 1/2}, softmax P = {3/4, 1/4} -> 2 * (3/8 + 1/8) = 1.
  CHECK(moesim::load_balancing_loss(z.data(), 2, 2, a) == Approx(1.0).epsilon(1e-6));
  // TopK (Megatron-Core): the plain top-1 of the scores is expert 0 for both tokens, f = {1, 0} -> 1.5.
  moesim::AuxLossSpec topk{moesim::AuxScore::Softmax, moesim::AuxCounts::TopK, 1};
  CHECK(moesim::load_balancing_loss(z.data(), 2, 2, a, topk) == Approx(1.5).epsilon(1e-6));
  // Sigmoid scores, normalised per token: sigmoid(ln 3) = 3/4, sigmoid(0) = 1/2 -> P = {0.6, 0.4};
  // with top-k counts: 2 * 0.6 = 1.2.
  topk.score = moesim::AuxScore::Sigmoid;
  CHECK(moesim::load_balancing_loss(z.data(), 2, 2, a, topk) == Approx(1.2).epsilon(1e-6));
  // sqrt(softplus): sqrt(ln 4) = 1.1774100, sqrt(ln 2) = 0.8325546 -> P0 = 0.5857864; top-k: 1.1715729.
  topk.score = moesim::AuxScore::SqrtSoftplus;
  CHECK(moesim::load_balancing_loss(z.data(), 2, 2, a, topk) == Approx(2 * 1.1774100 / (1.1774100 + 0.8325546)).epsilon(1e-6));
  // The score function a policy's weights follow.
  CHECK(moesim::aux_score_for({moesim::WeightRule::SigmoidGather, true}) == moesim::AuxScore::Sigmoid);
  CHECK(moesim::aux_score_for({moesim::WeightRule::SqrtSoftplusGather, true}) == moesim::AuxScore::SqrtSoftplus);
  CHECK(moesim::aux_score_for({moesim::WeightRule::SoftmaxSelected, true}) == moesim::AuxScore::Softmax);
  // DeepSeek-V3's sequence-wise loss counts the top-k of the scores too: one sequence of 2,
  // f = E/(k L) * {2, 0} = {2, 0}, P = {3/4, 1/4} -> 1.5.
  CHECK(moesim::sequence_balance_loss(z.data(), 2, 2, a, 2, {moesim::AuxScore::Softmax, moesim::AuxCounts::TopK, 1}) ==
        Approx(1.5).epsilon(1e-6));
  CHECK(moesim::sequence_balance_loss(z.data(), 2, 2, a, 2) == Approx(1.0).epsilon(1e-6));
}
