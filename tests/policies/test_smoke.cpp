#include <catch2/catch.hpp>

#include "policies/registry.hpp"

TEST_CASE("registry builds topk") {
  auto p = moesim::make_policy("topk", 8, 2);
  REQUIRE(p->name() == "topk");
}
