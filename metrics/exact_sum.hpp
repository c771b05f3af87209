#pragma once
// When a sum of floats in double is the same in any order. With the served
// values' exponent fields in [lo, hi] (lo at least 1: subnormals share field 1's
// quantum), every value is a multiple of 2^(lo - 150) below 2^(hi - 126), so a
// partial sum of at most n of them is an integer times that quantum below
// n 2^(hi - lo + 24). When that is at most 2^53 every partial sum of any subset
// is a double, exactly: a left-to-right chain, lanes and any grouping give the
// same bits (the exact sum), so a sum kept in slot order for its bits may be
// computed in any order instead.
#include <cstddef>
#include <cstdint>

namespace moesim {

// True when the values v[i] with ex[i] >= 0 (i < n) are finite and every sum of
// a subset of them, in double, is exact by the bound above (a conservative test:
// false says nothing).
bool served_sums_exact(const std::int32_t* ex, const float* v, std::size_t n);

}  // namespace moesim
