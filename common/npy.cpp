#include "common/npy.hpp"

#include <cstring>
#include <limits>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"

namespace moesim {

namespace {

std::string npy_raw(const char* descr, const void* data, std::size_t elem, const std::vector<std::int64_t>& shape) {
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (";
  std::size_t n = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) dict += ",";
    if (i + 1 < shape.size()) dict += " ";
    n *= static_cast<std::size_t>(shape[i]);
  }
  dict += "), }";
  // magic(6) + version(2) + header length(2) + dict + padding + '\n' = multiple of 64.
  std::size_t total = 10 + dict.size() + 1;
  const std::size_t pad = (64 - total % 64) % 64;
  dict.append(pad, ' ');
  dict += '\n';
  const auto hlen = static_cast<std::uint16_t>(dict.size());
  std::string out("\x93NUMPY", 6);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(hlen & 0xff);
  out += static_cast<char>(hlen >> 8);
  out += dict;
  if (n > 0) out.append(static_cast<const char*>(data), n * elem);
  return out;
}

std::size_t elem_size(const std::string& dtype) {
  if (dtype == "<f4" || dtype == "<i4") return 4;
  if (dtype == "<f8" || dtype == "<i8") return 8;
  return 0;
}

// The header dict NumPy writes: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// (keys in any order, optional trailing comma, spaces).
class HeaderReader {
 public:
  HeaderReader(std::string_view s, const std::string& source) : s_(s), src_(source) {}

  template <class A>  // NpyArray or NpyView: fills dtype and shape
  void read(A& a, bool& fortran) {
    bool have_descr = false, have_order = false, have_shape = false;
    ws();
    expect('{');
    for (;;) {
      ws();
      if (eat('}')) break;
      const std::string key = quoted();
      ws();
      expect(':');
      ws();
      if (key == "descr") {
        if (have_descr) fail("'descr' given twice");
        a.dtype = quoted(), have_descr = true;
      } else if (key == "fortran_order") {
        if (have_order) fail("'fortran_order' given twice");
        if (word("False")) fortran = false;
        else if (word("True")) fortran = true;
        else fail("'fortran_order' must be True or False");
        have_order = true;
      } else if (key == "shape") {
        if (have_shape) fail("'shape' given twice");
        shape(a.shape), have_shape = true;
      } else {
        fail("unexpected key '" + key + "'");
      }
      ws();
      if (eat(',')) continue;
      ws();
      expect('}');
      break;
    }
    if (!have_descr || !have_order || !have_shape) fail("the header lacks 'descr', 'fortran_order' or 'shape'");
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw Error(src_ + ": not an NPY header NumPy writes: " + what); }
  void ws() {
    while (pos_ < s_.size() && (s_[pos_] == ' ' || s_[pos_] == '\n')) ++pos_;
  }
  bool eat(char c) {
    if (pos_ < s_.size() && s_[pos_] == c) return ++pos_, true;
    return false;
  }
  void expect(char c) {
    if (!eat(c)) fail(std::string("expected '") + c + "'");
  }
  bool word(std::string_view w) {
    if (s_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }
  std::string quoted() {
    const char q = pos_ < s_.size() ? s_[pos_] : '\0';
    if (q != '\'' && q != '"') fail("expected a quoted name");
    const auto end = s_.find(q, pos_ + 1);
    if (end == std::string_view::npos || end - pos_ > 64) fail("unterminated or overlong name");
    std::string out(s_.substr(pos_ + 1, end - pos_ - 1));
    pos_ = end + 1;
    return out;
  }
  void shape(std::vector<std::int64_t>& out) {
    expect('(');
    for (;;) {
      ws();
      if (eat(')')) return;
      const auto start = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      long v = 0;
      if (pos_ == start || pos_ - start > 15 || !parse_int(s_.substr(start, pos_ - start), v))
        fail("a shape entry is not a whole number");
      if (out.size() >= 32) fail("more than 32 dimensions");
      out.push_back(v);
      ws();
      if (eat(',')) continue;
      ws();
      expect(')');
      return;
    }
  }

  std::string_view s_;
  const std::string& src_;
  std::size_t pos_ = 0;
};

}  // namespace

std::string npy_bytes(const float* data, const std::vector<std::int64_t>& shape) {
  return npy_raw("<f4", data, sizeof(float), shape);
}
std::string npy_bytes(const std::int64_t* data, const std::vector<std::int64_t>& shape) {
  return npy_raw("<i8", data, sizeof(std::int64_t), shape);
}
std::string npy_bytes(const std::int32_t* data, const std::vector<std::int64_t>& shape) {
  return npy_raw("<i4", data, sizeof(std::int32_t), shape);
}

std::int64_t NpyArray::size() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

std::int64_t NpyView::size() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

void NpyView::to_float(std::vector<float>& out) const {
  const auto n = static_cast<std::size_t>(size());
  if (dtype == "<f4") {
    out.resize(n);
    if (n) std::memcpy(out.data(), data.data(), n * 4);
  } else if (dtype == "<f8") {
    out.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, data.data() + i * 8, 8);
      out[i] = static_cast<float>(d);
    }
  } else {
    throw Error("NPY array of dtype " + dtype + " where floats (<f4 or <f8) are expected");
  }
}

void NpyView::to_int64(std::vector<std::int64_t>& out) const {
  const auto n = static_cast<std::size_t>(size());
  if (dtype == "<i8") {
    out.resize(n);
    if (n) std::memcpy(out.data(), data.data(), n * 8);
  } else if (dtype == "<i4") {
    out.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
      std::int32_t v;
      std::memcpy(&v, data.data() + i * 4, 4);
      out[i] = v;
    }
  } else {
    throw Error("NPY array of dtype " + dtype + " where integers (<i4 or <i8) are expected");
  }
}

std::vector<float> NpyArray::as_float() const {
  std::vector<float> out;
  NpyView{dtype, shape, data}.to_float(out);
  return out;
}

std::vector<std::int64_t> NpyArray::as_int64() const {
  std::vector<std::int64_t> out;
  NpyView{dtype, shape, data}.to_int64(out);
  return out;
}

NpyView parse_npy_view(std::string_view b, const std::string& source) {
  if (b.size() < 10 || b.substr(0, 6) != std::string_view("\x93NUMPY", 6))
    throw Error(source + ": not an NPY file (no \\x93NUMPY magic)");
  const auto major = static_cast<unsigned char>(b[6]);
  std::size_t hlen = 0, off = 0;
  const auto u8 = [&](std::size_t i) { return static_cast<std::size_t>(static_cast<unsigned char>(b[i])); };
  if (major == 1) {
    hlen = u8(8) | (u8(9) << 8);
    off = 10;
  } else if (major == 2 || major == 3) {
    if (b.size() < 12) throw Error(source + ": truncated NPY header");
    hlen = u8(8) | (u8(9) << 8) | (u8(10) << 16) | (u8(11) << 24);
    off = 12;
  } else {
    throw Error(source + ": NPY version " + std::to_string(major) + " is not supported");
  }
  if (hlen > b.size() - off) throw Error(source + ": truncated NPY header");
  NpyView a;
  bool fortran = false;
  HeaderReader(b.substr(off, hlen), source).read(a, fortran);
  if (fortran) throw Error(source + ": Fortran-order arrays are not supported (save a C-order copy)");
  const std::size_t es = elem_size(a.dtype);
  if (es == 0)
    throw Error(source + ": dtype '" + a.dtype + "' is not supported (little-endian <f4, <f8, <i4, <i8 are)");
  std::uint64_t n = 1;
  for (auto d : a.shape) {
    if (d < 0 || (d > 0 && n > (std::numeric_limits<std::uint64_t>::max() / es) / static_cast<std::uint64_t>(d)))
      throw Error(source + ": shape too large");
    n *= static_cast<std::uint64_t>(d);
  }
  const std::size_t body = b.size() - off - hlen;
  if (n * es != body)
    throw Error(source + ": the shape holds " + std::to_string(n) + " elements of " + std::to_string(es) +
                " bytes, the file has " + std::to_string(body) + " data bytes" +
                (body < n * es ? " (truncated?)" : ""));
  a.data = b.substr(off + hlen);
  return a;
}

NpyArray parse_npy(std::string_view b, const std::string& source) {
  const NpyView v = parse_npy_view(b, source);
  NpyArray a;
  a.dtype = v.dtype;
  a.shape = v.shape;
  a.data = std::string(v.data);
  return a;
}

NpyArray read_npy(const std::string& path) { return parse_npy(read_file(path), path); }

}  // namespace moesim
