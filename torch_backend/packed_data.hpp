#pragma once
// Fixed-length training sequences cut from one token stream (documents already
// separated by EOS), and a seeded epoch-shuffled sampler whose position is two
// integers, so a checkpoint can resume the exact batch order.
#include <cstdint>
#include <vector>

namespace moesim::torch_backend {

class PackedSequences {
 public:
  // Sequence i covers stream[i*seq_len, i*seq_len + seq_len] (seq_len+1 tokens:
  // inputs and next-token targets).
  PackedSequences(const std::vector<std::int32_t>* stream, int seq_len);
  std::int64_t size() const { return count_; }
  int seq_len() const { return seq_len_; }
  // Writes seq_len inputs and seq_len targets of sequence i.
  void fill(std::int64_t i, std::int64_t* inputs, std::int64_t* targets) const;

 private:
  const std::vector<std::int32_t>* stream_;
  int seq_len_;
  std::int64_t count_;
};

struct SamplerState {
  std::int64_t epoch = 0;
  std::int64_t pos = 0;  // sequences consumed in this epoch
};

// Every epoch visits each sequence once in an order derived from (seed, epoch);
// a batch never straddles two epochs' orders inconsistently: it just continues.
class Sampler {
 public:
  Sampler(std::int64_t n, std::uint64_t seed);
  std::vector<std::int64_t> next(int batch);
  const SamplerState& state() const { return st_; }
  void set_state(const SamplerState& s);

 private:
  void shuffle();
  std::int64_t n_;
  std::uint64_t seed_;
  SamplerState st_;
  std::vector<std::int64_t> perm_;
};

}  // namespace moesim::torch_backend
