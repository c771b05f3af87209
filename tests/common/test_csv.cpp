// common/csv.hpp: deterministic writing, a strict reader that names file and line.
#include <catch2/catch.hpp>

#include <cmath>
#include <sstream>

#include "common/csv.hpp"
#include "common/error.hpp"

using namespace moesim;

TEST_CASE("CsvWriter: fixed number format, RFC 4180 quoting") {
  CHECK(csv_escape("a,b") == "\"a,b\"");
  CHECK(csv_escape("say \"hi\"") == "\"say \"\"hi\"\"\"");
  CHECK(csv_escape("two\nlines") == "\"two\nlines\"");
  std::ostringstream os;
  CsvWriter w(os);
  w.header({"x", "y"});
  w.row(std::vector<double>{1, 2.5});
  w.text_row({"a,b", "c"});
  CHECK(os.str() == "x,y\n1,2.5\n\"a,b\",c\n");
}

TEST_CASE("parse_csv reads what CsvWriter writes, quotes and embedded line breaks included") {
  const auto t = parse_csv("a,b,\"c,d\"\n1,\"x \"\"y\"\"\",3\n2,\"two\nlines\",4\r\n", "t.csv");
  REQUIRE(t.rows.size() == 2);
  CHECK(t.header[2] == "c,d");
  CHECK(t.rows[0][1] == "x \"y\"");
  CHECK(t.rows[1][1] == "two\nlines");
  CHECK(t.rows[1][2] == "4");
  CHECK(t.column("b") == 1);
  CHECK(t.column("z") == -1);
  CHECK(t.number(0, 0) == 1.0);
}

TEST_CASE("parse_csv refuses ragged rows, duplicate columns, open quotes; number() refuses junk") {
  CHECK_THROWS_WITH(parse_csv("a,b\n1\n", "t.csv"), "t.csv:2: 1 fields, the header has 2");
  // The line of the row, counting the line break inside the quoted field.
  CHECK_THROWS_WITH(parse_csv("a,b\n\"x\ny\",1\n2\n", "t.csv"), "t.csv:4: 1 fields, the header has 2");
  CHECK_THROWS_WITH(parse_csv("a,a\n1,2\n", "t.csv"), "t.csv:1: column 'a' named twice in the header");
  CHECK_THROWS_WITH(parse_csv("a\n\"open\n", "t.csv"), "t.csv:3: unterminated quoted field");
  const auto t = parse_csv("step,x\n1,nan\n2,abc\n3,\n", "t.csv");
  CHECK(std::isnan(t.number(0, 1)));
  CHECK(std::isnan(t.number(2, 1)));
  CHECK_THROWS_WITH(t.number(1, 1), "t.csv:3: column 'x': 'abc' is not a number");
  CHECK_THROWS_WITH(t.need_column("y"), "t.csv: no column 'y'");
}
