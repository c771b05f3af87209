#include "policies/hash.hpp"

#include <algorithm>

#include "policies/select.hpp"
#include "policies/topk.hpp"

namespace moesim {

HashPolicy::HashPolicy(int experts, int k, const Knobs& kn)
    : Policy("hash", experts, k, kn), spec_(score_weight_spec(kn)), cap_(capacity_from(kn, "hash")) {
  spec_ = with_drop_weights(spec_, cap_);
  const auto salt = static_cast<std::uint64_t>(kn.integer("salt"));
  for (int j = 0; j < k; ++j) slot_seed_.push_back(derive_seed(salt, static_cast<std::uint64_t>(j)));
  used_.assign(static_cast<std::size_t>(experts), 0);
}

void HashPolicy::do_route(const RouteInput& in, Rng&, Assignment& out) {
  const int T = in.tokens, E = experts(), k = this->k();
  if (T > 0 && in.token_ids == nullptr) fail("needs token ids (RouteInput::token_ids is null)");
  out.reset(T, E, k);
  const auto uE = static_cast<std::uint64_t>(E);
  // The chosen logits gathered per token, so the weights need no second pass
  // over the rows and take compute_weights' 16-slot vector blocks (k = 1, 2, 4, 8).
  float* slots = tail_.slot_logits(T, k);
  for (int t = 0; t < T; ++t) {
    const auto id = static_cast<std::uint64_t>(in.token_ids[t]);
    std::int32_t* ex = out.expert.data() + static_cast<std::size_t>(t) * k;
    for (int j = 0; j < k; ++j) {
      // An independent hash per slot; linear probing keeps a token's experts
      // distinct while leaving slot 0 a pure function of the id.
      auto e = static_cast<std::int32_t>(mix64(id ^ slot_seed_[j]) % uE);
      while (used_[e]) e = e + 1 == E ? 0 : e + 1;
      used_[e] = 1;
      ex[j] = e;
    }
    for (int j = 0; j < k; ++j) used_[ex[j]] = 0;
    gather_slot_logits(in.logits + static_cast<std::size_t>(t) * E, ex, k, slots + static_cast<std::size_t>(t) * k);
  }
  tail_.finish(in.logits, cap_, spec_, out);
}

PolicyInfo hash_info() {
  auto knobs = score_knobs();
  knobs.push_back(int_knob("salt", 0, "hash salt: a different salt is a different fixed token-to-expert map",
                           -(1L << 62), 1L << 62));
  // Dropless by default: the hash ignores load, so capacity would drop tokens at random.
  for (auto& c : capacity_knobs(1.25, true)) knobs.push_back(c);
  return {"hash", "hash routing: experts fixed by a hash of the token id, gate only weights (Roller et al. 2021)",
          knobs, [](int E, int k, const Knobs& kn) { return std::make_unique<HashPolicy>(E, k, kn); }};
}

}  // namespace moesim
