// selection/corrupt.hpp: each corruption's defining property, determinism, the plan's counts.
#include <catch2/catch.hpp>

#include <algorithm>
#include <sstream>

#include "common/json.hpp"
#include "selection/corrupt.hpp"

using namespace moesim;
using namespace moesim::selection;

namespace {
const std::string kDoc =
    "The quick brown fox jumps over the lazy dog. A second sentence follows here, with a comma. "
    "Then a third one closes the paragraph of this small test document about foxes and dogs.";

std::vector<std::string> sorted_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> w;
  for (std::string x; in >> x;) w.push_back(x);
  std::sort(w.begin(), w.end());
  return w;
}
}  // namespace

TEST_CASE("every corruption is a pure function of (text, seed) and changes the text", "[selection][corrupt]") {
  for (const char* name : {"shuffle", "boilerplate", "random_chars", "truncate", "char_noise"}) {
    INFO(name);
    const auto k = corruption_from(name);
    CHECK(std::string(to_string(k)) == name);
    CHECK(corrupt(kDoc, k, 7) == corrupt(kDoc, k, 7));
    CHECK(corrupt(kDoc, k, 7) != kDoc);
    std::size_t bad = 0;
    CHECK(valid_utf8(corrupt(kDoc, k, 7), bad));
  }
}

TEST_CASE("shuffle keeps the multiset of words; truncate keeps a prefix of 3 to 15% of the words", "[selection][corrupt]") {
  CHECK(sorted_words(corrupt(kDoc, Corruption::shuffle, 3)) == sorted_words(kDoc));
  CHECK(corrupt(kDoc, Corruption::shuffle, 3) != corrupt(kDoc, Corruption::shuffle, 4));
  const auto t = corrupt(kDoc, Corruption::truncate, 3);
  CHECK(kDoc.rfind(t, 0) == 0);  // a prefix
  CHECK(sorted_words(t).size() == 3);  // 34 words: 5-15% is under 3, so the floor of 3 applies
}

TEST_CASE("length-matched corruptions are at least as long as the document", "[selection][corrupt]") {
  for (auto k : {Corruption::boilerplate, Corruption::random_chars, Corruption::char_noise})
    CHECK(corrupt(kDoc, k, 1).size() >= kDoc.size());
}

TEST_CASE("corruption plan: exactly round(fraction * n) documents, kinds in equal turns, seeded", "[selection][corrupt]") {
  const auto p = corruption_plan(101, 0.4, 5, 9);
  CHECK(std::count_if(p.begin(), p.end(), [](int k) { return k >= 0; }) == 40);
  for (int k = 0; k < 5; ++k) CHECK(std::count(p.begin(), p.end(), k) == 8);
  CHECK(p == corruption_plan(101, 0.4, 5, 9));
  CHECK(p != corruption_plan(101, 0.4, 5, 10));
  const auto none = corruption_plan(10, 0.0, 5, 9);
  CHECK(std::count(none.begin(), none.end(), -1) == 10);
}

TEST_CASE("an unknown corruption name is an error naming it", "[selection][corrupt]") {
  CHECK_THROWS_WITH(corruptions_from("shuffle,upcase"), Catch::Contains("unknown corruption 'upcase'"));
}
