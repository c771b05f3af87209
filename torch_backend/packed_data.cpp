#include "torch_backend/packed_data.hpp"

#include <numeric>

#include "policies/rng.hpp"
#include "policies/types.hpp"

namespace moesim::torch_backend {

PackedSequences::PackedSequences(const std::vector<std::int32_t>* stream, int seq_len)
    : stream_(stream), seq_len_(seq_len) {
  const auto n = static_cast<std::int64_t>(stream->size());
  count_ = n > seq_len ? (n - 1) / seq_len : 0;
}

void PackedSequences::fill(std::int64_t i, std::int64_t* inputs, std::int64_t* targets) const {
  const std::int32_t* p = stream_->data() + i * seq_len_;
  for (int t = 0; t < seq_len_; ++t) {
    inputs[t] = p[t];
    targets[t] = p[t + 1];
  }
}

Sampler::Sampler(std::int64_t n, std::uint64_t seed) : n_(n), seed_(seed) {
  if (n < 1) throw Error("not enough tokens for one training sequence (lower data.seq_len or add data)");
  shuffle();
}

void Sampler::shuffle() {
  perm_.resize(static_cast<std::size_t>(n_));
  std::iota(perm_.begin(), perm_.end(), std::int64_t{0});
  Rng rng(derive_seed(seed_, static_cast<std::uint64_t>(st_.epoch)));
  for (std::int64_t i = n_ - 1; i > 0; --i) {
    const auto j = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(i + 1)));
    std::swap(perm_[static_cast<std::size_t>(i)], perm_[static_cast<std::size_t>(j)]);
  }
}

std::vector<std::int64_t> Sampler::next(int batch) {
  std::vector<std::int64_t> out;
  out.reserve(static_cast<std::size_t>(batch));
  for (int b = 0; b < batch; ++b) {
    if (st_.pos >= n_) {
      ++st_.epoch;
      st_.pos = 0;
      shuffle();
    }
    out.push_back(perm_[static_cast<std::size_t>(st_.pos++)]);
  }
  return out;
}

void Sampler::set_state(const SamplerState& s) {
  if (s.epoch < 0 || s.pos < 0 || s.pos > n_) throw Error("checkpoint: data position out of range for this data");
  st_ = s;
  shuffle();
}

}  // namespace moesim::torch_backend
