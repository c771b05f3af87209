#include "torch_backend/rotary.hpp"

#include "policies/types.hpp"

namespace moesim::torch_backend {

Rotary::Rotary(int head_dim, int max_len, double theta) : max_len_(max_len) {
  const int half = head_dim / 2;
  auto inv = torch::pow(theta, -torch::arange(0, half, torch::kDouble) / static_cast<double>(half));
  auto pos = torch::arange(0, max_len, torch::kDouble);
  auto ang = torch::outer(pos, inv);
  cos_ = ang.cos().to(torch::kFloat);
  sin_ = ang.sin().to(torch::kFloat);
}

torch::Tensor Rotary::apply(const torch::Tensor& x, std::int64_t offset) const {
  const auto T = x.size(2);
  if (offset + T > max_len_)
    throw Error("rotary: positions up to " + std::to_string(offset + T) + " exceed data.seq_len=" + std::to_string(max_len_));
  const auto half = x.size(3) / 2;
  auto c = cos_.narrow(0, offset, T);
  auto s = sin_.narrow(0, offset, T);
  auto halves = x.split(half, 3);
  const auto& x1 = halves[0];
  const auto& x2 = halves[1];
  return torch::cat({x1 * c - x2 * s, x1 * s + x2 * c}, 3);
}

}  // namespace moesim::torch_backend
