#include "torch_backend/generate.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "policies/rng.hpp"
#include "policies/types.hpp"

namespace moesim::torch_backend {

namespace {

// Temperature and top-k over one row of logits; ties broken by token id so the
// draw does not depend on the sort.
class Sampler {
 public:
  Sampler(const SampleOptions& opt, int vocab)
      : opt_(opt), rng_(derive_seed(opt.seed, "sample")), p_(static_cast<std::size_t>(vocab)),
        order_(static_cast<std::size_t>(vocab)) {}

  int pick(const float* lp) {
    const int V = static_cast<int>(order_.size());
    if (opt_.temperature == 0) return static_cast<int>(std::max_element(lp, lp + V) - lp);
    std::iota(order_.begin(), order_.end(), 0);
    const int k = opt_.top_k > 0 ? std::min(opt_.top_k, V) : V;
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(),
                      [&](int a, int b) { return lp[a] > lp[b] || (lp[a] == lp[b] && a < b); });
    const double mx = lp[order_[0]];
    double sum = 0;
    for (int i = 0; i < k; ++i)
      sum += p_[static_cast<std::size_t>(i)] = std::exp((lp[order_[static_cast<std::size_t>(i)]] - mx) / opt_.temperature);
    double u = rng_.uniform() * sum;
    for (int i = 0; i < k; ++i) {
      u -= p_[static_cast<std::size_t>(i)];
      if (u < 0) return order_[static_cast<std::size_t>(i)];
    }
    return order_[static_cast<std::size_t>(k - 1)];
  }

 private:
  const SampleOptions& opt_;
  Rng rng_;
  std::vector<double> p_;
  std::vector<int> order_;
};

torch::Tensor as_ids(const std::vector<int>& ids, std::size_t from) {
  auto in = torch::empty({1, static_cast<std::int64_t>(ids.size() - from)}, torch::kLong);
  auto* ip = in.data_ptr<std::int64_t>();
  for (std::size_t i = from; i < ids.size(); ++i) ip[i - from] = ids[i];
  return in;
}

// The next-token logits of the whole (cropped) context, recomputed.
torch::Tensor uncached_logits(Transformer& model, const std::vector<int>& ids) {
  const auto ctx_len = std::min<std::size_t>(ids.size(), static_cast<std::size_t>(model.max_len()));
  return model.forward(as_ids(ids, ids.size() - ctx_len)).logits[0][static_cast<std::int64_t>(ctx_len) - 1].contiguous();
}

// The next-token logits through the cache: the new token alone, or a refill
// from the latest tokens when the cache is empty or full.
torch::Tensor cached_logits(Transformer& model, const std::vector<int>& ids, KVCache& cache) {
  const auto L = static_cast<std::size_t>(model.max_len());
  if (cache.len == 0 || static_cast<std::size_t>(cache.len) >= L) {
    // The first fill encodes the window the uncached mode would see; a full
    // cache restarts from the latest half, so refills come every max_len/2 tokens.
    const std::size_t keep = cache.len == 0 ? std::min(ids.size(), L) : std::max<std::size_t>(1, L / 2);
    cache.clear();
    auto lg = model.forward_cached(as_ids(ids, ids.size() - keep), cache);
    return lg[lg.size(0) - 1].contiguous();
  }
  return model.forward_cached(as_ids(ids, ids.size() - 1), cache)[0].contiguous();
}

}  // namespace

std::vector<int> sample_tokens(Transformer& model, std::vector<int> ids, const SampleOptions& opt,
                               SampleTiming* timing) {
  if (ids.empty()) throw Error("generate: empty prompt (it needs at least one token)");
  if (opt.temperature < 0) throw Error("generate: --temperature must be >= 0");
  torch::NoGradGuard ng;
  model.eval();
  Sampler sampler(opt, model.vocab());
  KVCache cache;
  auto t0 = std::chrono::steady_clock::now();
  for (int n = 0; n < opt.max_new_tokens; ++n) {
    const auto logits = opt.kv_cache ? cached_logits(model, ids, cache) : uncached_logits(model, ids);
    const int next = sampler.pick(logits.data_ptr<float>());
    ids.push_back(next);
    if (timing) {
      const auto t1 = std::chrono::steady_clock::now();
      (n == 0 ? timing->first_s : timing->rest_s) += std::chrono::duration<double>(t1 - t0).count();
      timing->rest_tokens += n > 0;
      t0 = t1;
    }
    if (next == opt.stop_token) break;
  }
  return ids;
}

}  // namespace moesim::torch_backend
