#include "policies/types.hpp"

#include <algorithm>

namespace moesim {

const char* to_string(WeightRule r) {
  switch (r) {
    case WeightRule::SoftmaxSelected: return "softmax_selected";
    case WeightRule::SoftmaxGather: return "softmax_gather";
    case WeightRule::SigmoidGather: return "sigmoid_gather";
    case WeightRule::SqrtSoftplusGather: return "sqrtsoftplus_gather";
  }
  return "?";
}

void Assignment::reset(int T, int E, int w) {
  tokens = T;
  experts = E;
  width = w;
  const auto n = static_cast<std::size_t>(T) * static_cast<std::size_t>(w);
  expert.assign(n, kNoExpert);
  requested.assign(n, kNoExpert);
  weight.assign(n, 0.0f);
  offset.assign(n, 0.0f);
  counts.assign(static_cast<std::size_t>(E), 0);
  routed = dropped = dropped_tokens = capacity = padded = 0;
}

std::int64_t Assignment::served() const {
  std::int64_t s = 0;
  for (auto c : counts) s += c;
  return s;
}

}  // namespace moesim
