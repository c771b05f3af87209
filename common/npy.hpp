#pragma once
// NPY v1.0 files, NumPy's own format, so that numpy.load reads what moesim writes
// and moesim reads what numpy.save writes, with no custom code on either side.
// Layout: magic "\x93NUMPY", version 1.0, little-endian header length, a header
// dict padded with spaces and a newline to a multiple of 64 bytes, then the data.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moesim {

// Little-endian C-order arrays (x86-64 is little-endian, which '<f4' promises).
std::string npy_bytes(const float* data, const std::vector<std::int64_t>& shape);
std::string npy_bytes(const std::int64_t* data, const std::vector<std::int64_t>& shape);
std::string npy_bytes(const std::int32_t* data, const std::vector<std::int64_t>& shape);

// An array whose data lies elsewhere (parse_npy_view: inside the file's bytes).
struct NpyView {
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::string_view data;
  std::int64_t size() const;  // product of the shape
  // Into out, reusing its capacity: <f4, or <f8 converted; Error otherwise.
  void to_float(std::vector<float>& out) const;
  // <i8, or <i4 widened; Error otherwise.
  void to_int64(std::vector<std::int64_t>& out) const;
};

struct NpyArray {
  std::string dtype;                // "<f4", "<f8", "<i4", "<i8"
  std::vector<std::int64_t> shape;  // C order
  std::string data;                 // raw little-endian elements
  std::int64_t size() const;        // product of the shape
  std::vector<float> as_float() const;       // <f4, or <f8 converted; Error otherwise
  std::vector<std::int64_t> as_int64() const;  // <i4 or <i8; Error otherwise
};

// Parses an NPY v1.0/v2.0 file. Refuses (Error naming source): a bad magic or
// version, a header that is not the dict NumPy writes, Fortran order, big-endian
// or unsupported dtypes, a shape whose size overflows, data shorter or longer
// than the shape says.
NpyArray parse_npy(std::string_view bytes, const std::string& source);
// The same checks without copying the data: the view's data points into bytes.
NpyView parse_npy_view(std::string_view bytes, const std::string& source);
NpyArray read_npy(const std::string& path);

}  // namespace moesim
