#pragma once
// FNV-1a, 64 bit: the project's one byte hash (checkpoint digests, seed names,
// the sweep's plan check across MPI ranks, the replica check across training
// processes). It detects accidents, not an adversary who recomputes it.
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace moesim {

inline constexpr std::uint64_t kFnvOffset = 0xcbf29ce484222325ULL;
inline constexpr std::uint64_t kFnvPrime = 0x100000001b3ULL;

// The hash of s, continuing from h.
constexpr std::uint64_t fnv1a(std::string_view s, std::uint64_t h = kFnvOffset) noexcept {
  for (char c : s) h = (h ^ static_cast<unsigned char>(c)) * kFnvPrime;
  return h;
}

// The hash of n bytes at p, continuing from h.
inline std::uint64_t fnv1a_bytes(const void* p, std::size_t n, std::uint64_t h = kFnvOffset) noexcept {
  const auto* c = static_cast<const unsigned char*>(p);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ c[i]) * kFnvPrime;
  return h;
}

}  // namespace moesim
