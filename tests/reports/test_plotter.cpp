// reports/plotter: gnuplot quoting and the panel layout helpers.
#include <catch2/catch.hpp>

#include "reports/plotter.hpp"

using namespace moesim;

TEST_CASE("plotter: gnuplot strings quote quotes; panels and images split evenly", "[report]") {
  CHECK(gq("it's") == "'it''s'");
  CHECK(gq("a\nb") == "'a b'");
  CHECK(data_file("x'.dat") == "'data/x''.dat'");
  int rows = 0, cols = 0;
  panel_layout(5, rows, cols);
  CHECK((rows == 2 && cols == 3));
  panel_layout(1, rows, cols);
  CHECK((rows == 1 && cols == 1));
  CHECK(per_image(17, 16) == 9);  // two images of 9 and 8, not 16 and 1
  CHECK(per_image(16, 16) == 16);
}
