#include "policies/random.hpp"

#include <numeric>
#include <utility>

#include "policies/select.hpp"
#include "policies/topk.hpp"

namespace moesim {

RandomPolicy::RandomPolicy(int experts, int k, const Knobs& kn)
    : Policy("random", experts, k, kn), spec_(score_weight_spec(kn)), cap_(capacity_from(kn, "random")) {
  spec_ = with_drop_weights(spec_, cap_);
  perm_.resize(static_cast<std::size_t>(experts));
  std::iota(perm_.begin(), perm_.end(), 0);
  swap_.resize(static_cast<std::size_t>(k));
}

void RandomPolicy::do_route(const RouteInput& in, Rng& rng, Assignment& out) {
  const int T = in.tokens, E = experts(), k = this->k();
  out.reset(T, E, k);
  float* slots = tail_.slot_logits(T, k);  // as hash.cpp: the weights then skip a pass over the rows
  for (int t = 0; t < T; ++t) {
    std::int32_t* ex = out.expert.data() + static_cast<std::size_t>(t) * k;
    // Partial Fisher-Yates: every ordered k-subset equally likely (slot order
    // matters to position-based dropping), k bounded draws, no rejection loop.
    for (int j = 0; j < k; ++j) {
      const auto r = j + static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(E - j)));
      std::swap(perm_[j], perm_[r]);
      swap_[j] = r;
      ex[j] = perm_[j];
    }
    // Undo the swaps (O(k), not O(E)): every token starts from the identity,
    // so a token's draw maps to the same experts whatever came before it.
    for (int j = k - 1; j >= 0; --j) std::swap(perm_[j], perm_[swap_[j]]);
    gather_slot_logits(in.logits + static_cast<std::size_t>(t) * E, ex, k, slots + static_cast<std::size_t>(t) * k);
  }
  tail_.finish(in.logits, cap_, spec_, out);
}

PolicyInfo random_info() {
  auto knobs = score_knobs();
  for (auto& c : capacity_knobs()) knobs.push_back(c);
  return {"random", "uniform random routing baseline: k distinct experts uniformly at random per token", knobs,
          [](int E, int k, const Knobs& kn) { return std::make_unique<RandomPolicy>(E, k, kn); }};
}

}  // namespace moesim
