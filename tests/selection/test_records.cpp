// selection/records.hpp: JSONL records round-trip, and malformed lines name file and line.
#include <catch2/catch.hpp>

#include <cmath>

#include "policies/rng.hpp"
#include "selection/records.hpp"

using namespace moesim;
using namespace moesim::selection;

TEST_CASE("JSONL records round-trip exactly: text with escapes and UTF-8, scores to the last bit", "[selection][records]") {
  Rng rng(5);
  std::vector<DocRecord> docs;
  for (int i = 0; i < 50; ++i) {
    DocRecord d{"c4_tiny/train", 1000 + i, "line \"one\"\n\ttab \\ back é ż 漢字 " + std::to_string(i), i % 2 == 0,
                (rng.uniform() - 0.5) * std::pow(10.0, static_cast<double>(rng.below(20)) - 10.0)};
    docs.push_back(d);
  }
  const auto back = parse_jsonl(to_jsonl(docs), "x.jsonl");
  REQUIRE(back.size() == docs.size());
  for (std::size_t i = 0; i < docs.size(); ++i) {
    CHECK(back[i].source_dataset == docs[i].source_dataset);
    CHECK(back[i].source_index == docs[i].source_index);
    CHECK(back[i].text == docs[i].text);
    CHECK(back[i].has_score == docs[i].has_score);
    if (docs[i].has_score) CHECK(back[i].quality_score == docs[i].quality_score);
  }
}

TEST_CASE("malformed JSONL: an error naming the file and line", "[selection][records]") {
  const std::string good = "{\"source_dataset\": \"a\", \"source_index\": 1, \"text\": \"t\"}\n";
  CHECK_THROWS_WITH(parse_jsonl(good + "{\"source_dataset\": \"a\", \"text\": \"t\"}\n", "f.jsonl"),
                    Catch::Contains("f.jsonl:2") && Catch::Contains("missing \"source_index\""));
  CHECK_THROWS_WITH(parse_jsonl(good + "not json\n", "f.jsonl"), Catch::Contains("f.jsonl:2"));
  CHECK_THROWS_WITH(parse_jsonl("{\"source_dataset\": \"a\", \"source_index\": -3, \"text\": \"t\"}\n", "f.jsonl"),
                    Catch::Contains("f.jsonl:1") && Catch::Contains("non-negative integer"));
  CHECK_THROWS_WITH(parse_jsonl("{\"source_dataset\": \"a\", \"source_index\": 1, \"text\": \"t\", \"label\": 1}\n", "f.jsonl"),
                    Catch::Contains("unknown field \"label\""));
  CHECK_THROWS_WITH(parse_jsonl(good + "\n" + good, "f.jsonl"), Catch::Contains("f.jsonl:2: empty line"));
}
