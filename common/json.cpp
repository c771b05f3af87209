#include "common/json.hpp"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <set>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moesim {

std::string json_string(std::string_view s) {
  std::string o = "\"";
  for (char c : s) {
    switch (c) {
      case '"': o += "\\\""; break;
      case '\\': o += "\\\\"; break;
      case '\n': o += "\\n"; break;
      case '\t': o += "\\t"; break;
      case '\r': o += "\\r"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char b[8];
          std::snprintf(b, sizeof b, "\\u%04x", static_cast<unsigned>(static_cast<unsigned char>(c)));
          o += b;
        } else {
          o += c;
        }
    }
  }
  return o + "\"";
}

std::string json_number(double v) { return std::isfinite(v) ? format_number(v) : "null"; }

const JsonValue* JsonValue::find(std::string_view key) const {
  for (const auto& [k, v] : members)
    if (k == key) return &v;
  return nullptr;
}

const char* to_string(JsonValue::Type t) {
  switch (t) {
    case JsonValue::Type::Null: return "null";
    case JsonValue::Type::Bool: return "a boolean";
    case JsonValue::Type::Number: return "a number";
    case JsonValue::Type::String: return "a string";
    case JsonValue::Type::Array: return "a list";
    case JsonValue::Type::Object: return "an object";
  }
  return "?";
}

bool valid_utf8(std::string_view s, std::size_t& bad) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  for (std::size_t i = 0; i < n;) {
    const unsigned c = p[i];
    if (c < 0x80) {
      ++i;
      continue;
    }
    int len = 0;
    std::uint32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0F, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07, min = 0x10000;
    else return bad = i, false;
    if (i + static_cast<std::size_t>(len) > n) return bad = i, false;
    for (int j = 1; j < len; ++j) {
      if ((p[i + static_cast<std::size_t>(j)] & 0xC0) != 0x80) return bad = i, false;
      cp = (cp << 6) | (p[i + static_cast<std::size_t>(j)] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return bad = i, false;
    i += static_cast<std::size_t>(len);
  }
  return true;
}

namespace {

struct Failure {
  std::size_t pos;
  std::string what;
};

// Recursive descent, depth-bounded; the recursion depth is the nesting depth, at most kMaxDepth.
class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  JsonValue document() {
    ws();
    JsonValue v = value(0);
    ws();
    if (pos_ != s_.size()) fail("trailing characters after the value");
    return v;
  }

 private:
  static constexpr int kMaxDepth = 64;

  [[noreturn]] void fail(const std::string& what) const { throw Failure{pos_, what}; }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool eat(char c) {
    if (pos_ >= s_.size() || s_[pos_] != c) return false;
    ++pos_;
    return true;
  }
  void ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r' || s_[pos_] == '\n')) ++pos_;
  }

  JsonValue value(int depth) {
    if (depth >= kMaxDepth) fail("nesting deeper than 64 levels");
    const char c = peek();
    JsonValue v;
    if (c == '"') {
      v.type = JsonValue::Type::String;
      v.text = string();
    } else if (c == '{') {
      ++pos_;
      v.type = JsonValue::Type::Object;
      ws();
      if (eat('}')) return v;
      std::set<std::string> keys;
      for (;;) {
        ws();
        if (peek() != '"') fail("expected a quoted key");
        const std::size_t key_pos = pos_;
        std::string key = string();
        if (!keys.insert(key).second) {
          pos_ = key_pos;
          fail("key \"" + key + "\" appears twice");
        }
        ws();
        if (!eat(':')) fail("expected ':'");
        ws();
        JsonValue item = value(depth + 1);
        v.members.push_back(JsonMember{std::move(key), std::move(item)});
        ws();
        if (eat(',')) continue;
        if (eat('}')) return v;
        fail("expected ',' or '}'");
      }
    } else if (c == '[') {
      ++pos_;
      v.type = JsonValue::Type::Array;
      ws();
      if (eat(']')) return v;
      for (;;) {
        ws();
        v.items.push_back(value(depth + 1));
        ws();
        if (eat(',')) continue;
        if (eat(']')) return v;
        fail("expected ',' or ']'");
      }
    } else if (literal("true")) {
      v.type = JsonValue::Type::Bool;
      v.boolean = true;
    } else if (literal("false")) {
      v.type = JsonValue::Type::Bool;
    } else if (literal("null")) {
      v.type = JsonValue::Type::Null;
    } else {
      v.type = JsonValue::Type::Number;
      number(v);
    }
    return v;
  }

  bool literal(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }

  void digits() {
    const auto start = pos_;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    if (pos_ == start) fail(start == 0 && s_.empty() ? "empty text" : "expected a value");
  }

  void number(JsonValue& v) {
    const auto start = pos_;
    eat('-');
    if (peek() == '0') {
      ++pos_;
    } else {
      digits();
    }
    if (eat('.')) digits();
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (!eat('+')) eat('-');
      digits();
    }
    v.text = std::string(s_.substr(start, pos_ - start));
    auto [p, ec] = std::from_chars(v.text.data(), v.text.data() + v.text.size(), v.number);
    if (ec == std::errc::result_out_of_range) {
      pos_ = start;
      fail("number " + v.text + " is out of range");
    }
    if (ec != std::errc() || p != v.text.data() + v.text.size()) {
      pos_ = start;
      fail("malformed number");
    }
  }

  static int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  std::uint32_t hex4() {
    if (pos_ + 4 > s_.size()) fail("truncated \\u escape");
    std::uint32_t u = 0;
    for (int i = 0; i < 4; ++i) {
      const int h = hex(s_[pos_ + static_cast<std::size_t>(i)]);
      if (h < 0) fail("bad \\u escape");
      u = u * 16 + static_cast<std::uint32_t>(h);
    }
    pos_ += 4;
    return u;
  }

  static void put_utf8(std::uint32_t cp, std::string& out) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  std::string string() {
    ++pos_;  // the opening quote
    std::string out;
    const std::size_t start = pos_;
    for (;;) {
      if (pos_ >= s_.size()) {
        pos_ = start - 1;
        fail("unterminated string");
      }
      const char c = s_[pos_];
      if (c == '"') {
        ++pos_;
        break;
      }
      if (static_cast<unsigned char>(c) < 0x20) fail("unescaped control character in a string");
      if (c != '\\') {
        out += c;
        ++pos_;
        continue;
      }
      ++pos_;
      const char e = peek();
      ++pos_;
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4();
          if (cp >= 0xDC00 && cp <= 0xDFFF) fail("lone low surrogate \\u" + hexs(cp));
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (!(peek() == '\\' && pos_ + 1 < s_.size() && s_[pos_ + 1] == 'u'))
              fail("lone high surrogate \\u" + hexs(cp));
            pos_ += 2;
            const std::uint32_t lo = hex4();
            if (lo < 0xDC00 || lo > 0xDFFF) fail("high surrogate \\u" + hexs(cp) + " not followed by a low one");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
          }
          put_utf8(cp, out);
          break;
        }
        default: --pos_, fail("bad escape");
      }
    }
    std::size_t bad = 0;
    if (!valid_utf8(out, bad)) {
      pos_ = start;
      fail("invalid UTF-8 in a string");
    }
    return out;
  }

  static std::string hexs(std::uint32_t u) {
    char b[8];
    std::snprintf(b, sizeof b, "%04x", static_cast<unsigned>(u));
    return b;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

// 1-based line and column of a byte offset.
std::pair<int, int> line_col(std::string_view s, std::size_t pos) {
  int line = 1, col = 1;
  for (std::size_t i = 0; i < pos && i < s.size(); ++i) {
    if (s[i] == '\n') ++line, col = 1;
    else ++col;
  }
  return {line, col};
}

}  // namespace

JsonValue parse_json(std::string_view text, const std::string& source) {
  try {
    return Parser(text).document();
  } catch (const Failure& f) {
    const auto [line, col] = line_col(text, f.pos);
    throw Error(source + ":" + std::to_string(line) + ":" + std::to_string(col) + ": invalid JSON: " + f.what);
  }
}

bool try_parse_json(std::string_view text, JsonValue& out, std::string& why) {
  try {
    out = Parser(text).document();
    return true;
  } catch (const Failure& f) {
    const auto [line, col] = line_col(text, f.pos);
    why = "invalid JSON at " + (text.find('\n') != std::string_view::npos ? "line " + std::to_string(line) + ", " : "") +
          "column " + std::to_string(col) + ": " + f.what;
    return false;
  }
}

}  // namespace moesim
