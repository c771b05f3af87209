#include "torch_backend/generate.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "policies/rng.hpp"
#include "policies/types.hpp"

namespace moesim::torch_backend {

std::vector<int> sample_tokens(Transformer& model, std::vector<int> ids, const SampleOptions& opt) {
  if (ids.empty()) throw Error("generate: empty prompt (it needs at least one token)");
  if (opt.temperature < 0) throw Error("generate: --temperature must be >= 0");
  torch::NoGradGuard ng;
  model.eval();
  Rng rng(derive_seed(opt.seed, "sample"));
  const int V = model.vocab();
  std::vector<double> p(static_cast<std::size_t>(V));
  std::vector<int> order(static_cast<std::size_t>(V));
  for (int n = 0; n < opt.max_new_tokens; ++n) {
    const auto ctx_len = std::min<std::size_t>(ids.size(), static_cast<std::size_t>(model.max_len()));
    auto in = torch::empty({1, static_cast<std::int64_t>(ctx_len)}, torch::kLong);
    auto* ip = in.data_ptr<std::int64_t>();
    for (std::size_t i = 0; i < ctx_len; ++i) ip[i] = ids[ids.size() - ctx_len + i];
    auto logits = model.forward(in).logits[0][static_cast<std::int64_t>(ctx_len) - 1].contiguous();
    const float* lp = logits.data_ptr<float>();
    int next = 0;
    if (opt.temperature == 0) {
      next = static_cast<int>(std::max_element(lp, lp + V) - lp);
    } else {
      std::iota(order.begin(), order.end(), 0);
      const int k = opt.top_k > 0 ? std::min(opt.top_k, V) : V;
      // Ties broken by token id so the draw does not depend on the sort.
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int a, int b) { return lp[a] > lp[b] || (lp[a] == lp[b] && a < b); });
      const double mx = lp[order[0]];
      double sum = 0;
      for (int i = 0; i < k; ++i) sum += p[static_cast<std::size_t>(i)] = std::exp((lp[order[static_cast<std::size_t>(i)]] - mx) / opt.temperature);
      double u = rng.uniform() * sum;
      next = order[static_cast<std::size_t>(k - 1)];
      for (int i = 0; i < k; ++i) {
        u -= p[static_cast<std::size_t>(i)];
        if (u < 0) {
          next = order[static_cast<std::size_t>(i)];
          break;
        }
      }
    }
    ids.push_back(next);
    if (next == opt.stop_token) break;
  }
  return ids;
}

}  // namespace moesim::torch_backend
