#include "policies/topk.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "policies/fast_math.hpp"

namespace moesim {

std::vector<KnobSpec> score_knobs() {
  return {
      choice_knob("score_fn", "softmax", {"softmax", "sigmoid", "sqrtsoftplus"},
                  "gate score: softmax over experts, per-expert sigmoid (DeepSeek-V3) or sqrt(softplus) "
                  "(Megatron-Core)"),
      bool_knob("renormalize", true,
                "divide the selected scores by their sum (softmax: top-k then softmax; off = Megatron-Core's "
                "pre-softmax)"),
      real_knob("topk_scaling_factor", 1.0, "multiply every combine weight (Megatron-Core; DeepSeek-V3 uses 2.5)",
                1e-6, 1e6),
  };
}

WeightSpec score_weight_spec(const Knobs& knobs) {
  WeightSpec s;
  const auto& fn = knobs.choice("score_fn");
  s.rule = fn == "sigmoid"        ? WeightRule::SigmoidGather
           : fn == "sqrtsoftplus" ? WeightRule::SqrtSoftplusGather
                                  : WeightRule::SoftmaxGather;
  s.renormalize = knobs.flag("renormalize");
  s.scale = knobs.real("topk_scaling_factor");
  return s;
}

GroupValues group_values_for(const WeightSpec& spec) {
  switch (spec.rule) {
    case WeightRule::SoftmaxSelected: return GroupValues::Identity;
    case WeightRule::SoftmaxGather: return spec.renormalize ? GroupValues::Identity : GroupValues::Softmax;
    case WeightRule::SigmoidGather: return GroupValues::Sigmoid;
    case WeightRule::SqrtSoftplusGather: return GroupValues::SqrtSoftplus;
  }
  return GroupValues::Identity;
}

std::vector<KnobSpec> group_knobs() {
  return {
      int_knob("n_groups", 1, "group-limited routing: experts split into this many groups (1 = off)", 1,
               1 << 20),
      int_knob("topk_groups", 1, "groups kept per token before the top-k inside them; at most k", 1, 1 << 20),
      choice_knob("group_score", "sum_topk", {"sum_topk", "max", "top2sum"},
                  "a group's score: the sum of its top k/topk_groups selection values (Megatron-Core, "
                  "DeepSeek-V3), its best value, or the sum of its two best"),
  };
}

KnobSpec tie_break_knob() {
  return choice_knob("tie_break", "low_index", {"low_index", "random"},
                     "equal selection scores: the lower expert index wins, or a uniformly random one (seeded)");
}

TieBreak tie_break_from(const Knobs& knobs) {
  return knobs.choice("tie_break") == "random" ? TieBreak::Random : TieBreak::LowIndex;
}

void TopKSelector::configure(const Knobs& knobs, const std::string& owner, GroupValues values) {
  tie = tie_break_from(knobs);
  group_values = values;
  groups = static_cast<int>(knobs.integer("n_groups"));
  topk_groups = static_cast<int>(knobs.integer("topk_groups"));
  const auto& gs = knobs.choice("group_score");
  if (groups == 1) return;
  if (experts % groups != 0)
    fail_knob(owner, "n_groups", "= " + std::to_string(groups) + " must divide E=" +
                std::to_string(experts));
  if (topk_groups > groups)
    fail_knob(owner, "topk_groups", "= " + std::to_string(topk_groups) + " exceeds n_groups=" +
                std::to_string(groups));
  if (k > topk_groups * (experts / groups))
    throw Error(owner + ": k=" + std::to_string(k) + " exceeds the experts in " +
                std::to_string(topk_groups) + " groups of " + std::to_string(experts / groups));
  group_top = gs == "max" ? 1 : gs == "top2sum" ? 2 : k / topk_groups;
  if (gs == "sum_topk" && k < topk_groups)
    fail_knob(owner, "topk_groups", "= " + std::to_string(topk_groups) + " exceeds k=" +
                std::to_string(k) + ": group_score sum_topk sums the top k/topk_groups = 0 values, so every "
                "group would score the same");
  if (group_top > experts / groups)
    fail_knob(owner, "group_score", "= " + gs + " needs groups of at least " + std::to_string(group_top) +
                " experts");
}

namespace {

double group_value(GroupValues g, float v, float rowmax) {
  switch (g) {
    case GroupValues::Identity: return v;
    // exp(z - rowmax): the softmax up to the token's common factor 1/sum.
    case GroupValues::Softmax: return std::exp(static_cast<double>(v) - rowmax);
    case GroupValues::Sigmoid: return 1.0 / (1.0 + std::exp(-static_cast<double>(v)));
    case GroupValues::SqrtSoftplus: return std::sqrt(softplus(v));
  }
  return v;
}

}  // namespace

bool TopKSelector::select_block(const float* z, int n, std::int32_t* idx, float* val, Rng& rng, const float* logits,
                                float* slot_logits) {
  bool finite = true;
  if (groups > 1 && groups16_applies()) {
    // 16 rows row-parallel, bitwise as select_row; a short block or one with a
    // non-finite value row by row, its finiteness scanned as the groups' pass does.
    if (n != 16 || !select_groups16(z, idx, val))
      for (int r = 0; r < n; ++r) {
        const float* zr = z + static_cast<std::size_t>(r) * experts;
        finite &= all_finite(zr, experts);
        select_row(zr, idx + r * k, val + r * k, rng);
      }
  } else if (groups > 1 || k > 8) {
    for (int r = 0; r < n; ++r)
      select_row(z + static_cast<std::size_t>(r) * experts, idx + r * k, val + r * k, rng);
  } else {
    finite = topk_rows(z, n, experts, k, idx, val);
    if (tie == TieBreak::Random)
      for (int r = 0; r < n; ++r) {
        const float* zr = z + static_cast<std::size_t>(r) * experts;
        shuffle_ties(experts, k, [zr](int e) { return zr[e]; }, idx + r * k, val + r * k, rng);
      }
  }
  if (slot_logits)
    for (int r = 0; r < n; ++r)
      gather_slot_logits(logits + static_cast<std::size_t>(r) * experts, idx + r * k, k, slot_logits + r * k);
  return finite;
}

bool TopKSelector::select(const float* sel, int tokens, Assignment& out, Rng& rng, const float* logits,
                          float* slot_logits) {
  std::vector<float> vals(static_cast<std::size_t>(16) * k);
  bool finite = true;
  for (int t0 = 0; t0 < tokens; t0 += 16) {
    const int n = tokens - t0 < 16 ? tokens - t0 : 16;
    const std::size_t row0 = static_cast<std::size_t>(t0) * experts, slot0 = static_cast<std::size_t>(t0) * k;
    finite &= select_block(sel + row0, n, out.expert.data() + slot0, vals.data(), rng,
                           slot_logits ? logits + row0 : nullptr, slot_logits ? slot_logits + slot0 : nullptr);
  }
  return finite;
}

namespace {
constexpr int kMaxGroups = 64;  // select_groups16's lane masks, one per group
}  // namespace

bool TopKSelector::groups16_applies() const {
#if defined(__AVX512F__)
  return k <= 8 && tie == TieBreak::LowIndex && group_top <= 4 && groups <= kMaxGroups;
#else
  return false;
#endif
}

bool TopKSelector::select_groups16(const float* z, std::int32_t* idx, float* val) {
#if defined(__AVX512F__)
  const int E = experts, G = groups, gs = E / G, m = group_top;
  gtop_.resize(static_cast<std::size_t>(G) * m * 16);
  // Non-finite values take select_row, which defines what they select.
  cols_.resize(static_cast<std::size_t>(E) * 16);
  if (!simd::group_top_dispatch(z, E, gs, m, gtop_.data(), cols_.data())) return false;
  // select_row's scores: the same values summed in the same (best-first) order,
  // s[g * 16 + r] for row r; Identity values in double lanes, the others by the
  // same scalar function.
  gscore16_.resize(static_cast<std::size_t>(G) * 16);
  if (group_values == GroupValues::Identity) {
    for (int g = 0; g < G; ++g) {
      __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
      for (int j = 0; j < m; ++j) {
        const __m512 v = _mm512_loadu_ps(gtop_.data() + (static_cast<std::size_t>(g) * m + j) * 16);
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        hi = _mm512_add_pd(hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
      }
      _mm512_storeu_pd(gscore16_.data() + static_cast<std::size_t>(g) * 16, lo);
      _mm512_storeu_pd(gscore16_.data() + static_cast<std::size_t>(g) * 16 + 8, hi);
    }
  } else {
    for (int r = 0; r < 16; ++r) {
      const float* zr = z + static_cast<std::size_t>(r) * E;
      const float rowmax = group_values == GroupValues::Softmax ? *std::max_element(zr, zr + E) : 0.0f;
      for (int g = 0; g < G; ++g) {
        double s = 0.0;
        for (int j = 0; j < m; ++j)
          s += group_value(group_values, gtop_[(static_cast<std::size_t>(g) * m + j) * 16 + r], rowmax);
        gscore16_[static_cast<std::size_t>(g) * 16 + r] = s;
      }
    }
  }
  __mmask16 kept[kMaxGroups];
  simd::keep_groups16(gscore16_.data(), G, topk_groups, kept);
  // topk_by over the kept experts, as select_row, on the transposed rows; its values are z's own.
  constexpr float kNeg = -std::numeric_limits<float>::infinity();
  unsigned short_rows = simd::topk_cols_dispatch(cols_.data(), E, gs, kept, k, idx, val);
  for (int r = 0; r < 16; ++r)
    for (int j = 0; j < k; ++j) {
      const std::int32_t e = idx[r * k + j];
      val[r * k + j] = e >= 0 ? z[static_cast<std::size_t>(r) * E + static_cast<std::size_t>(e)] : kNeg;
    }
  // Fewer than k selectable experts (not from finite values, but defined): select_row's kNoExpert.
  Rng unused(0);
  for (; short_rows != 0; short_rows &= short_rows - 1) {
    const int r = __builtin_ctz(short_rows);
    select_row(z + static_cast<std::size_t>(r) * E, idx + r * k, val + r * k, unused);
  }
  return true;
#else
  (void)z;
  (void)idx;
  (void)val;
  return false;
#endif
}

void TopKSelector::select_row(const float* z, std::int32_t* idx, float* v, Rng& rng) {
  const int E = experts;
  const bool random_ties = tie == TieBreak::Random;
  if (groups <= 1) {
    topk_row(z, E, k, idx, v);
    if (random_ties) shuffle_ties(E, k, [z](int e) { return z[e]; }, idx, v, rng);
    return;
  }
  const int gs = E / groups;
  gscore_.resize(static_cast<std::size_t>(groups));
  midx_.resize(static_cast<std::size_t>(group_top));
  mval_.resize(static_cast<std::size_t>(group_top));
  allowed_.assign(static_cast<std::size_t>(groups), 0);
  const float rowmax = *std::max_element(z, z + E);
  for (int g = 0; g < groups; ++g) {
    // The transforms are monotone, so the group's top m are found on the raw
    // values; summed in double (two logits near +-FLT_MAX must not overflow).
    topk_row(z + g * gs, gs, group_top, midx_.data(), mval_.data());
    double s = 0.0;
    for (int j = 0; j < group_top; ++j)
      s += midx_[static_cast<std::size_t>(j)] >= 0 ? group_value(group_values, mval_[static_cast<std::size_t>(j)], rowmax)
                                                    : -std::numeric_limits<double>::infinity();
    gscore_[static_cast<std::size_t>(g)] = s;
  }
  // The best topk_groups groups, ties to the lower group index.
  for (int j = 0; j < topk_groups; ++j) {
    int best = -1;
    for (int g = 0; g < groups; ++g)
      if (!allowed_[static_cast<std::size_t>(g)] &&
          (best < 0 || gscore_[static_cast<std::size_t>(g)] > gscore_[static_cast<std::size_t>(best)]))
        best = g;
    allowed_[static_cast<std::size_t>(best)] = 1;
  }
  constexpr float kNeg = -std::numeric_limits<float>::infinity();
  auto masked = [&](int e) { return allowed_[static_cast<std::size_t>(e / gs)] ? z[e] : kNeg; };
  topk_by(E, k, masked, idx, v);
  if (random_ties) shuffle_ties(E, k, masked, idx, v, rng);
}

TopKPolicy::TopKPolicy(int experts, int k, const Knobs& knobs)
    : Policy("topk", experts, k, knobs),
      cap_(capacity_from(knobs, "topk")),
      spec_(with_drop_weights(score_weight_spec(knobs), cap_)) {
  sel_.experts = experts;
  sel_.k = k;
  sel_.configure(knobs, "topk", group_values_for(spec_));
}

void TopKPolicy::do_route(const RouteInput& in, Rng& rng, Assignment& out) {
  out.reset(in.tokens, experts(), k());
  // A non-finite logit is refused here, by check_finite's own error, when the
  // selection pass looked at every logit (checks_logits()).
  if (!sel_.select(in.logits, in.tokens, out, rng, in.logits, tail_.slot_logits(in.tokens, k())))
    check_finite(in.logits, in.tokens, experts(), name().c_str());
  tail_.finish(in.logits, cap_, spec_, out);
}

KnobMap megatron_router_knobs(int k) {
  return {{"renormalize", k > 1 ? "true" : "false"},
          {"group_score", "sum_topk"},
          {"drop_policy", "probability"},
          {"drop_order", "token"},
          {"drop_priority", "weight"},
          {"drop_weights", "mask"},
          {"capacity_rounding", "float"},
          {"min_capacity", "0"}};
}

static std::vector<KnobPreset> topk_presets() {
  return {
      {"moesim", "first choices first, weights renormalised over the served slots", [](int) { return KnobMap{}; }},
      {"megatron",
       "Megatron-Core TopKRouter: top-k then softmax (pre-softmax when k = 1; sigmoid renormalised only when "
       "k > 1), probs dropping by weight, earlier tokens first for position dropping, drops only mask, its "
       "float capacity, no minimum",
       megatron_router_knobs},
  };
}

PolicyInfo topk_info() {
  std::vector<KnobSpec> knobs = {preset_knob(topk_presets())};
  for (auto& s : score_knobs()) knobs.push_back(s);
  for (auto& g : group_knobs()) knobs.push_back(g);
  knobs.push_back(tie_break_knob());
  for (auto& c : capacity_knobs()) knobs.push_back(c);
  PolicyInfo info("topk", "top-k gating on softmax, sigmoid or sqrt-softplus scores, optional group-limited selection",
                  knobs, [](int E, int k, const Knobs& kn) { return std::make_unique<TopKPolicy>(E, k, kn); });
  info.presets = topk_presets();
  return info;
}

}  // namespace moesim
