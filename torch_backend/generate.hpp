#pragma once
// Autoregressive sampling: temperature and top-k over the last position's
// logits, drawn with moesim's own RNG so a seed replays the same text.
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "torch_backend/model.hpp"

namespace moesim::torch_backend {

struct SampleOptions {
  int max_new_tokens = 100;
  double temperature = 0.8;  // 0 = greedy
  int top_k = 40;            // 0 = whole vocabulary
  std::uint64_t seed = 1;
  int stop_token = -1;       // stop after emitting it (EOS); -1 = never
  bool kv_cache = true;      // false: every new token recomputes its whole context
};

// Returns prompt + continuation token ids; the context is cropped to the
// model's max_len (its training sequence length). With the KV cache, a token
// costs one attention row over the cached positions, whatever the prompt
// length. Until the context reaches max_len both modes compute the same thing
// (tests compare them); past it the uncached mode slides its window by one token
// per step (re-encoding max_len tokens each time), while the cache is refilled
// from the latest max_len/2 tokens once it is full, keeping the cost per token
// bounded.
// Where the time went: the first token (the prompt's encoding included) and the rest.
struct SampleTiming {
  double first_s = 0.0, rest_s = 0.0;
  int rest_tokens = 0;
};

std::vector<int> sample_tokens(Transformer& model, std::vector<int> prompt, const SampleOptions& opt,
                               SampleTiming* timing = nullptr);

}  // namespace moesim::torch_backend
