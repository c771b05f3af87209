// The eps-auction for balanced assignment (policies/auction_assign.hpp): its
// optimality gap against the Hungarian algorithm.
#include <catch2/catch.hpp>
#include <rapidcheck/catch.h>

#include <algorithm>
#include <cmath>

#include "helpers.hpp"
#include "hungarian.hpp"
#include "policies/auction_assign.hpp"

using namespace testutil;

TEST_CASE("auction_assign: total within T*eps of the Hungarian optimum (values in [0, 1])") {
  rc::prop("optimum - T*eps <= auction total <= optimum", [] {
    const int E = 1 + choose(8), cap = 1 + choose(6);
    const int T = E * cap;
    const double eps = choose(2) ? 1e-3 : 1e-2;
    auto z = make_logits(T, E, any_seed(), choose(3));
    // The auction's input: values scaled to [0, 1] (as balanced.cpp does).
    const auto [lo, hi] = std::minmax_element(z.begin(), z.end());
    const double range = double(*hi) - double(*lo);
    std::vector<double> value(z.size());
    std::vector<float> scaled(z.size());
    for (std::size_t i = 0; i < z.size(); ++i) {
      value[i] = range > 0 ? (z[i] - double(*lo)) / range : 0.0;
      scaled[i] = static_cast<float>(value[i]);
    }
    std::vector<std::int32_t> owner(static_cast<std::size_t>(T), -1);
    moesim::AuctionAssigner().assign(value.data(), T, E, cap, eps, owner.data());
    std::vector<int> load(static_cast<std::size_t>(E), 0);
    double got = 0;
    for (int t = 0; t < T; ++t) {
      ++load[static_cast<std::size_t>(owner[static_cast<std::size_t>(t)])];
      got += value[static_cast<std::size_t>(t) * E + owner[static_cast<std::size_t>(t)]];
    }
    RC_ASSERT(std::all_of(load.begin(), load.end(), [cap](int l) { return l == cap; }));
    // The oracle sees the values rounded to float: allow that rounding too.
    const double opt = static_cast<double>(hungarian_balanced_max(scaled, T, E, cap));
    RC_ASSERT(got <= opt + 1e-6 * T);
    RC_ASSERT(got >= opt - T * eps - 1e-6 * T);
  });
}
