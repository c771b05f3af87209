#include "policies/select.hpp"

#include "policies/fast_math.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>
#include <vector>

namespace moesim {

namespace {

// u(a) < u(b) exactly when a < b, for non-NaN doubles; -0 maps with +0 (they are equal keys).
inline std::uint64_t ordered_bits(double k) {
  const auto b = std::bit_cast<std::uint64_t>(k + 0.0);
  return b ^ (static_cast<std::uint64_t>(static_cast<std::int64_t>(b) >> 63) | (std::uint64_t{1} << 63));
}

}  // namespace

void best_keyed(std::vector<KeyedItem>& items, std::size_t take, std::vector<std::int32_t>& out) {
  std::size_t n = items.size();
  take = std::min(take, n);
  out.resize(take + 1);  // +1: the branch-free append below writes one past what it keeps
  std::size_t got = 0;
  KeyedItem* it = items.data();
  // Each pass leaves a bucket at most 2^-7 of the live range wide: at most ten passes.
  while (take > 0 && take < n && n > 64) {
    std::uint64_t lo = ~std::uint64_t{0}, hi = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t u = ordered_bits(it[i].first);
      lo = std::min(lo, u);
      hi = std::max(hi, u);
    }
    if (lo == hi) break;  // all tied: the ids decide
    const int shift = std::max(0, static_cast<int>(std::bit_width(hi - lo)) - 8);
    std::uint32_t hist[256] = {};
    for (std::size_t i = 0; i < n; ++i) ++hist[(ordered_bits(it[i].first) - lo) >> shift];
    std::uint64_t b = 255;
    std::size_t above = 0;  // items in buckets past b: all taken
    while (above + hist[b] < take) above += hist[b--];
    std::size_t live = 0;
    for (std::size_t i = 0; i < n; ++i) {
      const std::uint64_t bucket = (ordered_bits(it[i].first) - lo) >> shift;
      out[got] = it[i].second;
      got += bucket > b;
      it[live] = it[i];
      live += bucket == b;
    }
    n = live;
    take -= above;
  }
  if (take > 0 && take < n)
    std::nth_element(it, it + (take - 1), it + n, [](const KeyedItem& a, const KeyedItem& b) {
      return a.first > b.first || (a.first == b.first && a.second < b.second);
    });
  for (std::size_t i = 0; i < take; ++i) out[got++] = it[i].second;
  out.resize(got);
}

void topk_row_sorted(const float* row, int n, int k, std::int32_t* idx) {
  std::vector<std::int32_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [row](std::int32_t a, std::int32_t b) {
    return row[a] > row[b] || (row[a] == row[b] && a < b);
  });
  std::copy_n(order.begin(), k, idx);
}

void check_finite(const float* logits, int tokens, int experts, const char* who) {
  const std::size_t n = static_cast<std::size_t>(tokens) * static_cast<std::size_t>(experts);
  // Branch-free pass the compiler vectorises; the slow search runs only on failure.
  int bad = 0;
  for (std::size_t i = 0; i < n; ++i) bad |= !(std::fabs(logits[i]) <= 3.4028235e38f);
  if (!bad) return;
  for (std::size_t i = 0; i < n; ++i) {
    if (!std::isfinite(logits[i])) {
      const auto t = i / static_cast<std::size_t>(experts);
      const auto e = i % static_cast<std::size_t>(experts);
      throw Error(std::string(who) + ": gate score is " +
                  (std::isnan(logits[i]) ? "NaN" : "infinite") + " at token " +
                  std::to_string(t) + ", expert " + std::to_string(e));
    }
  }
}

namespace {

// exp of a shifted logit: the slot holding the maximum has x == 0 exactly, and
// std::exp(0) is exactly 1, so that call is skipped without changing a bit (at
// k = 2 it is every other libm call).
inline float exp_shifted(float x) { return x == 0.0f ? 1.0f : std::exp(x); }
inline double exp_shifted(double x) { return x == 0.0 ? 1.0 : std::exp(x); }

// 16 / W tokens of W = 1, 2, 4 or 8 slots each (16 lanes, slot-interleaved as
// stored), with the scalar loop's operations lane for lane: the same max by
// `<`, the same std::exp (expf16 is bitwise std::exp), the same sums (from w_0:
// the scalar's 0 + w_0 is w_0) and division. Rules whose weights need the full-row denominator or
// log space are not here. Returns false, writing nothing, when a block needs
// the scalar path (a sigmoid too small to renormalise directly).
template <WeightRule R, bool Renorm>
constexpr bool kBlockVector =
    R == WeightRule::SoftmaxSelected || (R == WeightRule::SoftmaxGather && Renorm) || R == WeightRule::SigmoidGather;

// Slot J of each W-lane token group, in every lane of its group (a constant
// shuffle; a runtime index vector compiled to far slower code).
template <int W, int J, typename V, int... L>
inline V slot_bcast_impl(V v, std::integer_sequence<int, L...>) {
  return __builtin_shufflevector(v, v, ((L & ~(W - 1)) + J)...);
}
template <int W, int J, typename V>
inline V slot_bcast(V v) {
  return slot_bcast_impl<W, J>(v, std::make_integer_sequence<int, 16>{});
}
// f(integral_constant<int, J>) for J = 0 .. W-1, in order.
template <int W, typename F>
inline void each_slot(F&& f) {
  [&]<int... J>(std::integer_sequence<int, J...>) { (f(std::integral_constant<int, J>{}), ...); }(
      std::make_integer_sequence<int, W>{});
}

// GCC 12 reports the AVX-512 intrinsics' undefined pass-through operands, inlined
// here through expf16, as uninitialized (a false positive, GCC PR 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
template <WeightRule R, bool Renorm, int W>
bool weights_block16(const float* sl, const float* off, const std::int32_t* ex, float* w) {
  static_assert(W == 1 || W == 2 || W == 4 || W == 8);
  f32x16 z, o{};
  i32x16 e;
  std::memcpy(&z, sl, sizeof z);
  std::memcpy(&e, ex, sizeof e);
  if constexpr (R == WeightRule::SoftmaxSelected) std::memcpy(&o, off, sizeof o);
  const i32x16 valid = e >= 0;
  auto pick = [](i32x16 take, f32x16 a, f32x16 b) {
    return std::bit_cast<f32x16>((std::bit_cast<i32x16>(a) & take) | (std::bit_cast<i32x16>(b) & ~take));
  };
  const f32x16 zero{};
  f32x16 y;
  if constexpr (R == WeightRule::SigmoidGather) {
    if constexpr (Renorm) {
      const i32x16 tiny = valid & ~(z > -80.0f);  // NaN too, as the scalar test
      for (int l = 0; l < 16; ++l)
        if (tiny[l]) return false;
    }
    y = pick(valid, 1.0f / (1.0f + expf16(pick(valid, -z, zero))), zero);
  } else {
    const f32x16 v = z + o;  // the scalar loop adds 0.0f for the gather rule too
    f32x16 m = zero - std::numeric_limits<float>::infinity();
    each_slot<W>([&](auto j) {  // std::max(m, v_j) slot by slot, NaN included
      const f32x16 a = slot_bcast<W, decltype(j)::value>(v);
      m = pick(slot_bcast<W, decltype(j)::value>(valid) & (m < a), a, m);
    });
    y = pick(valid, expf16(pick(valid, v - m, zero)), zero);
  }
  if constexpr (R == WeightRule::SoftmaxSelected || Renorm) {
    // s += w_j slot by slot; the scalar's first step 0 + w_0 is w_0 itself (every
    // w is +0, positive or NaN, never -0), so the sum starts there.
    f32x16 s = slot_bcast<W, 0>(y);
    each_slot<W>([&](auto j) {
      if constexpr (decltype(j)::value > 0) s += slot_bcast<W, decltype(j)::value>(y);
    });
    if constexpr (R == WeightRule::SigmoidGather)
      y *= pick(s > 0.0f, 1.0f / s, zero);
    else
      y = pick(s > 0.0f, y * (1.0f / s), y);
  }
  std::memcpy(w, &y, sizeof y);
  return true;
}
#pragma GCC diagnostic pop

// One rule per instantiation: the switch is hoisted out of the token loop.
// `slots` names the experts the weights are formed over: the served ones, or the
// requested ones (then masked by the caller).
// kWidth > 0 fixes the slots per token at compile time (the same operations,
// unrolled: at k = 2 the loop overhead was most of the cost).
// At k = 1, 2, 4 and 8 with slot logits, blocks of 16 slots go through weights_block16 first.
template <WeightRule R, bool Renorm, bool Slots, int kWidth = 0>
void weights_for(const float* logits, const float* slot_logits, const RowSoftmax* rows, const std::int32_t* slots,
                 Assignment& a) {
  const int W = kWidth > 0 ? kWidth : a.width, E = a.experts;
  constexpr float kNeg = -std::numeric_limits<float>::infinity();
  int t = 0;
  if constexpr (kWidth > 0 && Slots && kBlockVector<R, Renorm>) {
    constexpr int kTokens = 16 / kWidth;
    for (; t + kTokens <= a.tokens; t += kTokens) {
      const std::size_t i = static_cast<std::size_t>(t) * kWidth;
      if (!weights_block16<R, Renorm, kWidth>(slot_logits + i, a.offset.data() + i, slots + i, a.weight.data() + i))
        break;
    }
  }
  for (; t < a.tokens; ++t) {
    const float* z = logits + static_cast<std::size_t>(t) * E;
    const std::int32_t* ex = slots + static_cast<std::size_t>(t) * W;
    const float* off = a.offset.data() + static_cast<std::size_t>(t) * W;
    float* w = a.weight.data() + static_cast<std::size_t>(t) * W;
    const float* sl = Slots ? slot_logits + static_cast<std::size_t>(t) * W : nullptr;
    auto zs = [=](int j) {  // [=]: each instantiation uses only some of z, ex, sl
      if constexpr (Slots)
        return sl[j];
      else
        return z[ex[j]];
    };
    float s = 0.0f;
    if constexpr (R == WeightRule::SoftmaxSelected || (R == WeightRule::SoftmaxGather && Renorm)) {
      // Softmax over the served slots; renormalised softmax-gather is the same
      // thing, so neither needs the full-row denominator.
      float m = kNeg;
      for (int j = 0; j < W; ++j)
        if (ex[j] >= 0) m = std::max(m, zs(j) + (R == WeightRule::SoftmaxSelected ? off[j] : 0.0f));
      for (int j = 0; j < W; ++j) {
        w[j] = ex[j] >= 0 ? exp_shifted(zs(j) + (R == WeightRule::SoftmaxSelected ? off[j] : 0.0f) - m) : 0.0f;
        s += w[j];
      }
    } else if constexpr (R == WeightRule::SoftmaxGather) {
      bool any = false;
      for (int j = 0; j < W; ++j) any |= ex[j] >= 0;
      if (!any) {
        std::fill(w, w + W, 0.0f);
        continue;
      }
      // exp(z - m) / sum, never exp(z - lse): lse = m + log(sum) rounds log(sum)
      // away once |m| dwarfs it (float: |logits| in the hundreds; double: ~1e15),
      // e.g. logits {1e30, 1e30} gave weight 1 instead of 0.5.
      const float m = rows ? rows[t].max : row_max(z, E);
      const double sum = rows ? rows[t].sum : row_sum_exp(z, E, m);
      for (int j = 0; j < W; ++j)
        w[j] = ex[j] >= 0 ? static_cast<float>(exp_shifted(static_cast<double>(zs(j)) - m) / sum) : 0.0f;
    } else if constexpr (R == WeightRule::SqrtSoftplusGather) {
      // In double and in log space: sqrt(softplus(-200)) underflows a float, its
      // share after renormalisation must not.
      auto log_g = [](double x) {
        const double sp = x > 30.0 ? x : x < -30.0 ? std::exp(x) : std::log1p(std::exp(x));
        return 0.5 * (x < -30.0 ? x : std::log(sp));
      };
      double m = -std::numeric_limits<double>::infinity(), ds = 0.0;
      for (int j = 0; j < W; ++j)
        if (ex[j] >= 0) m = std::max(m, log_g(zs(j)));
      for (int j = 0; j < W; ++j) ds += ex[j] >= 0 ? std::exp(log_g(zs(j)) - m) : 0.0;
      for (int j = 0; j < W; ++j) {
        if (ex[j] < 0) {
          w[j] = 0.0f;
        } else {
          const double lg = log_g(zs(j));
          w[j] = static_cast<float>(Renorm ? std::exp(lg - m) / ds : std::exp(lg));
        }
      }
      continue;
    } else if constexpr (!Renorm) {  // SigmoidGather
      for (int j = 0; j < W; ++j) w[j] = ex[j] >= 0 ? 1.0f / (1.0f + std::exp(-zs(j))) : 0.0f;
    } else {
      bool moderate = true;
      for (int j = 0; j < W; ++j) moderate &= ex[j] < 0 || zs(j) > -80.0f;
      if (moderate) {
        for (int j = 0; j < W; ++j) {
          w[j] = ex[j] >= 0 ? 1.0f / (1.0f + std::exp(-zs(j))) : 0.0f;
          s += w[j];
        }
        const float inv = s > 0.0f ? 1.0f / s : 0.0f;
        for (int j = 0; j < W; ++j) w[j] *= inv;
        continue;
      }
      // Renormalise in log space: sigmoid(-120) underflows, its share must not.
      auto log_sigmoid = [](float x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); };
      float m = kNeg;
      for (int j = 0; j < W; ++j)
        if (ex[j] >= 0) m = std::max(m, log_sigmoid(zs(j)));
      for (int j = 0; j < W; ++j) {
        w[j] = ex[j] >= 0 ? std::exp(log_sigmoid(zs(j)) - m) : 0.0f;
        s += w[j];
      }
    }
    if constexpr (R == WeightRule::SoftmaxSelected || Renorm) {
      if (s > 0.0f) {
        const float inv = 1.0f / s;
        for (int j = 0; j < W; ++j) w[j] *= inv;
      }
    }
  }
}

template <WeightRule R>
void weights_by_rule(const WeightSpec& spec, const float* logits, const float* slot_logits, const RowSoftmax* rows,
                     const std::int32_t* slots, Assignment& a) {
  const bool renorm = spec.renormalize || R == WeightRule::SoftmaxSelected;
  if (slot_logits && a.width == 2)
    renorm ? weights_for<R, true, true, 2>(logits, slot_logits, rows, slots, a)
           : weights_for<R, false, true, 2>(logits, slot_logits, rows, slots, a);
  else if (slot_logits && a.width == 1)
    renorm ? weights_for<R, true, true, 1>(logits, slot_logits, rows, slots, a)
           : weights_for<R, false, true, 1>(logits, slot_logits, rows, slots, a);
  else if (slot_logits && a.width == 4)
    renorm ? weights_for<R, true, true, 4>(logits, slot_logits, rows, slots, a)
           : weights_for<R, false, true, 4>(logits, slot_logits, rows, slots, a);
  else if (slot_logits && a.width == 8)
    renorm ? weights_for<R, true, true, 8>(logits, slot_logits, rows, slots, a)
           : weights_for<R, false, true, 8>(logits, slot_logits, rows, slots, a);
  else if (slot_logits)
    renorm ? weights_for<R, true, true>(logits, slot_logits, rows, slots, a)
           : weights_for<R, false, true>(logits, slot_logits, rows, slots, a);
  else
    renorm ? weights_for<R, true, false>(logits, slot_logits, rows, slots, a)
           : weights_for<R, false, false>(logits, slot_logits, rows, slots, a);
}

}  // namespace

void compute_weights(const WeightSpec& spec, const float* logits, Assignment& a, const float* slot_logits,
                     const RowSoftmax* rows) {
  const std::int32_t* slots = spec.over_requested ? a.requested.data() : a.expert.data();
  switch (spec.rule) {
    case WeightRule::SoftmaxSelected: weights_by_rule<WeightRule::SoftmaxSelected>(spec, logits, slot_logits, rows, slots, a); break;
    case WeightRule::SoftmaxGather: weights_by_rule<WeightRule::SoftmaxGather>(spec, logits, slot_logits, rows, slots, a); break;
    case WeightRule::SigmoidGather: weights_by_rule<WeightRule::SigmoidGather>(spec, logits, slot_logits, rows, slots, a); break;
    case WeightRule::SqrtSoftplusGather: weights_by_rule<WeightRule::SqrtSoftplusGather>(spec, logits, slot_logits, rows, slots, a); break;
  }
  if (spec.over_requested)
    for (std::size_t i = 0; i < a.expert.size(); ++i)
      if (a.expert[i] < 0) a.weight[i] = 0.0f;
  if (spec.scale != 1.0) {
    const auto s = static_cast<float>(spec.scale);
    for (auto& w : a.weight) w *= s;
  }
}

}  // namespace moesim
