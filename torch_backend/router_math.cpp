#include "torch_backend/router_math.hpp"

namespace moesim::torch_backend {

torch::Tensor combine_weights(const torch::Tensor& logits, const Assignment& a, const WeightSpec& spec) {
  const auto N = static_cast<std::int64_t>(a.tokens), W = static_cast<std::int64_t>(a.width);
  auto idx = torch::empty({N, W}, torch::kLong);
  auto served = torch::empty({N, W}, torch::kBool);
  auto* ip = idx.data_ptr<std::int64_t>();
  auto* sp = served.data_ptr<bool>();
  for (std::size_t s = 0; s < a.expert.size(); ++s) {
    const auto e = a.expert[s];
    ip[s] = e >= 0 ? e : 0;
    sp[s] = e >= 0;
  }
  auto picked = logits.gather(1, idx);
  const auto servedf = served.to(torch::kFloat);
  switch (spec.rule) {
    case WeightRule::SoftmaxSelected: {
      auto off = torch::from_blob(const_cast<float*>(a.offset.data()), {N, W}, torch::kFloat);
      auto s = (picked + off).masked_fill(served.logical_not(), -std::numeric_limits<float>::infinity());
      // A token with no served slot would softmax over all -inf; give it a harmless row.
      auto any = served.any(1, true);
      s = torch::where(any, s, torch::zeros_like(s));
      return torch::softmax(s, 1) * servedf;
    }
    case WeightRule::SoftmaxGather:
    case WeightRule::SigmoidGather: {
      auto scores = spec.rule == WeightRule::SoftmaxGather ? torch::softmax(logits, 1) : torch::sigmoid(logits);
      auto w = scores.gather(1, idx) * servedf;
      if (!spec.renormalize) return w;
      auto sum = w.sum(1, true);
      return w / torch::where(sum > 0, sum, torch::ones_like(sum));
    }
  }
  throw Error("combine_weights: unknown weight rule");
}

torch::Tensor load_balancing_loss(const torch::Tensor& logits, const Assignment& a) {
  const double served = static_cast<double>(a.served());
  std::vector<float> share(static_cast<std::size_t>(a.experts), 0.0f);
  for (std::size_t i = 0; i < share.size(); ++i)
    if (served > 0) share[i] = static_cast<float>(static_cast<double>(a.counts[i]) / served);
  auto f = torch::from_blob(share.data(), {a.experts}, torch::kFloat).clone();
  auto P = torch::softmax(logits, 1).mean(0);
  return static_cast<double>(a.experts) * (f * P).sum();
}

torch::Tensor router_z_loss(const torch::Tensor& logits) { return torch::logsumexp(logits, 1).pow(2).mean(); }

}  // namespace moesim::torch_backend
