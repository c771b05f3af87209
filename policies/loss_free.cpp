#include "policies/loss_free.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "policies/capacity.hpp"
#include "policies/fast_math.hpp"
#include "policies/select.hpp"
#include "policies/topk.hpp"

namespace moesim {

LossFreePolicy::LossFreePolicy(int experts, int k, const Knobs& kn)
    : Policy("loss_free", experts, k, kn),
      spec_(score_weight_spec(kn)),
      cap_(capacity_from(kn, "loss_free")),
      rate_(kn.real("bias_rate")),
      count_served_(kn.choice("bias_counts") == "served") {
  spec_ = with_drop_weights(spec_, cap_);
  bias_.assign(static_cast<std::size_t>(experts), 0.0);
  demand_.assign(static_cast<std::size_t>(experts), 0.0);
  sel_.experts = experts;
  sel_.k = k;
  // Groups are scored on s + b, the values the top-k runs on.
  sel_.configure(kn, "loss_free", GroupValues::Identity);
}

void LossFreePolicy::do_route(const RouteInput& in, Rng& rng, Assignment& out) {
  const int T = in.tokens, E = experts(), k = this->k();
  out.reset(T, E, k);
  fbias_.assign(bias_.begin(), bias_.end());
  // The bias is added to scores, not logits, so the scores of a block of 16 rows
  // are materialised (vectorised exp) and selected through the row-parallel kernel.
  s_.resize(static_cast<std::size_t>(16) * E);
  std::vector<float> vals(static_cast<std::size_t>(16) * k);
  float* slots = tail_.slot_logits(T, k);
  for (int t0 = 0; t0 < T; t0 += 16) {
    const int n = T - t0 < 16 ? T - t0 : 16;
    const float* zb = in.logits + static_cast<std::size_t>(t0) * E;
    const bool finite = loss_free_scores_rows(zb, n, E, fbias_.data(), spec_.rule, s_.data());
    // Refused before selection, with check_finite's own error (its first bad logit is in this block).
    if (!finite) check_finite(in.logits, T, E, name().c_str());
    std::int32_t* idx0 = out.expert.data() + static_cast<std::size_t>(t0) * k;
    sel_.select_block(s_.data(), n, idx0, vals.data(), rng, in.logits + static_cast<std::size_t>(t0) * E,
                      slots + static_cast<std::size_t>(t0) * k);
  }
  tail_.finish(in.logits, cap_, spec_, out);
  // The requests before capacity, as the tail counted them (an unselectable slot
  // is refused there, so a refused batch leaves the demand as it was).
  const auto& req = tail_.requested_counts();
  for (int e = 0; e < E; ++e) demand_[static_cast<std::size_t>(e)] = static_cast<double>(req[static_cast<std::size_t>(e)]);
}

namespace {

// Lanes of v that are NaN or infinite, as bits (accumulated by the callers, so
// the finiteness scan rides on the loads the scores need anyway).
inline unsigned nonfinite_lanes(f32x16 v) {
#if defined(__AVX512F__)
  return _mm512_cmp_ps_mask(_mm512_abs_ps(std::bit_cast<__m512>(v)), _mm512_set1_ps(std::numeric_limits<float>::max()),
                            _CMP_NLE_UQ);
#elif defined(__AVX2__)
  // Two halves, a compare and a movemask each (the lane loop below compiled to
  // 16 scalar compares on AVX2: about a third of loss_free's time there).
  const f32x8 lo = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7);
  const f32x8 hi = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  return nonfinite8(std::bit_cast<__m256>(lo)) | nonfinite8(std::bit_cast<__m256>(hi)) << 8;
#else
  unsigned bad = 0;
  for (int l = 0; l < 16; ++l) bad |= static_cast<unsigned>(!(std::fabs(v[l]) <= std::numeric_limits<float>::max()));
  return bad;
#endif
}

// score(v, b) over n values (a multiple of 16) and their biases, 16 lanes at a
// time; returns their non-finite lanes (the finiteness scan rides on the loads).
// The bias is added inside score, in the formula's one expression: compilers
// that contract a * x + b into an fma only within an expression (clang) then
// contract it as they do in the scalar tail.
template <class Score>
unsigned scores16(const float* z, const float* bias, float* out, int n, Score score) {
  unsigned bad = 0;
  for (int i = 0; i < n; i += 16) {
    f32x16 v, b;
    std::memcpy(&v, z + i, sizeof v);
    std::memcpy(&b, bias + i, sizeof b);
    bad |= nonfinite_lanes(v);
    const f32x16 r = score(v, b);
    std::memcpy(out + i, &r, sizeof r);
  }
  return bad;
}

// Softmax scores of one row, exp(z - m) * inv + b, with the row's max m and
// inverse exp sum given; returns the body's non-finite lanes (the tail's are
// the caller's).
unsigned softmax_scores(const float* z, int E, float m, float inv, const float* bias, float* out) {
  const int body = E - E % 16;
  const unsigned bad = scores16(z, bias, out, body, [=](f32x16 v, f32x16 b) { return exp_fast16(v - m) * inv + b; });
  for (int e = body; e < E; ++e) out[e] = exp_fast(z[e] - m) * inv + bias[e];
  return bad;
}

// Sigmoid scores 1 / (1 + exp(-z)) + b of n values (a multiple of 16).
unsigned sigmoid_scores16(const float* z, const float* bias, float* out, int n) {
  return scores16(z, bias, out, n, [](f32x16 v, f32x16 b) { return 1.0f / (1.0f + exp_fast16(-v)) + b; });
}

// Sigmoid scores are elementwise, so a block of rows whose width is not a
// multiple of 16 (E = 8: no vector body at all) is scored as one flat array,
// rows back to back, against the bias tiled to lcm(E, 16): loss_free_scores'
// operations per element, 16 lanes at a time.
constexpr int kMaxTile = 256;
bool sigmoid_scores_flat(const float* z, int rows, int E, const float* bias, float* out) {
  const int L = std::lcm(E, 16);
  alignas(64) float tile[kMaxTile];
  for (int j = 0; j < L; ++j) tile[j] = bias[j % E];
  const int n = rows * E, body = n - n % 16;
  unsigned bad = 0;
  for (int i = 0; i < body; i += L) bad |= sigmoid_scores16(z + i, tile, out + i, std::min(L, body - i));
  for (int i = body; i < n; ++i) {
    bad |= static_cast<unsigned>(!(std::fabs(z[i]) <= std::numeric_limits<float>::max()));
    out[i] = 1.0f / (1.0f + exp_fast(-z[i])) + bias[i % E];
  }
  return bad == 0;
}

}  // namespace

bool loss_free_scores(const float* z, int E, const float* bias, WeightRule rule, float* out) {
  const int body = E - E % 16;
  unsigned bad = 0;
  for (int e = body; e < E; ++e) bad |= static_cast<unsigned>(!(std::fabs(z[e]) <= std::numeric_limits<float>::max()));
  if (rule == WeightRule::SigmoidGather) {
    bad |= sigmoid_scores16(z, bias, out, body);
    for (int e = body; e < E; ++e) out[e] = 1.0f / (1.0f + exp_fast(-z[e])) + bias[e];
  } else if (rule == WeightRule::SqrtSoftplusGather) {
    for (int e = 0; e < E; ++e) {
      bad |= static_cast<unsigned>(!(std::fabs(z[e]) <= std::numeric_limits<float>::max()));
      out[e] = static_cast<float>(std::sqrt(softplus(z[e]))) + bias[e];
    }
  } else {
    const float m = row_max(z, E);
    bad |= softmax_scores(z, E, m, static_cast<float>(1.0 / row_sum_exp(z, E, m)), bias, out);
  }
  return bad == 0;
}

void LossFreePolicy::do_observe(const Assignment& a, const float*) {
  // By default balances what the router asks for (selections before capacity):
  // counting only served slots hides overload behind the capacity cap.
  const int E = experts();
  auto n = [&](int e) { return count_served_ ? static_cast<double>(a.counts[e]) : demand_[e]; };
  double mean = 0.0;
  for (int e = 0; e < E; ++e) mean += n(e);
  mean /= E;
  for (int e = 0; e < E; ++e) {
    const double err = mean - n(e);
    bias_[e] += rate_ * static_cast<double>((err > 0) - (err < 0));
  }
}

void LossFreePolicy::save_state(StateWriter& w) const {
  w.put("bias", bias_);
  w.put("demand", demand_);
}

void LossFreePolicy::load_state(StateReader& r) {
  const auto E = static_cast<std::size_t>(experts());
  auto b = r.get_vec("bias", E);
  auto d = r.get_vec("demand", E);
  bias_ = std::move(b);
  demand_ = std::move(d);
}

static std::vector<KnobPreset> loss_free_presets() {
  // Megatron-Core's conventions, with capacity when the user sets one: sigmoid
  // weights renormalised only for k > 1, counts after dropping, its capacity rules.
  auto megatron = [](int k) {
    auto m = megatron_router_knobs(k);
    m["score_fn"] = "sigmoid";
    m["bias_counts"] = "served";
    m["bias_rate"] = "0.001";
    return m;
  };
  return {
      {"moesim", "bias from the requests before capacity", [](int) { return KnobMap{}; }},
      {"megatron", "Megatron-Core TopKRouter with moe_router_enable_expert_bias (sigmoid, counts after drops)",
       megatron},
      {"deepseek_v3", "DeepSeek-V3: sigmoid, renormalised, scaled by 2.5, dropless, u = 0.001 (set n_groups, "
                      "topk_groups for its node-limited routing)",
       [megatron](int k) {
         auto m = megatron(k);
         m["renormalize"] = "true";
         m["topk_scaling_factor"] = "2.5";
         m["dropless"] = "true";
         return m;
       }},
  };
}

PolicyInfo loss_free_info() {
  std::vector<KnobSpec> knobs = {preset_knob(loss_free_presets())};
  for (auto& s : score_knobs()) knobs.push_back(s);
  knobs[1].default_value = "sigmoid";  // DeepSeek-V3 pairs the bias with sigmoid scores
  knobs.push_back(real_knob("bias_rate", 1e-3, "bias update speed u: b_i += u*sign(mean load - load_i)", 0.0));
  knobs.push_back(choice_knob("bias_counts", "requested", {"requested", "served"},
                              "the loads the bias balances: requests before capacity, or slots served after it "
                              "(Megatron-Core)"));
  for (auto& g : group_knobs()) knobs.push_back(g);
  knobs.push_back(tie_break_knob());
  for (auto& c : capacity_knobs()) knobs.push_back(c);
  PolicyInfo info{"loss_free",
                  "auxiliary-loss-free balancing: select on score + bias, weight on score, sign update of bias", knobs,
                  [](int E, int k, const Knobs& kn) { return std::make_unique<LossFreePolicy>(E, k, kn); }};
  info.presets = loss_free_presets();
  return info;
}

bool loss_free_scores_rows(const float* z, int rows, int E, const float* bias, WeightRule rule, float* out) {
  if (rule == WeightRule::SigmoidGather && E % 16 != 0 && std::lcm(E, 16) <= kMaxTile)
    return sigmoid_scores_flat(z, rows, E, bias, out);
  const bool softmax = rule == WeightRule::SoftmaxSelected || rule == WeightRule::SoftmaxGather;
  if (rows != 16 || !softmax) {
    bool finite = true;
    for (int r = 0; r < rows; ++r)
      finite &= loss_free_scores(z + static_cast<std::size_t>(r) * E, E, bias, rule, out + static_cast<std::size_t>(r) * E);
    return finite;
  }
  float m[16];
  double s[16];
  row_max_sum_exp16(z, E, m, s);
  unsigned bad = 0;
  for (int r = 0; r < 16; ++r) {
    const float* zr = z + static_cast<std::size_t>(r) * E;
    for (int e = E - E % 16; e < E; ++e)  // softmax_scores scans the body only
      bad |= static_cast<unsigned>(!(std::fabs(zr[e]) <= std::numeric_limits<float>::max()));
    bad |= softmax_scores(zr, E, m[r], static_cast<float>(1.0 / s[r]), bias, out + static_cast<std::size_t>(r) * E);
  }
  return bad == 0;
}

}  // namespace moesim
