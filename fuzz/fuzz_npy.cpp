// NPY reader (router traces): any bytes, refused or read within their own length.
#include "common/npy.hpp"
#include "fuzz.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto a = moesim::parse_npy(moesim::fuzz::text(data, size), "fuzz.npy");
    const std::size_t item = a.dtype[2] == '4' ? 4 : 8;  // <f4 <i4 : <f8 <i8
    if (static_cast<std::size_t>(a.size()) * item != a.data.size()) __builtin_trap();
    if (a.dtype[1] == 'f') (void)a.as_float();
    else (void)a.as_int64();
  } catch (const moesim::Error&) {
  }
  return 0;
}
