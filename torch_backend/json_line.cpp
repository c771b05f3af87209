#include "torch_backend/json_line.hpp"

#include <cstdint>

namespace moesim::torch_backend {

namespace {

class Parser {
 public:
  explicit Parser(std::string_view s) : s_(s) {}

  bool parse_top(std::string& text, bool& has_text, bool& text_is_string) {
    ws();
    if (!eat('{')) return fail("expected '{'");
    ws();
    if (eat('}')) return end();
    while (true) {
      ws();
      std::string key;
      if (!string(key)) return false;
      ws();
      if (!eat(':')) return fail("expected ':'");
      ws();
      if (key == "text" && peek() == '"') {
        if (!string(text)) return false;
        has_text = true;
        text_is_string = true;
      } else {
        if (key == "text") has_text = true;
        if (!value(1)) return false;
      }
      ws();
      if (eat(',')) continue;
      if (eat('}')) return end();
      return fail("expected ',' or '}'");
    }
  }

  const std::string& error() const { return err_; }

 private:
  static constexpr int kMaxDepth = 64;

  bool end() {
    ws();
    return pos_ == s_.size() ? true : fail("trailing characters after the object");
  }
  bool fail(const std::string& what) {
    if (err_.empty()) err_ = "invalid JSON at column " + std::to_string(pos_ + 1) + ": " + what;
    return false;
  }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  bool eat(char c) {
    if (peek() != c || pos_ >= s_.size()) return false;
    ++pos_;
    return true;
  }
  void ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r' || s_[pos_] == '\n')) ++pos_;
  }

  bool value(int depth) {
    if (depth > kMaxDepth) return fail("nesting too deep");
    const char c = peek();
    if (c == '"') {
      std::string ignored;
      return string(ignored);
    }
    if (c == '{') {
      ++pos_;
      ws();
      if (eat('}')) return true;
      while (true) {
        ws();
        std::string key;
        if (!string(key)) return false;
        ws();
        if (!eat(':')) return fail("expected ':'");
        ws();
        if (!value(depth + 1)) return false;
        ws();
        if (eat(',')) continue;
        if (eat('}')) return true;
        return fail("expected ',' or '}'");
      }
    }
    if (c == '[') {
      ++pos_;
      ws();
      if (eat(']')) return true;
      while (true) {
        ws();
        if (!value(depth + 1)) return false;
        ws();
        if (eat(',')) continue;
        if (eat(']')) return true;
        return fail("expected ',' or ']'");
      }
    }
    if (literal("true") || literal("false") || literal("null")) return true;
    return number();
  }

  bool literal(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }

  bool digits() {
    const auto start = pos_;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
    return pos_ > start;
  }

  bool number() {
    eat('-');
    if (!digits()) return fail("expected a value");
    if (eat('.') && !digits()) return fail("expected digits after '.'");
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!digits()) return fail("expected exponent digits");
    }
    return true;
  }

  bool hex4(std::uint32_t& v) {
    if (pos_ + 4 > s_.size()) return fail("truncated \\u escape");
    v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') v |= static_cast<std::uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') v |= static_cast<std::uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') v |= static_cast<std::uint32_t>(c - 'A' + 10);
      else return fail("bad hex digit in \\u escape");
    }
    return true;
  }

  static void utf8(std::uint32_t cp, std::string& out) {
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

  bool string(std::string& out) {
    if (!eat('"')) return fail("expected a string");
    out.clear();
    while (true) {
      if (pos_ >= s_.size()) return fail("unterminated string");
      const char c = s_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return fail("control character in string");
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= s_.size()) return fail("unterminated escape");
      const char e = s_[pos_++];
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
          std::uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xD800 && cp < 0xDC00) {
            std::uint32_t lo = 0;
            // An unpaired surrogate is replaced, as Python's json does with errors="replace".
            if (s_.substr(pos_, 2) == "\\u") {
              pos_ += 2;
              if (!hex4(lo)) return false;
              if (lo >= 0xDC00 && lo < 0xE000) cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              else cp = 0xFFFD;
            } else {
              cp = 0xFFFD;
            }
          } else if (cp >= 0xDC00 && cp < 0xE000) {
            cp = 0xFFFD;
          }
          utf8(cp, out);
          break;
        }
        default: return fail(std::string("bad escape '\\") + e + "'");
      }
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  std::string err_;
};

}  // namespace

bool parse_c4_line(std::string_view line, std::string& text, std::string& why) {
  Parser p(line);
  bool has_text = false, is_string = false;
  text.clear();
  if (!p.parse_top(text, has_text, is_string)) {
    why = p.error();
    return false;
  }
  if (!has_text) {
    why = "no \"text\" field";
    return false;
  }
  if (!is_string) {
    why = "\"text\" is not a string";
    return false;
  }
  return true;
}

}  // namespace moesim::torch_backend
