// common/json.hpp: escaping for the writers, and the strict reader.
#include <catch2/catch.hpp>

#include <cmath>
#include <string>

#include "common/error.hpp"
#include "common/json.hpp"

using namespace moesim;

namespace {
std::string why_of(const std::string& text) {
  JsonValue v;
  std::string why;
  if (try_parse_json(text, v, why)) return "";
  return why;
}
}  // namespace

TEST_CASE("json_string escapes quotes, backslashes and control characters; json_number writes null for NaN") {
  CHECK(json_string("a\"b\\c\n\t\x01") == "\"a\\\"b\\\\c\\n\\t\\u0001\"");
  CHECK(json_number(0.5) == "0.5");
  CHECK(json_number(std::nan("")) == "null");
  CHECK(json_number(INFINITY) == "null");
  // What the writer writes, the reader reads back.
  const std::string tricky = "quote \" slash \\ tab \t nl \n bell \x07 caf\xc3\xa9";
  CHECK(parse_json(json_string(tricky), "t").text == tricky);
}

TEST_CASE("parse_json builds the value: objects in file order, arrays, numbers as written, escapes decoded") {
  const auto v = parse_json(R"({"b": [1, 2.5e3, -0, true, null], "a": {"x": "caf\u00e9 \ud83d\ude00"}})", "t");
  REQUIRE(v.is(JsonValue::Type::Object));
  REQUIRE(v.members.size() == 2);
  CHECK(v.members[0].first == "b");
  const auto* b = v.find("b");
  REQUIRE(b);
  REQUIRE(b->items.size() == 5);
  CHECK(b->items[1].number == 2500.0);
  CHECK(b->items[1].text == "2.5e3");
  CHECK(b->items[3].boolean);
  CHECK(b->items[4].is(JsonValue::Type::Null));
  CHECK(v.find("a")->find("x")->text == "caf\xc3\xa9 \xf0\x9f\x98\x80");
  CHECK(v.find("c") == nullptr);
}

TEST_CASE("parse_json refuses what RFC 8259 does not allow, naming line and column") {
  CHECK_THROWS_WITH(parse_json("{\"a\": 1,\n \"a\": 2}", "m.json"), "m.json:2:2: invalid JSON: key \"a\" appears twice");
  CHECK(why_of("{\"t\": \"\\ud800\"}").find("lone high surrogate") != std::string::npos);
  CHECK(why_of("{\"t\": \"\\udc00\"}").find("lone low surrogate") != std::string::npos);
  CHECK(why_of("{\"t\": \"\xff\"}").find("invalid UTF-8") != std::string::npos);
  CHECK(why_of("{\"t\": \"\xc0\xaf\"}").find("invalid UTF-8") != std::string::npos);  // overlong '/'
  CHECK(why_of("{\"t\": \"\xed\xa0\x80\"}").find("invalid UTF-8") != std::string::npos);  // encoded surrogate
  CHECK(why_of("{\"t\": \"a\nb\"}").find("unescaped control character") != std::string::npos);
  CHECK(why_of("[01]").find("at column 3") != std::string::npos);  // leading zero
  CHECK(why_of("[1.]").find("expected a value") != std::string::npos);
  CHECK(why_of("[1e999]").find("out of range") != std::string::npos);
  CHECK(why_of("{} x").find("trailing characters") != std::string::npos);
  CHECK(why_of("").find("empty text") != std::string::npos);
  CHECK(why_of("[\"a\" \"b\"]").find("expected ',' or ']'") != std::string::npos);
  CHECK(why_of("{\"a\" 1}").find("expected ':'") != std::string::npos);
  CHECK(why_of("{1: 2}").find("expected a quoted key") != std::string::npos);
  CHECK(why_of("\"\\x\"").find("bad escape") != std::string::npos);
}

TEST_CASE("parse_json bounds the nesting depth: a deep file is an error, not a stack overflow") {
  CHECK(why_of(std::string(64, '[') + std::string(64, ']')).empty());
  CHECK(why_of(std::string(65, '[') + std::string(65, ']')).find("deeper than 64") != std::string::npos);
  CHECK(why_of(std::string(100000, '[')).find("deeper than 64") != std::string::npos);
  // A long string or a wide object is fine (no regex, no quadratic key check).
  std::string wide = "{";
  for (int i = 0; i < 20000; ++i) wide += (i ? ",\"k" : "\"k") + std::to_string(i) + "\": " + std::to_string(i);
  wide += "}";
  CHECK(parse_json(wide, "w").members.size() == 20000u);
  CHECK(parse_json("\"" + std::string(100000, 'x') + "\"", "s").text.size() == 100000u);
}
