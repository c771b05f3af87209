// reports/markdown: escaping and number formats of the report tables.
#include <catch2/catch.hpp>

#include <cmath>

#include "reports/markdown.hpp"

using namespace moesim;

TEST_CASE("markdown: escapes table and emphasis characters; numbers at three decimals", "[report]") {
  CHECK(md_escape("a|b_c*d\ne") == "a\\|b\\_c\\*d e");
  CHECK(fmt_value(0.12345) == "0.123");
  CHECK(fmt_value(12345.0) == "1.23e+04");
  CHECK(fmt_value(std::nan("")) == "n/a");
  CHECK(mean_std(1.0, 0.5, 3) == "1.000 ± 0.500");
  CHECK(mean_std(1.0, 0.0, 1) == "1.000");
}
