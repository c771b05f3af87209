#pragma once
// Autoregressive sampling: temperature and top-k over the last position's
// logits, drawn with moesim's own RNG so a seed replays the same text.
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
};

// Returns prompt + continuation token ids; the context is cropped to the
// model's max_len (its training sequence length).
std::vector<int> sample_tokens(Transformer& model, std::vector<int> prompt, const SampleOptions& opt);

}  // namespace moesim::torch_backend
