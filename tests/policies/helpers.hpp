#pragma once
// Shared helpers for the policy tests: scenario generation (sizes, logits with or
// without ties, knob variations, token ids), an independent data PRNG, bitwise
// assignment comparison and the generic assignment invariants.
//
// Test data never comes from moesim's own Rng: a local SplitMix64 fills logits and
// perf signals, so a bug in the code under test cannot also bend the test input.
#include <rapidcheck.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "policies/registry.hpp"

namespace testutil {

using moesim::Assignment;
using moesim::KnobMap;
using moesim::kNoExpert;
using moesim::PolicyInfo;

// SplitMix64 (Steele et al. 2014), written out here independently of policies/rng.hpp.
struct DataRng {
  std::uint64_t s;
  explicit DataRng(std::uint64_t seed) : s(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }
  int below(int n) { return static_cast<int>(next() % static_cast<std::uint64_t>(n)); }
};

// Logit styles: continuous (distinct with overwhelming probability), drawn from a
// small set (many exact ties), each row one or the other, or extreme magnitudes
// (+-FLT_MAX, +-1e30, +-100: saturated softmax/sigmoid, huge spreads).
enum LogitStyle { kContinuous = 0, kTies = 1, kMixed = 2, kExtreme = 3 };

inline std::vector<float> make_logits(int T, int E, std::uint64_t seed, int style) {
  DataRng r(seed);
  // -0.0f and 0.0f compare equal: a tie that differs in its bits.
  static const float kSet[] = {-1.0f, -0.0f, 0.0f, 0.5f, 1.0f, 2.0f};
  std::vector<float> z(static_cast<std::size_t>(T) * E);
  static const float kBig[] = {-std::numeric_limits<float>::max(), -1e30f, -100.0f, 0.0f,
                               100.0f, 1e30f, std::numeric_limits<float>::max()};
  for (int t = 0; t < T; ++t) {
    if (style == kExtreme) {
      for (int e = 0; e < E; ++e) {
        const bool big = r.next() & 1;
        z[static_cast<std::size_t>(t) * E + e] = big ? kBig[r.below(7)] : static_cast<float>(r.unit() * 8.0 - 4.0);
      }
      continue;
    }
    const bool ties = style == kTies || (style == kMixed && (r.next() & 1));
    for (int e = 0; e < E; ++e)
      z[static_cast<std::size_t>(t) * E + e] =
          ties ? kSet[r.below(6)] : static_cast<float>(r.unit() * 8.0 - 4.0);
  }
  return z;
}

// Continuous logits with every row's values pairwise distinct by a wide margin
// (>= 1/8 of the grid step), so sums, normalisations and added biases cannot
// round two of them into a tie: each row is a random permutation of a jittered grid.
inline std::vector<float> make_distinct_logits(int T, int E, std::uint64_t seed) {
  DataRng r(seed);
  std::vector<float> z(static_cast<std::size_t>(T) * E);
  std::vector<int> perm(static_cast<std::size_t>(E));
  const double step = 8.0 / E;
  for (int t = 0; t < T; ++t) {
    for (int e = 0; e < E; ++e) perm[static_cast<std::size_t>(e)] = e;
    for (int e = E - 1; e > 0; --e) std::swap(perm[static_cast<std::size_t>(e)], perm[static_cast<std::size_t>(r.below(e + 1))]);
    for (int e = 0; e < E; ++e)
      z[static_cast<std::size_t>(t) * E + e] =
          static_cast<float>(-4.0 + step * (perm[static_cast<std::size_t>(e)] + 0.75 * r.unit()));
  }
  return z;
}

inline std::vector<float> make_perf(std::size_t n, std::uint64_t seed) {
  DataRng r(seed);
  std::vector<float> p(n);
  for (auto& x : p) x = static_cast<float>(r.unit() * 5.0 - 2.0);  // [-2, 3)
  return p;
}

inline std::vector<std::int64_t> make_ids(int T, std::uint64_t seed) {
  DataRng r(seed);
  std::vector<std::int64_t> ids(static_cast<std::size_t>(T));
  // Small vocabulary: repeated ids must map to the same expert.
  for (auto& x : ids) x = static_cast<std::int64_t>(r.below(50));
  return ids;
}

// Uniform over [0, n), not scaled by RapidCheck's size; shrinks toward 0.
inline int choose(int n) { return *rc::gen::resize(100, rc::gen::inRange(0, n)); }
inline std::uint64_t any_seed() {
  return *rc::gen::noShrink(rc::gen::resize(100, rc::gen::arbitrary<std::uint64_t>()));
}

inline const moesim::KnobSpec* find_knob(const PolicyInfo& info, const std::string& name) {
  for (const auto& k : info.knobs)
    if (k.name == name) return &k;
  return nullptr;
}
inline bool has_knob(const PolicyInfo& info, const std::string& name) { return find_knob(info, name) != nullptr; }

// Policies whose routing draws randomness or hashes ids: expert permutation
// equivariance does not apply to them.
inline bool is_equivariant_policy(const std::string& name) {
  return name != "noisy_topk" && name != "random" && name != "hash";
}

struct Scenario {
  std::string policy;
  int E = 1, k = 1, T = 0;
  KnobMap knobs;
  int style = kContinuous;
  std::uint64_t seed = 0;
  std::vector<float> logits;
  std::vector<std::int64_t> ids;

  moesim::RouteInput input() const {
    moesim::RouteInput in;
    in.logits = logits.data();
    in.tokens = T;
    in.experts = E;
    in.token_ids = ids.empty() ? nullptr : ids.data();
    return in;
  }
  std::string describe() const {
    std::ostringstream os;
    os << policy << " E=" << E << " k=" << k << " T=" << T << " style=" << style << " seed=" << seed
       << " knobs={";
    for (const auto& [key, v] : knobs) os << key << '=' << v << ' ';
    os << '}';
    return os.str();
  }
};

// Knob variations that are valid for any size; each knob varied with probability
// 1/4 when `vary` (so most knobs stay at their defaults).
inline void vary_knobs(const PolicyInfo& info, int E, int k, KnobMap& kn) {
  auto maybe = [&](const std::string& name, std::vector<std::string> values) {
    const auto* spec = find_knob(info, name);
    if (!spec || choose(4) != 0) return;
    if (spec->type == moesim::KnobType::Choice)  // only the values this policy offers
      values.erase(std::remove_if(values.begin(), values.end(),
                                  [spec](const std::string& v) {
                                    return std::find(spec->choices.begin(), spec->choices.end(), v) ==
                                           spec->choices.end();
                                  }),
                   values.end());
    if (values.empty()) return;
    kn[name] = values[static_cast<std::size_t>(choose(static_cast<int>(values.size())))];
  };
  maybe("capacity_factor", {"0.5", "1", "1.25", "2"});
  maybe("min_capacity", {"0", "1", "4"});
  maybe("dropless", {"true", "false"});
  maybe("drop_policy", {"position", "probability"});
  maybe("drop_order", {"choice_rank", "token"});
  maybe("drop_priority", {"probability", "weight"});
  maybe("drop_weights", {"renormalize", "mask"});
  maybe("capacity_rounding", {"exact", "float"});
  maybe("tie_break", {"low_index", "random"});
  maybe("score_fn", {"softmax", "sigmoid", "sqrtsoftplus"});
  maybe("renormalize", {"true", "false"});
  maybe("topk_scaling_factor", {"1", "2.5", "0.5"});
  // presets (explicit knobs above and below still override them)
  if (const auto* pk = find_knob(info, "preset")) maybe("preset", pk->choices);
  // RD-ESI
  maybe("alpha", {"0", "0.3", "1"});
  maybe("decay_on", {"idle", "all_before_ema", "all_after_ema", "none"});
  maybe("count_slots", {"served", "routed"});
  maybe("decay_rate", {"0", "0.5", "1"});
  maybe("idle_perf", {"zero", "keep"});
  maybe("load_normalize", {"capacity", "none"});
  maybe("weights_over", {"scores", "logits"});
  maybe("epsilon", {"0", "0.2"});
  maybe("score_noise", {"0", "0.5"});
  maybe("ucb_c", {"0", "0.1", "2"});
  // loss-free
  maybe("bias_rate", {"0.001", "0.1"});
  maybe("bias_counts", {"requested", "served"});
  // noisy top-k
  maybe("noise", {"gaussian", "gumbel", "none"});
  maybe("weights_from", {"noisy", "clean"});
  maybe("noise_std", {"0", "1", "3"});
  // sinkhorn
  maybe("iterations", {"0", "1", "20", "200"});
  maybe("tol", {"0", "0.0001", "0.1"});
  maybe("eval_mode", {"sinkhorn", "topk"});
  // balanced
  maybe("auction_eps", {"0.001", "0.1", "1e-06"});
  // hash
  maybe("salt", {"0", "12345", "-7"});
  // group-limited routing: a divisor of E, enough groups kept for k
  if (has_knob(info, "n_groups") && choose(4) == 0) {
    std::vector<int> divs;
    for (int g = 1; g <= E; ++g)
      if (E % g == 0) divs.push_back(g);
    const int g = divs[static_cast<std::size_t>(choose(static_cast<int>(divs.size())))];
    const int gs = E / g;
    const int need = (k + gs - 1) / gs;  // groups needed to hold k experts
    const int tg = need + choose(g - need + 1);
    kn["n_groups"] = std::to_string(g);
    kn["topk_groups"] = std::to_string(tg);
    // sum_topk (the default) needs topk_groups <= k; max and top2sum take any.
    std::vector<std::string> scores = {"max"};
    if (gs >= 2) scores.push_back("top2sum");
    if (tg <= k && k / tg <= gs) scores.push_back("sum_topk");
    kn["group_score"] = scores[static_cast<std::size_t>(choose(static_cast<int>(scores.size())))];
  }
  // Padding needs a capacity; dropless presets (rdesi reference, deepseek_v3) may set it.
  if (has_knob(info, "pad_to_capacity") && choose(4) == 0) {
    kn["pad_to_capacity"] = "true";
    kn["dropless"] = "false";
  }
}

// A generated scenario for `info` (call inside an rc::prop).
inline Scenario gen_scenario(const PolicyInfo& info, bool allow_knob_variation = true,
                             int max_T = 200, int max_E = 32) {
  Scenario s;
  s.policy = info.name;
  s.E = *rc::gen::inRange(1, max_E + 1);
  s.k = moesim::accepted_k(info, s.E, 1 + choose(s.E));
  if (info.name == "balanced") {
    s.T = s.E * choose(max_T / s.E + 1);  // T a multiple of E
  } else {
    s.T = *rc::gen::inRange(0, max_T + 1);
  }
  // Extreme magnitudes in 1 case of 8, the other styles evenly.
  const int st = choose(8);
  s.style = st == 7 ? kExtreme : st % 3;
  s.seed = any_seed();
  if (allow_knob_variation && choose(2) == 0) vary_knobs(info, s.E, s.k, s.knobs);
  s.logits = make_logits(s.T, s.E, s.seed, s.style);
  s.ids = make_ids(s.T, s.seed ^ 0x5bd1e995ULL);
  return s;
}

// Input for step `step` of a multi-step run: step 0 is the scenario's own batch,
// later steps draw fresh logits and ids of the same shape and style.
struct Step {
  std::vector<float> logits;
  std::vector<std::int64_t> ids;
  std::uint64_t perf_seed = 0;
  bool with_perf = true;
};

inline Step make_step(const Scenario& s, int step, bool distinct = false) {
  Step st;
  const std::uint64_t seed = s.seed + 0x9e3779b97f4a7c15ULL * static_cast<std::uint64_t>(step);
  if (step == 0) {
    st.logits = s.logits;
    st.ids = s.ids;
  } else {
    st.logits = distinct ? make_distinct_logits(s.T, s.E, seed) : make_logits(s.T, s.E, seed, s.style);
    st.ids = make_ids(s.T, seed ^ 0x5bd1e995ULL);
  }
  st.perf_seed = seed ^ 0xa0761d6478bd642fULL;
  st.with_perf = (seed >> 7) % 4 != 0;  // now and then no feedback signal at all
  return st;
}

inline moesim::RouteInput input_of(const Scenario& s, const Step& st) {
  moesim::RouteInput in;
  in.logits = st.logits.data();
  in.tokens = s.T;
  in.experts = s.E;
  in.token_ids = st.ids.data();
  return in;
}

// Feedback for an assignment: one value per slot, a pure function of the step.
inline std::vector<float> perf_for(const Step& st, const Assignment& a) {
  return make_perf(a.expert.size(), st.perf_seed);
}

inline void feed(moesim::Policy& p, const Step& st, const Assignment& a) {
  const auto perf = perf_for(st, a);
  p.observe(a, st.with_perf ? perf.data() : nullptr);
}

inline std::unique_ptr<moesim::Policy> make(const Scenario& s) {
  return moesim::make_policy(s.policy, s.E, s.k, s.knobs);
}

// Independent reference: indices sorted by (value desc, index asc), first k.
template <class V>
inline std::vector<int> ref_topk(const V* row, int n, int k) {
  std::vector<int> idx(static_cast<std::size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [row](int a, int b) { return row[a] > row[b]; });
  idx.resize(static_cast<std::size_t>(k));
  return idx;
}

// The documented weight rules (types.hpp), evaluated in double from the logits,
// the served experts, the requested experts (the normalising set when
// spec.over_requested) and the per-slot offsets. The selection score z + o is
// formed in float, as both the policy and the LibTorch recompute receive it.
inline std::vector<double> rule_weights(const moesim::WeightSpec& spec, const float* z, int E, const std::int32_t* ex,
                                        const std::int32_t* req, const float* off, int W) {
  std::vector<double> w(static_cast<std::size_t>(W), 0.0);
  const std::int32_t* over = spec.over_requested ? req : ex;  // the set the rule normalises over
  bool any = false;
  for (int j = 0; j < W; ++j) any |= ex[j] >= 0;
  if (!any) return w;
  auto log_sigmoid = [](double x) { return x >= 0 ? -std::log1p(std::exp(-x)) : x - std::log1p(std::exp(x)); };
  // log sqrt(softplus(x)); softplus(x) = log(1 + e^x) ~ e^x below -30.
  auto log_sqrt_softplus = [](double x) {
    return 0.5 * (x < -30 ? x : std::log(x > 30 ? x : std::log1p(std::exp(x))));
  };
  std::vector<double> lw(static_cast<std::size_t>(W), -std::numeric_limits<double>::infinity());  // log of the unnormalised weight
  switch (spec.rule) {
    case moesim::WeightRule::SoftmaxSelected:
      for (int j = 0; j < W; ++j)
        if (over[j] >= 0) lw[static_cast<std::size_t>(j)] = static_cast<double>(z[over[j]] + off[j]);
      break;
    case moesim::WeightRule::SoftmaxGather: {
      if (spec.renormalize) {  // the full-row normaliser cancels: softmax over the served logits
        for (int j = 0; j < W; ++j)
          if (over[j] >= 0) lw[static_cast<std::size_t>(j)] = double(z[over[j]]);
        break;
      }
      double m = z[0];
      for (int e = 1; e < E; ++e) m = std::max(m, double(z[e]));
      double s = 0;
      for (int e = 0; e < E; ++e) s += std::exp(double(z[e]) - m);
      for (int j = 0; j < W; ++j)
        if (over[j] >= 0) lw[static_cast<std::size_t>(j)] = double(z[over[j]]) - m - std::log(s);
      break;
    }
    case moesim::WeightRule::SigmoidGather:
      for (int j = 0; j < W; ++j)
        if (over[j] >= 0) lw[static_cast<std::size_t>(j)] = log_sigmoid(double(z[over[j]]));
      break;
    case moesim::WeightRule::SqrtSoftplusGather:
      for (int j = 0; j < W; ++j)
        if (over[j] >= 0) lw[static_cast<std::size_t>(j)] = log_sqrt_softplus(double(z[over[j]]));
      break;
  }
  double m = -std::numeric_limits<double>::infinity();
  for (double x : lw) m = std::max(m, x);
  double s = 0;
  for (int j = 0; j < W; ++j)
    if (over[j] >= 0) s += std::exp(lw[static_cast<std::size_t>(j)] - m);
  for (int j = 0; j < W; ++j) {
    if (ex[j] < 0) continue;  // refused by capacity: masked
    const double u = spec.divides() ? std::exp(lw[static_cast<std::size_t>(j)] - m) / s : std::exp(lw[static_cast<std::size_t>(j)]);
    w[static_cast<std::size_t>(j)] = spec.scale * u;
  }
  return w;
}

// The same oracle for a plain list of chosen experts (no offsets).
inline std::vector<double> ref_weights(const float* z, int E, const std::vector<int>& chosen, bool sigmoid,
                                       bool renormalize) {
  moesim::WeightSpec spec;
  spec.rule = sigmoid ? moesim::WeightRule::SigmoidGather : moesim::WeightRule::SoftmaxGather;
  spec.renormalize = renormalize;
  std::vector<std::int32_t> ex(chosen.begin(), chosen.end());
  std::vector<float> off(chosen.size(), 0.0f);
  return rule_weights(spec, z, E, ex.data(), ex.data(), off.data(), static_cast<int>(ex.size()));
}

inline Assignment route_once(moesim::Policy& p, const std::vector<float>& z, int T, int E, std::uint64_t seed = 1,
                             const std::int64_t* ids = nullptr) {
  moesim::RouteInput in;
  in.logits = z.data();
  in.tokens = T;
  in.experts = E;
  in.token_ids = ids;
  moesim::Rng rng(seed);
  Assignment a;
  p.route(in, rng, a);
  return a;
}

// Bitwise equality of two assignments: an empty string when equal, else where they differ.
inline std::string diff_assignments(const Assignment& a, const Assignment& b) {
  std::ostringstream os;
  if (a.tokens != b.tokens || a.experts != b.experts || a.width != b.width) {
    os << "shape " << a.tokens << 'x' << a.width << " vs " << b.tokens << 'x' << b.width;
    return os.str();
  }
  for (std::size_t i = 0; i < a.expert.size(); ++i)
    if (a.expert[i] != b.expert[i]) {
      os << "slot " << i << ": expert " << a.expert[i] << " vs " << b.expert[i];
      return os.str();
    }
  // memcmp on empty vectors would get null pointers (undefined even for size 0).
  if (a.weight.size() != b.weight.size() ||
      (!a.weight.empty() && std::memcmp(a.weight.data(), b.weight.data(), a.weight.size() * sizeof(float)) != 0))
    return "weights differ bitwise";
  if (a.offset.size() != b.offset.size() ||
      (!a.offset.empty() && std::memcmp(a.offset.data(), b.offset.data(), a.offset.size() * sizeof(float)) != 0))
    return "offsets differ bitwise";
  if (a.requested != b.requested) return "requested experts differ";
  if (a.counts != b.counts) return "counts differ";
  if (a.routed != b.routed || a.dropped != b.dropped || a.dropped_tokens != b.dropped_tokens ||
      a.capacity != b.capacity || a.padded != b.padded)
    return "routed/dropped/dropped_tokens/capacity/padded differ";
  return {};
}

// Token t's served experts with their weights (how references that return
// routing maps are compared with an assignment).
inline std::map<int, double> served_weights(const Assignment& a, int t) {
  std::map<int, double> m;
  for (int j = 0; j < a.width; ++j)
    if (a.at(t, j) >= 0) m[a.at(t, j)] = a.weight_at(t, j);
  return m;
}

// Empty when both serve the same experts with weights within 1e-5 relative, else the first difference.
inline std::string diff_served(const std::map<int, double>& got, const std::map<int, double>& want) {
  std::ostringstream os;
  for (const auto& [e, v] : want) {
    auto it = got.find(e);
    if (it == got.end()) return (os << "expert " << e << " not served", os.str());
    if (std::fabs(it->second - v) > 1e-5 * (1 + v)) return (os << "expert " << e << ": weight " << it->second << ", want " << v, os.str());
  }
  for (const auto& [e, v] : got)
    if (!want.count(e)) return (os << "expert " << e << " served, should not be", os.str());
  return {};
}

inline bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

// The generic invariants every policy's assignment satisfies. Empty when all hold,
// otherwise the first violation, named.
inline std::string violation(const moesim::Policy& p, int T, int E, int k, const Assignment& a) {
  std::ostringstream os;
  if (a.tokens != T || a.experts != E) {
    os << "assignment is " << a.tokens << " tokens x " << a.experts << " experts, want " << T << 'x' << E;
    return os.str();
  }
  const std::size_t n = static_cast<std::size_t>(T) * a.width;
  // Token choice: k slots. Expert choice: as many as the widest token needs (>= 1).
  const bool by_expert = p.name() == "expert_choice";
  if (!by_expert && a.width != k) {
    os << "token-choice width " << a.width << " is not k=" << k;
    return os.str();
  }
  if (by_expert && a.expert.size() == n) {
    int widest = 1;
    for (int t = 0; t < T; ++t) {
      int filled = 0;
      for (int j = 0; j < a.width; ++j) filled += a.expert[static_cast<std::size_t>(t) * a.width + j] >= 0;
      widest = std::max(widest, filled);
    }
    if (a.width != widest) {
      os << "width " << a.width << " is neither k=" << k << " nor the widest token's " << widest << " experts";
      return os.str();
    }
  }
  if (a.expert.size() != n || a.requested.size() != n || a.weight.size() != n || a.offset.size() != n ||
      a.counts.size() != static_cast<std::size_t>(E))
    return "vector sizes do not match tokens x width / experts";
  std::vector<std::int64_t> counts(static_cast<std::size_t>(E), 0);
  std::int64_t no_expert_tokens = 0;
  const bool normalized = p.weight_spec().normalized();
  for (int t = 0; t < T; ++t) {
    std::set<int> seen;
    double sum = 0.0;
    int served = 0;
    for (int j = 0; j < a.width; ++j) {
      const int e = a.at(t, j);
      const float w = a.weight_at(t, j);
      const float o = a.offset[static_cast<std::size_t>(t) * a.width + j];
      const int r = a.requested[static_cast<std::size_t>(t) * a.width + j];
      if (e != kNoExpert && r != e) {
        os << "token " << t << " slot " << j << " serves expert " << e << " but requested " << r;
        return os.str();
      }
      if (e == kNoExpert) {
        // Offsets live on requested slots: only a slot nothing was asked for is all zero.
        if (w != 0.0f || (r == kNoExpert && o != 0.0f)) {
          os << "token " << t << " slot " << j << " is empty but has weight " << w << ", offset " << o;
          return os.str();
        }
        continue;
      }
      if (!std::isfinite(o)) {
        os << "token " << t << " slot " << j << ": offset " << o << " is not finite";
        return os.str();
      }
      if (e < 0 || e >= E) {
        os << "token " << t << " slot " << j << ": expert " << e << " out of range [0," << E << ")";
        return os.str();
      }
      if (!seen.insert(e).second) {
        os << "token " << t << ": expert " << e << " appears twice";
        return os.str();
      }
      // sqrt(softplus(z)) is unbounded unless renormalised.
      const auto spec = p.weight_spec();
      const double wmax = spec.rule == moesim::WeightRule::SqrtSoftplusGather && !spec.renormalize
                              ? std::numeric_limits<double>::infinity()
                              : spec.scale * (1.0 + 1e-6);
      if (!std::isfinite(w) || w < 0.0f || w > wmax) {
        os << "token " << t << " slot " << j << ": weight " << w << " not in [0," << wmax << "]";
        return os.str();
      }
      ++counts[static_cast<std::size_t>(e)];
      sum += w;
      ++served;
    }
    if (served == 0) ++no_expert_tokens;
    if (served > 0 && normalized && std::fabs(sum - 1.0) > 1e-5) {
      os << "token " << t << ": weights sum to " << sum << ", want 1";
      return os.str();
    }
  }
  for (int e = 0; e < E; ++e) {
    if (counts[static_cast<std::size_t>(e)] != a.counts[static_cast<std::size_t>(e)]) {
      os << "counts[" << e << "] = " << a.counts[static_cast<std::size_t>(e)] << " but "
         << counts[static_cast<std::size_t>(e)] << " slots hold expert " << e;
      return os.str();
    }
    if (a.capacity > 0 && a.counts[static_cast<std::size_t>(e)] > a.capacity) {
      os << "expert " << e << " serves " << a.counts[static_cast<std::size_t>(e)] << " > capacity "
         << a.capacity;
      return os.str();
    }
  }
  if (a.capacity < 0) return "negative capacity";
  if (a.dropped < 0) return "negative dropped";
  if (a.served() + a.dropped != a.routed) {
    os << "served " << a.served() << " + dropped " << a.dropped << " != routed " << a.routed;
    return os.str();
  }
  if (a.dropped_tokens != no_expert_tokens) {
    os << "dropped_tokens = " << a.dropped_tokens << " but " << no_expert_tokens << " tokens have no expert";
    return os.str();
  }
  if (!by_expert && a.routed != static_cast<std::int64_t>(T) * k) {
    os << "token-choice routed = " << a.routed << ", want T*k = " << static_cast<std::int64_t>(T) * k;
    return os.str();
  }
  return {};
}

}  // namespace testutil
