#pragma once
// Per-batch load statistics of one MoE layer, as the CSV log reports them.
#include <cstdint>
#include <vector>

namespace moesim::torch_backend {

// (max_i load_i - mean) / mean; 0 for an empty batch.
double max_violation(const std::vector<std::int64_t>& loads);
// Gini coefficient of the loads: 0 = perfectly even, (E-1)/E = one expert takes all.
double gini(const std::vector<std::int64_t>& loads);

}  // namespace moesim::torch_backend
