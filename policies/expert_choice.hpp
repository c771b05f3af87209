#pragma once
// Expert-choice routing (Zhou et al. 2022, flaxformer): every expert picks its
// top-C tokens by gate probability, so load is balanced by construction while a
// token may get any number of experts, including none.
//
// Selection key of token t for expert e: softmax: log p = (z - m_t) - log S_t
// (m_t the row max, S_t = sum_e exp(z - m_t) by exp_fast summed in double,
// row_sum_exp_padded, so
// log S_t is within 2e-7 of exact, the float32 softmax's own precision);
// sigmoid: z itself, its monotone preimage. Ties: the lower token index.
// Per expert, the C-th best key is bracketed from a strided sample of the
// tokens; one pass then takes every token above the bracket and collects the
// few inside it, which alone are ordered (a radix select, best_keyed). That pass
// computes each 16-row block's softmax constants and tests its keys in float
// against bounds set outside the bracket by more than the float rounding can
// move a key, so only the keys near a bound get the double key. A bracket that
// misses (heavy ties) falls back to ordering that expert's whole column: always
// the exact top-C.
//
// The assignment's width is the most experts any token of the batch got (the
// chosen experts first, in index order, then kNoExpert), not E: at E = 64 a
// token averages k of them, and T x E slots would be mostly empty.
#include <cstdint>
#include <utility>
#include <vector>

#include "policies/policy.hpp"
#include "policies/registry.hpp"

namespace moesim {

class ExpertChoicePolicy : public Policy {
 public:
  ExpertChoicePolicy(int experts, int k, const Knobs& knobs);
  WeightSpec weight_spec() const override { return spec_; }
  std::unique_ptr<Policy> clone() const override { return std::make_unique<ExpertChoicePolicy>(*this); }

  // The last batch's selection: candidates ordered inside the brackets, and the
  // experts whose bracket missed and whose whole column was ordered instead.
  struct Stats {
    std::int64_t candidates = 0;
    int fallbacks = 0;
    std::int64_t float_rows = 0;  // rows classified by the float test (the others by the double keys)
  };
  const Stats& last_stats() const { return stats_; }
  // Tests only: false classifies every key in double, the definition the float
  // test (classify_rows_float) must match: the same candidates, not only the same
  // selection.
  void use_prefilter(bool on) { prefilter_ = on; }
  // Whether this build has the float test at all: it is AVX-512 or AVX2 code,
  // and without either every row takes the double keys (float_rows stays 0).
  static constexpr bool kHasFloatTest =
#if defined(__AVX512F__) || defined(__AVX2__)
      true;
#else
      false;
#endif

 protected:
  bool checks_logits() const override { return true; }
  void do_route(const RouteInput& in, Rng& rng, Assignment& out) override;

 private:
  double key(const float* logits, int t, int e) const;
  void row_constants(const float* logits, int t0, int t1);
  bool row_constant(const float* logits, int t);
  static int sample_stride(int T);
  void bracket(const float* logits, int T, std::int64_t C);
  int sample_keys8(const float* logits, int stride, int S);
  int best_keys(double* col, int S, int need);
  void select_candidates(const float* logits, int T, std::int64_t C);
  double sample_constants(const float* logits, int T, int stride);
  bool float_bounds(double cmax);
  std::size_t classify_rows_float(const float* logits, int t0, int t1, double cbound);
  std::size_t classify_row_double(const float* logits, int t, std::size_t n);
  void deal_checked(const float* logits, std::size_t n);
  void resolve(const float* logits, int T, std::int64_t C);
  void emit(const float* logits, int T, Assignment& out);

  WeightSpec spec_;
  double factor_;
  long min_capacity_;
  int words_ = 1;  // 64-bit words of chosen experts per token
  bool prefilter_ = true;
  Stats stats_;

  // Scratch, reused across batches.
  std::vector<double> shift_;                    // per token: m_t, then log S_t (softmax)
  std::vector<double> hi_, lo_;                  // per expert: keys above hi are in, below lo out
  std::vector<float> lo_f_, hi_f_;               // per expert: float bounds outside lo and hi (float_bounds)
  std::vector<std::int32_t> sure_count_;         // per expert: the keys the row tests found above hi
  std::vector<std::int32_t> pe_, pt_;            // a 16-row block's open keys: experts and tokens
  std::vector<float> sample_rows_;               // sample_constants: 16 sample rows' logits
  std::vector<double> sample_;                   // experts x samples
  std::vector<double> gmax_;                     // one sample column's 16-key group maxima
  std::vector<std::int64_t> above_;              // per expert: tokens above hi
  std::vector<std::vector<std::pair<double, std::int32_t>>> cand_;  // per expert: (key, token) inside [lo, hi]
  std::vector<std::int32_t> picked_;             // resolve: one expert's tokens from its candidates
  std::vector<std::uint64_t> chosen_;            // tokens x words_: bit e = expert e chose the token
};

PolicyInfo expert_choice_info();

}  // namespace moesim
