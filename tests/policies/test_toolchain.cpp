// The compiler this build uses keeps the constants it is given. GCC 12.2 with
// -march=native on AVX-512 machines stored `{c, c, c, 0}` as a broadcast of c
// (found when a hand-computed test read {1, 1, 1, 1} for {1, 1, 1, 0}); the
// top-level CMakeLists.txt turns the SLP vectoriser off for it. These are the
// shapes that went wrong, behind a call the optimiser cannot see through.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

namespace {
[[gnu::noinline]] std::vector<double> copied(const double* a, std::size_t n) { return {a, a + n}; }
[[gnu::noinline]] void three_and_zero(double* out, double x) {
  out[0] = x;
  out[1] = x;
  out[2] = x;
  out[3] = 0;
}
}  // namespace

TEST_CASE("toolchain: constant {c, c, c, 0} survives a copy (GCC 12 AVX-512 SLP miscompile)") {
  const double a[4] = {1, 1, 1, 0};
  const auto v = copied(a, 4);
  CHECK(v == std::vector<double>{1.0, 1.0, 1.0, 0.0});
  double b[4] = {2, 2, 2, 0}, c[4];
  std::memcpy(c, b, sizeof b);
  CHECK(c[3] == 0.0);
  const std::vector<double> w = {1, 1, 1, 0};
  CHECK(copied(w.data(), 4)[3] == 0.0);
  double o[4];
  three_and_zero(o, 3.0);
  CHECK(o[3] == 0.0);
}
