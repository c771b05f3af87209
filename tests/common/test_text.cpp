// common/text.hpp: strict number parsers, the two number formats, word helpers.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>

#include "common/text.hpp"

using namespace moesim;

TEST_CASE("parse_int and parse_real take the whole text, one optional '+', nothing else") {
  long i = 0;
  double d = 0;
  CHECK((parse_int("42", i) && i == 42));
  CHECK((parse_int("+42", i) && i == 42));
  CHECK((parse_int("-5", i) && i == -5));
  for (const char* bad : {"+-5", "-+5", "++5", "+", "", " 5", "5 ", "5x", "0x10", "1e3", "--5"}) {
    INFO(bad);
    CHECK_FALSE(parse_int(bad, i));
  }
  CHECK((parse_real("0.25", d) && d == 0.25));
  CHECK((parse_real("+1e-3", d) && d == 1e-3));
  CHECK((parse_real("-2", d) && d == -2.0));
  for (const char* bad : {"+-0.5", "-+1", "+", "", "1.5.2", "1e", " 1", "nan(", "0x1p3"}) {
    INFO(bad);
    CHECK_FALSE(parse_real(bad, d));
  }
  unsigned long long u = 0;
  CHECK((parse_uint64("18446744073709551615", u) && u == std::numeric_limits<unsigned long long>::max()));
  CHECK_FALSE(parse_uint64("-1", u));
  CHECK_FALSE(parse_uint64("18446744073709551616", u));
  bool b = false;
  CHECK((parse_bool("on", b) && b));
  CHECK((parse_bool("0", b) && !b));
  CHECK_FALSE(parse_bool("True", b));
}

TEST_CASE("format_real is the shortest exact text, format_number nine significant digits") {
  CHECK(format_real(0.001) == "0.001");
  CHECK(format_real(10.0) == "10");
  CHECK(format_real(0.1 + 0.2) == "0.30000000000000004");  // exact, not rounded
  double back = 0;
  REQUIRE(parse_real(format_real(1.0 / 3.0), back));
  CHECK(back == 1.0 / 3.0);
  CHECK(format_number(0.1) == "0.1");
  CHECK(format_number(-0.0) == "0");
  CHECK(format_number(1.0 / 3.0) == "0.333333333");
  CHECK(format_number(1e-20) == "1e-20");
  CHECK(format_number(123456789012.0) == "1.23456789e+11");
  CHECK(format_number(NAN) == "nan");
  CHECK(format_number(-INFINITY) == "-inf");
}

TEST_CASE("did_you_mean: one typo or a swapped pair, or the same last component in another section") {
  const std::vector<std::string> keys = {"world.skill_growth", "world.idle_decay", "gate.lr", "steps"};
  CHECK(did_you_mean("world.skill_grwoth", keys) == "world.skill_growth");
  CHECK(did_you_mean("stpes", keys) == "steps");
  CHECK(did_you_mean("stream.skill_growth", keys) == "world.skill_growth");
  CHECK(did_you_mean("banana", keys).empty());
  // A huge word is refused fast: no candidate is within its length band.
  CHECK(did_you_mean(std::string(50000, 'x'), keys).empty());
}

TEST_CASE("shell_quote leaves safe words alone and quotes the rest for a POSIX shell") {
  CHECK(shell_quote("policy.knobs.beta=0.5") == "policy.knobs.beta=0.5");
  CHECK(shell_quote("policy={name: topk}") == "'policy={name: topk}'");
  CHECK(shell_quote("it's") == "'it'\\''s'");
  CHECK(shell_quote("") == "''");
  CHECK(join({"a", "b", "c"}, ", ") == "a, b, c");
  CHECK(clock_text(3725) == "1:02:05");
  CHECK(clock_text(65) == "1:05");
  CHECK(clock_text(-1) == "?");
}
