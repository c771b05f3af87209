#include "torch_backend/router_math.hpp"

namespace moesim::torch_backend {

torch::Tensor combine_weights(const torch::Tensor& logits, const Assignment& a, const WeightSpec& spec) {
  const auto N = static_cast<std::int64_t>(a.tokens), W = static_cast<std::int64_t>(a.width);
  // The set the rule normalises over (served slots, or requested ones when drops
  // only mask), and the slots that get a weight at all (served).
  const auto& over = spec.over_requested ? a.requested : a.expert;
  auto idx = torch::empty({N, W}, torch::kLong);
  auto in_set = torch::empty({N, W}, torch::kBool);
  auto served = torch::empty({N, W}, torch::kBool);
  auto* ip = idx.data_ptr<std::int64_t>();
  auto* np = in_set.data_ptr<bool>();
  auto* sp = served.data_ptr<bool>();
  for (std::size_t s = 0; s < over.size(); ++s) {
    ip[s] = over[s] >= 0 ? over[s] : 0;
    np[s] = over[s] >= 0;
    sp[s] = a.expert[s] >= 0;
  }
  auto picked = logits.gather(1, idx);
  const auto setf = in_set.to(torch::kFloat), servedf = served.to(torch::kFloat);
  torch::Tensor w;
  switch (spec.rule) {
    case WeightRule::SoftmaxSelected: {
      auto off = torch::from_blob(const_cast<float*>(a.offset.data()), {N, W}, torch::kFloat);
      auto s = (picked + off).masked_fill(in_set.logical_not(), -std::numeric_limits<float>::infinity());
      // A token with no slot in the set would softmax over all -inf; give it a harmless row.
      auto any = in_set.any(1, true);
      s = torch::where(any, s, torch::zeros_like(s));
      w = torch::softmax(s, 1) * setf;
      break;
    }
    case WeightRule::SoftmaxGather:
    case WeightRule::SigmoidGather:
    case WeightRule::SqrtSoftplusGather: {
      torch::Tensor scores;
      if (spec.rule == WeightRule::SoftmaxGather) {
        scores = torch::softmax(logits, 1);
      } else if (spec.rule == WeightRule::SigmoidGather) {
        scores = torch::sigmoid(logits);
      } else {
        // Clamped away from 0 so that the gradient of sqrt at an underflowed softplus stays finite.
        scores = torch::softplus(logits).clamp_min(1e-30).sqrt();
      }
      w = scores.gather(1, idx) * setf;
      if (spec.renormalize) {
        auto sum = w.sum(1, true);
        w = w / torch::where(sum > 0, sum, torch::ones_like(sum));
      }
      break;
    }
  }
  if (spec.over_requested) w = w * servedf;
  if (spec.scale != 1.0) w = w * spec.scale;
  return w;
}

torch::Tensor aux_scores(const torch::Tensor& logits, AuxScore score) {
  if (score == AuxScore::Softmax) return torch::softmax(logits, 1);
  auto s = score == AuxScore::Sigmoid ? torch::sigmoid(logits) : torch::softplus(logits).clamp_min(1e-30).sqrt();
  return s / s.sum(1, true);
}

torch::Tensor load_balancing_loss(const torch::Tensor& scores, const std::vector<double>& f) {
  const auto E = scores.size(1);
  std::vector<float> ff(f.begin(), f.end());
  auto ft = torch::from_blob(ff.data(), {E}, torch::kFloat).clone();
  return static_cast<double>(E) * (ft * scores.mean(0)).sum();
}

torch::Tensor sequence_balance_loss(const torch::Tensor& scores, const std::vector<double>& f, int seq_len) {
  const auto N = scores.size(0), E = scores.size(1);
  std::vector<float> ff(f.begin(), f.end());
  const auto nseq = static_cast<std::int64_t>(ff.size()) / E;
  auto ft = torch::from_blob(ff.data(), {nseq, E}, torch::kFloat).clone();
  auto total = torch::zeros({}, torch::kFloat);
  for (std::int64_t s = 0; s < nseq; ++s) {
    const auto b = s * seq_len, L = std::min<std::int64_t>(seq_len, N - b);
    total = total + (ft[s] * scores.narrow(0, b, L).mean(0)).sum();
  }
  return total / static_cast<double>(std::max<std::int64_t>(nseq, 1));
}

torch::Tensor router_z_loss(const torch::Tensor& logits) { return torch::logsumexp(logits, 1).pow(2).mean(); }

torch::Tensor router_entropy(const torch::Tensor& logits) {
  auto logp = torch::log_softmax(logits, 1);
  return -(logp.exp() * logp).sum(1).mean();
}

}  // namespace moesim::torch_backend
