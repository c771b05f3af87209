// selection/scoring.hpp: the score sum, the top-fraction selection, rejection statistics, the unigram model.
#include <catch2/catch.hpp>
#include <rapidcheck.h>
#include <rapidcheck/catch.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "selection/scoring.hpp"

using namespace moesim;
using namespace moesim::selection;

TEST_CASE("trash experts: round(ratio * E), one good expert always left", "[selection][scoring]") {
  CHECK(trash_count(64, 0.125) == 8);  // seed 004's example: the last 8 of 64
  CHECK(trash_count(8, 0.125) == 1);
  CHECK(trash_count(8, 0.0) == 0);
  CHECK(trash_count(8, 1.0) == 7);
}

TEST_CASE("good-expert logit sum: hand-computed, and a NaN names token and expert", "[selection][scoring]") {
  // 2 tokens x 4 experts, the last 1 trash: (1 + 2 + 3) + (-1 + 0.5 + 0.25) = 5.75.
  const float z[] = {1, 2, 3, 100, -1, 0.5f, 0.25f, -100};
  CHECK(good_logit_sum(z, 2, 4, 1, "d") == 5.75);
  CHECK(good_logit_sum(z, 2, 4, 0, "d") == 5.75 + 100 - 100);
  float bad[] = {1, 2, 3, 4, 1, std::numeric_limits<float>::quiet_NaN(), 1, 1};
  CHECK_THROWS_WITH(good_logit_sum(bad, 2, 4, 1, "doc 7"), Catch::Contains("doc 7: router logit of token 1, expert 1 is NaN"));
}

TEST_CASE("keep count is round(share * n) within [1, n]", "[selection][scoring]") {
  CHECK(keep_count(1000, 0.05) == 50);
  CHECK(keep_count(10, 0.25) == 3);  // 2.5 rounds away from zero
  CHECK(keep_count(10, 0.001) == 1);
  CHECK(keep_count(10, 1.0) == 10);
}

TEST_CASE("selection keeps exactly the top fraction, best first, ties by source index (property)", "[selection][scoring]") {
  rc::prop("select_top == a sort by (score desc, key asc, position asc), cut at keep_count", [] {
    const auto n = *rc::gen::inRange<std::size_t>(1, 60);
    // Few distinct scores: ties are common.
    const auto raw = *rc::gen::container<std::vector<int>>(n, rc::gen::inRange(-3, 4));
    // Repeated keys too: then the earlier position wins.
    const auto keys = *rc::gen::container<std::vector<std::int64_t>>(n, rc::gen::inRange<std::int64_t>(0, 8));
    const double share = *rc::gen::inRange(1, 101) / 100.0;
    std::vector<double> score(raw.begin(), raw.end());
    const auto got = select_top(score, keys, share);
    RC_ASSERT(static_cast<std::int64_t>(got.size()) == keep_count(static_cast<std::int64_t>(n), share));
    // An independent check: every kept document beats or ties-and-precedes every rejected one.
    std::vector<bool> kept(n, false);
    for (auto i : got) kept[i] = true;
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t j = 0; j < n; ++j)
        if (kept[i] && !kept[j])
          RC_ASSERT(score[i] > score[j] || (score[i] == score[j] && (keys[i] < keys[j] || (keys[i] == keys[j] && i < j))));
    for (std::size_t r = 1; r < got.size(); ++r) {
      const auto a = got[r - 1], b = got[r];
      RC_ASSERT(score[a] > score[b] || (score[a] == score[b] && (keys[a] < keys[b] || (keys[a] == keys[b] && a < b))));
    }
  });
}

TEST_CASE("rejection statistics: hand-computed precision, recall, clean share", "[selection][scoring]") {
  // 6 documents, 3 corrupted (1, 3, 5); kept 0, 1, 2: rejected 3, 4, 5 of which 3 and 5 corrupted.
  const std::vector<bool> selected = {true, true, true, false, false, false}, corrupted = {false, true, false, true, false, true};
  const auto r = rejection_stats(selected, corrupted);
  CHECK(r.rejected == 3);
  CHECK(r.corrupted_rejected == 2);
  CHECK(r.precision == Approx(2.0 / 3));
  CHECK(r.recall == Approx(2.0 / 3));
  CHECK(r.clean_selected == Approx(2.0 / 3));
  CHECK(std::isnan(rejection_stats({true, true}, {false, false}).precision));
}

TEST_CASE("unigram model: add-one smoothing by hand, unseen ids finite", "[selection][scoring]") {
  UnigramModel u(4);
  u.add({0, 0, 1});  // counts 2, 1, 0, 0 of 3; V = 4
  CHECK(u.log_prob(0) == Approx(std::log(3.0 / 7)));
  CHECK(u.log_prob(3) == Approx(std::log(1.0 / 7)));
  CHECK(u.mean_log_prob({0, 3}) == Approx((std::log(3.0 / 7) + std::log(1.0 / 7)) / 2));
  CHECK_THROWS_WITH(u.add({4}), Catch::Contains("token id 4"));
}
