#include "policies/topk.hpp"

#include <algorithm>
#include <limits>

#include "policies/select.hpp"

namespace moesim {

std::vector<KnobSpec> score_knobs() {
  return {
      choice_knob("score_fn", "softmax", {"softmax", "sigmoid"},
                  "gate score: softmax over experts, or per-expert sigmoid (DeepSeek-V3)"),
      bool_knob("renormalize", true, "divide the selected scores by their sum"),
  };
}

WeightSpec score_weight_spec(const Knobs& knobs) {
  WeightSpec s;
  s.rule = knobs.choice("score_fn") == "sigmoid" ? WeightRule::SigmoidGather : WeightRule::SoftmaxGather;
  s.renormalize = knobs.flag("renormalize");
  return s;
}

std::vector<KnobSpec> group_knobs() {
  return {
      int_knob("n_groups", 1, "group-limited routing: experts split into this many groups (1 = off)", 1,
               1 << 20),
      int_knob("topk_groups", 1, "groups kept per token before the top-k inside them", 1, 1 << 20),
      choice_knob("group_score", "max", {"max", "top2sum"},
                  "a group's score: its best expert, or the sum of its two best (DeepSeek-V3)"),
  };
}

void TopKSelector::configure_groups(const Knobs& knobs, const std::string& owner) {
  groups = static_cast<int>(knobs.integer("n_groups"));
  topk_groups = static_cast<int>(knobs.integer("topk_groups"));
  group_top2 = knobs.choice("group_score") == "top2sum";
  if (groups == 1) return;
  if (experts % groups != 0)
    throw Error(owner + ": knob 'n_groups' = " + std::to_string(groups) + " must divide E=" +
                std::to_string(experts));
  if (topk_groups > groups)
    throw Error(owner + ": knob 'topk_groups' = " + std::to_string(topk_groups) + " exceeds n_groups=" +
                std::to_string(groups));
  if (k > topk_groups * (experts / groups))
    throw Error(owner + ": k=" + std::to_string(k) + " exceeds the experts in " +
                std::to_string(topk_groups) + " groups of " + std::to_string(experts / groups));
  if (group_top2 && experts / groups < 2)
    throw Error(owner + ": knob 'group_score' = top2sum needs groups of at least 2 experts");
}

void TopKSelector::select(const float* sel, int tokens, Assignment& out) const {
  float val[64];
  std::vector<float> vbuf;
  float* v = val;
  if (k > 64) {
    vbuf.resize(static_cast<std::size_t>(k));
    v = vbuf.data();
  }
  const int E = experts;
  if (groups <= 1) {
    for (int t = 0; t < tokens; ++t)
      topk_row(sel + static_cast<std::size_t>(t) * E, E, k, out.expert.data() + static_cast<std::size_t>(t) * k, v);
    return;
  }
  const int gs = E / groups;
  std::vector<float> gscore(static_cast<std::size_t>(groups));
  std::vector<std::int32_t> gidx(static_cast<std::size_t>(topk_groups));
  std::vector<float> gval(static_cast<std::size_t>(topk_groups));
  std::vector<char> allowed(static_cast<std::size_t>(groups));
  for (int t = 0; t < tokens; ++t) {
    const float* z = sel + static_cast<std::size_t>(t) * E;
    for (int g = 0; g < groups; ++g) {
      std::int32_t i2[2];
      float v2[2];
      topk_row(z + g * gs, gs, group_top2 ? 2 : 1, i2, v2);
      // top2sum ranks groups by the mean of the two, not the sum: same order (halving is
      // exact), but the sum of two logits near +-FLT_MAX overflows to +-inf, and an all
      // -inf group row made the group top-k return -1 (allowed[-1] written: heap corruption).
      gscore[g] = group_top2 ? 0.5f * v2[0] + 0.5f * v2[1] : v2[0];
    }
    topk_row(gscore.data(), groups, topk_groups, gidx.data(), gval.data());
    std::fill(allowed.begin(), allowed.end(), 0);
    for (auto g : gidx) allowed[g] = 1;
    constexpr float kNeg = -std::numeric_limits<float>::infinity();
    topk_by(E, k, [&](int e) { return allowed[e / gs] ? z[e] : kNeg; },
            out.expert.data() + static_cast<std::size_t>(t) * k, v);
  }
}

TopKPolicy::TopKPolicy(int experts, int k, const Knobs& knobs)
    : Policy("topk", experts, k, knobs), spec_(score_weight_spec(knobs)), cap_(capacity_from(knobs, "topk")) {
  sel_.experts = experts;
  sel_.k = k;
  sel_.configure_groups(knobs, "topk");
}

void TopKPolicy::do_route(const RouteInput& in, Rng&, Assignment& out) {
  out.reset(in.tokens, experts(), k());
  sel_.select(in.logits, in.tokens, out);
  tail_.finish(in.logits, cap_, spec_, out);
}

PolicyInfo topk_info() {
  auto knobs = score_knobs();
  for (auto& g : group_knobs()) knobs.push_back(g);
  for (auto& c : capacity_knobs()) knobs.push_back(c);
  return {"topk", "top-k gating on softmax or sigmoid scores, optional group-limited selection", knobs,
          [](int E, int k, const Knobs& kn) { return std::make_unique<TopKPolicy>(E, k, kn); }};
}

}  // namespace moesim
