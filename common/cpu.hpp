#pragma once
// The CPU a measurement ran on, printed next to every speed figure: its model
// name and the vector ISA extensions that decide the kernels (Linux /proc/cpuinfo).
#include <string>

namespace moesim {

// "AMD EPYC 9R45 ..." (the first "model name" of /proc/cpuinfo), or "unknown CPU".
std::string cpu_model();
// The ISA extensions present among AVX2, AVX-512F, AVX-512-BF16 and AMX-BF16,
// e.g. "AVX2 AVX-512F AVX-512-BF16 (no AMX)".
std::string cpu_isa();

}  // namespace moesim
