#include "policies/capacity.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

namespace moesim {

std::vector<KnobSpec> capacity_knobs(double default_factor, bool default_dropless) {
  return {
      real_knob("capacity_factor", default_factor,
                "expert capacity C = max(min_capacity, ceil(cf*T*k/E)); must be > 0 unless dropless",
                -1e300, 1e6),
      int_knob("min_capacity", 4, "lower bound on the per-expert capacity", 0, 1L << 40),
      bool_knob("dropless", default_dropless, "no capacity limit: never drop a token"),
      choice_knob("drop_policy", "position", {"position", "probability"},
                  "who loses when an expert is full: later positions (see drop_order) or lower priority "
                  "(see drop_priority)"),
      choice_knob("drop_order", "choice_rank", {"choice_rank", "token"},
                  "position dropping: all first choices before second choices (GShard, Mesh-TF), or earlier "
                  "tokens first whatever the rank (Megatron-Core)"),
      choice_knob("drop_priority", "probability", {"probability", "weight"},
                  "probability dropping ranks requests by the gate probability, or by the combine weight "
                  "(Megatron-Core probs)"),
      choice_knob("drop_weights", "renormalize", {"renormalize", "mask"},
                  "a token that lost a choice: weights renormalised over its served slots, or formed over "
                  "every requested slot and masked (Megatron-Core, Mesh-TF)"),
      choice_knob("capacity_rounding", "exact", {"exact", "float"},
                  "ceil of the exact cf*T*k/E, or of (T*k/E)*cf in double as Megatron-Core (one higher "
                  "where the product rounds up)"),
      bool_knob("pad_to_capacity", false,
                "every expert processes exactly C slots, padding weighs 0 (Megatron-Core); counted in padded"),
  };
}

CapacityConfig capacity_from(const Knobs& knobs, const std::string& owner) {
  CapacityConfig c;
  c.factor = knobs.real("capacity_factor");
  c.min_capacity = knobs.integer("min_capacity");
  c.dropless = knobs.flag("dropless");
  c.drop = knobs.choice("drop_policy") == "probability" ? DropBy::Probability : DropBy::Position;
  c.order = knobs.choice("drop_order") == "token" ? DropOrder::Token : DropOrder::ChoiceRank;
  c.priority = knobs.choice("drop_priority") == "weight" ? DropPriority::Weight : DropPriority::Probability;
  c.mask_weights = knobs.choice("drop_weights") == "mask";
  c.rounding = knobs.choice("capacity_rounding") == "float" ? CapacityRounding::Float : CapacityRounding::Exact;
  c.pad = knobs.flag("pad_to_capacity");
  if (!c.dropless && !(c.factor > 0.0))
    fail_knob(owner, "capacity_factor", "= " + format_real(c.factor) +
                ": must be > 0 outside dropless mode");
  if (c.dropless && c.pad)
    fail_knob(owner, "pad_to_capacity", "= true needs a capacity (dropless = false)");
  return c;
}

WeightSpec with_drop_weights(WeightSpec spec, const CapacityConfig& cfg) {
  spec.over_requested = cfg.mask_weights && !cfg.dropless;
  return spec;
}

std::int64_t expert_capacity(const CapacityConfig& cfg, int tokens, int k, int experts) {
  if (cfg.dropless) return 0;
  std::int64_t c;
  if (cfg.rounding == CapacityRounding::Float) {
    // Megatron-Core: math.ceil((num_tokens * topk / num_experts) * capacity_factor).
    c = static_cast<std::int64_t>(std::ceil(static_cast<double>(static_cast<std::int64_t>(tokens) * k) / experts *
                                            cfg.factor));
  } else {
    const double raw = cfg.factor * static_cast<double>(tokens) * k / experts;
    // Guard against 2.0000000000000004 becoming 3: round to 1e-9 before ceil.
    c = static_cast<std::int64_t>(std::ceil(raw - 1e-9));
  }
  return std::max<std::int64_t>(std::max<std::int64_t>(c, cfg.min_capacity), 1);
}

void CapacityFilter::apply(const CapacityConfig& cfg, const float* priority, Assignment& out) {
  const int T = out.tokens, k = out.width, E = out.experts;
  auto& counts = out.counts;
  out.routed = static_cast<std::int64_t>(T) * k;
  out.dropped = 0;
  out.dropped_tokens = 0;
  out.capacity = expert_capacity(cfg, T, k, E);
  std::int32_t* ex = out.expert.data();
  const std::int64_t C = out.capacity;
  // The requests per expert first: an expert asked C times or fewer keeps every
  // request under every drop rule, so only the over-full ones are walked.
  count_experts(ex, out.expert.size(), E, counts.data());
  requested_.assign(counts.begin(), counts.end());
  over_.assign(static_cast<std::size_t>(E), 0);
  bool any_over = false;
  for (int e = 0; e < E; ++e) {
    over_[static_cast<std::size_t>(e)] = C > 0 && counts[e] > C;
    any_over |= over_[static_cast<std::size_t>(e)] != 0;
  }
  if (any_over) drop_over_capacity(cfg, priority, out);
  // An expert holds each token at most once, so it pads to min(C, T) (Megatron-Core
  // keeps every token when C exceeds T).
  if (cfg.pad) out.padded = static_cast<std::int64_t>(E) * std::min<std::int64_t>(C, T) - out.served();
}

void CapacityFilter::drop_by_position(bool choice_rank, Assignment& out) {
  const int E = out.experts;
  const std::int64_t C = out.capacity;
  std::int32_t* ex = out.expert.data();
  // The rule's order as columns of slots: choice rank j, then token t (slot
  // t * k + j), or slot order as one column.
  const int cols = choice_rank ? out.width : 1;
  const std::size_t len = choice_rank ? static_cast<std::size_t>(out.tokens) : out.expert.size();
  const std::size_t stride = choice_rank ? static_cast<std::size_t>(out.width) : 1;
  std::vector<int> overs;
  for (int e = 0; e < E; ++e)
    if (over_[static_cast<std::size_t>(e)]) overs.push_back(e);
  // Pass 1: the order position of each over-full expert's C-th request. The
  // requests are counted a chunk at a time in four interleaved tables (one
  // expert's increments then do not wait on each other through memory); only
  // the chunk where an expert reaches C is walked.
  constexpr std::size_t kChunk = 256;
  const auto uE = static_cast<std::size_t>(E);
  cum_.assign(uE, 0);
  cut_.assign(uE, std::numeric_limits<std::int64_t>::max());
  part_.resize(4 * uE);
  for (int j = 0; j < cols; ++j) {
    const std::int32_t* col = ex + j;
    for (std::size_t t0 = 0; t0 < len; t0 += kChunk) {
      const std::size_t t1 = std::min(len, t0 + kChunk);
      std::fill(part_.begin(), part_.end(), 0);
      for (std::size_t t = t0; t < t1; ++t) ++part_[(t & 3) * uE + static_cast<std::size_t>(col[t * stride])];
      for (int e : overs) {
        const auto ue = static_cast<std::size_t>(e);
        const std::int64_t n = part_[ue] + part_[uE + ue] + part_[2 * uE + ue] + part_[3 * uE + ue];
        if (cum_[ue] < C && cum_[ue] + n >= C) {
          std::int64_t need = C - cum_[ue];
          std::size_t t = t0;
          for (; t < t1; ++t)
            if (col[t * stride] == e && --need == 0) break;
          cut_[ue] = static_cast<std::int64_t>(static_cast<std::size_t>(j) * len + t);
        }
        cum_[ue] += n;
      }
    }
  }
  // Pass 2: every request after its expert's cut is refused; a mask, with no
  // counter to carry from one request to the next (GCC makes a select a branch,
  // mispredicted wherever drops are).
  static_assert(kNoExpert == -1, "the mask below writes all ones for a refused request");
  const std::int64_t* cut = cut_.data();
  for (int j = 0; j < cols; ++j) {
    std::int32_t* col = ex + j;
    const auto base = static_cast<std::int64_t>(static_cast<std::size_t>(j) * len);
    for (std::size_t t = 0; t < len; ++t) {
      const std::int32_t e = col[t * stride];
      const std::int32_t refuse = -static_cast<std::int32_t>(base + static_cast<std::int64_t>(t) > cut[e]);
      col[t * stride] = e | refuse;
    }
  }
  for (int e : overs) {
    out.dropped += out.counts[e] - C;
    out.counts[e] = C;
  }
}

void CapacityFilter::drop_over_capacity(const CapacityConfig& cfg, const float* priority, Assignment& out) {
  const int T = out.tokens, k = out.width, E = out.experts;
  auto& counts = out.counts;
  std::int32_t* ex = out.expert.data();
  const std::int64_t C = out.capacity;
  if (cfg.drop == DropBy::Position) {
    drop_by_position(cfg.order == DropOrder::ChoiceRank, out);
  } else {
    // Bucket requests by expert (counting sort keeps slot order inside a bucket).
    start_.assign(static_cast<std::size_t>(E) + 1, 0);
    const std::size_t n = out.expert.size();
    for (std::size_t i = 0; i < n; ++i) ++start_[ex[i] + 1];
    for (int e = 0; e < E; ++e) start_[e + 1] += start_[e];
    order_.resize(n);
    std::vector<std::int32_t> fill(start_.begin(), start_.end() - 1);
    for (std::size_t i = 0; i < n; ++i) order_[fill[ex[i]]++] = static_cast<std::int32_t>(i);
    for (int e = 0; e < E; ++e) {
      auto b = order_.begin() + start_[e], en = order_.begin() + start_[e + 1];
      const auto size = en - b;
      if (size > C) {
        // Higher score kept; ties go to the earlier slot (lower token index).
        std::nth_element(b, b + C, en, [priority](std::int32_t x, std::int32_t y) {
          return priority[x] > priority[y] || (priority[x] == priority[y] && x < y);
        });
        for (auto it = b + C; it != en; ++it) ex[*it] = kNoExpert;
        out.dropped += size - C;
      }
      counts[e] = std::min<std::int64_t>(size, C);
    }
  }
  for (int t = 0; t < T; ++t) {
    bool any = false;
    for (int j = 0; j < k; ++j) any |= ex[static_cast<std::size_t>(t) * k + j] >= 0;
    out.dropped_tokens += !any;
  }
}

}  // namespace moesim
