// common/npy.hpp: the bytes numpy.save writes, and a reader that refuses the rest.
#include <catch2/catch.hpp>

#include <cstring>

#include "common/error.hpp"
#include "common/npy.hpp"

using namespace moesim;

namespace {
std::string header_of(const std::string& b) {
  const std::size_t len = static_cast<unsigned char>(b[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(b[9])) << 8);
  return b.substr(10, len);
}
// A file with a hand-written v1.0 header, padded as NumPy pads it.
std::string with_header(std::string dict, const std::string& data) {
  std::size_t total = 10 + dict.size() + 1;
  dict.append((64 - total % 64) % 64, ' ');
  dict += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(dict.size() & 0xff);
  out += static_cast<char>(dict.size() >> 8);
  return out + dict + data;
}
}  // namespace

TEST_CASE("npy_bytes: v1.0 magic, a 64-byte aligned header NumPy writes, little-endian data") {
  const float data[] = {1, 2, 3, 4, 5, 6};
  const auto b = npy_bytes(data, {2, 3});
  CHECK(b.substr(0, 6) == std::string("\x93NUMPY", 6));
  CHECK(b[6] == 1);
  CHECK(b[7] == 0);
  CHECK((10 + header_of(b).size()) % 64 == 0);
  CHECK(header_of(b).rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0) == 0);
  const std::int64_t ids[] = {7, 8, 9};
  CHECK(header_of(npy_bytes(ids, {3})).rfind("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", 0) == 0);
}

TEST_CASE("parse_npy reads back what npy_bytes wrote, and NumPy's other spellings") {
  const float data[] = {1.5f, -2, 3, 4, 5, 6};
  const auto a = parse_npy(npy_bytes(data, {2, 3}), "x.npy");
  CHECK(a.dtype == "<f4");
  CHECK(a.shape == std::vector<std::int64_t>{2, 3});
  CHECK(a.as_float() == std::vector<float>(data, data + 6));
  const std::int32_t small[] = {4, -5};
  CHECK(parse_npy(npy_bytes(small, {2}), "i.npy").as_int64() == std::vector<std::int64_t>{4, -5});
  // Keys in another order, double quotes, no trailing comma, a scalar shape.
  double d = 0.25;
  std::string db(8, '\0');
  std::memcpy(db.data(), &d, 8);
  const auto s = parse_npy(with_header("{\"shape\": (), \"fortran_order\": False, \"descr\": \"<f8\"}", db), "s.npy");
  CHECK(s.shape.empty());
  CHECK(s.size() == 1);
  CHECK(s.as_float() == std::vector<float>{0.25f});
}

TEST_CASE("parse_npy refuses bad magic, other dtypes, Fortran order, truncated and oversized data") {
  const float data[] = {1, 2, 3, 4};
  const auto good = npy_bytes(data, {2, 2});
  CHECK_THROWS_WITH(parse_npy("not npy", "x.npy"), Catch::Contains("x.npy: not an NPY file"));
  CHECK_THROWS_WITH(parse_npy(good.substr(0, good.size() - 3), "x.npy"), Catch::Contains("(truncated?)"));
  CHECK_THROWS_WITH(parse_npy(good + "xxxx", "x.npy"), Catch::Contains("data bytes"));
  CHECK_THROWS_WITH(parse_npy(with_header("{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", "abcd"), "b.npy"),
                    Catch::Contains("dtype '>f4' is not supported"));
  CHECK_THROWS_WITH(parse_npy(with_header("{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }", "abcd"), "f.npy"),
                    Catch::Contains("Fortran-order"));
  CHECK_THROWS_WITH(parse_npy(with_header("{'descr': '<f4', 'shape': (1,), }", "abcd"), "m.npy"),
                    Catch::Contains("lacks"));
  CHECK_THROWS_WITH(parse_npy(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", ""), "n.npy"),
                    Catch::Contains("not a whole number"));
  CHECK_THROWS_WITH(parse_npy(with_header("{'descr': '<f4', 'fortran_order': False, 'shape': (999999999999999, "
                                          "999999999999999), }", ""), "o.npy"),
                    Catch::Contains("shape too large"));
  CHECK_THROWS_WITH(parse_npy(good, "x.npy").as_int64(), Catch::Contains("where integers"));
}
