#pragma once
// JSON for moesim's files: the writer's string escaping and numbers, and a strict
// reader (RFC 8259) for what users hand back (trace manifests, C4 lines): UTF-8
// checked, lone surrogates and duplicate keys refused, nesting depth bounded, no
// recursion a crafted file can exhaust, every error naming line and column.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace moesim {

// A quoted JSON string with ", \, control characters escaped.
std::string json_string(std::string_view s);
// format_number, or null for NaN and infinities (JSON has neither).
std::string json_number(double v);

struct JsonMember;

struct JsonValue {
  enum class Type { Null, Bool, Number, String, Array, Object };
  Type type = Type::Null;
  bool boolean = false;
  double number = 0.0;
  std::string text;  // a String's value; a Number as written
  std::vector<JsonValue> items;                             // Array
  std::vector<JsonMember> members;   // Object, in file order

  bool is(Type t) const { return type == t; }
  const JsonValue* find(std::string_view key) const;  // Object member, or nullptr
};

// Not a std::pair: a pair of an incomplete type is undefined (libc++ and clang refuse it).
struct JsonMember {
  std::string first;  // the key
  JsonValue second;
};

const char* to_string(JsonValue::Type t);  // "null", "a number", "an object", ...

// Parses one JSON text. Throws Error "source:line:column: what" on malformed input.
JsonValue parse_json(std::string_view text, const std::string& source);
// The same without throwing: false and why = "invalid JSON at column C: what"
// (or "line L, column C" when the text has several lines).
bool try_parse_json(std::string_view text, JsonValue& out, std::string& why);

// Whether s is well-formed UTF-8 (no overlong forms, surrogates or code points
// above U+10FFFF); on failure, bad is the byte offset of the first bad sequence.
bool valid_utf8(std::string_view s, std::size_t& bad);

}  // namespace moesim
