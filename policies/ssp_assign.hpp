#pragma once
// Exact balanced assignment: T tokens, E experts, every expert exactly C = T/E
// tokens, maximising sum_t v[t][a(t)] (v = -inf: not allowed). A min-cost flow
// solved by successive shortest paths on the E-node expert graph:
//   start   every token at its best expert (ties to the lower index), potentials 0;
//   arc     e -> f costs c(e,f) = min over tokens t at e of v[t][e] - v[t][f]
//           (moving t from e to f), the argmin token carrying it (ties to the lower token);
//   reduced c(e,f) + pi_e - pi_f >= 0 throughout (every token is at its best
//           expert under the prices -pi), so Dijkstra finds shortest paths;
//   augment one unit from an over-full expert to the nearest under-full one per
//           Dijkstra (pi += min(d, D)), moving one token along each arc.
// Each augmentation removes one token of excess, so there are at most T - C of
// them, each O(E^2). The result is optimal up to double rounding of the
// potentials (a test compares it with the Hungarian algorithm); unlike an
// eps-auction it has no step size and no gap. Deterministic: every choice has
// an explicit tie-break by index.
#include <cstdint>
#include <vector>

namespace moesim {

class SspAssigner {
 public:
  // values: T x E row-major; T == E * cap; every token must have a finite value
  // for at least one expert and a perfect assignment must exist (Error otherwise).
  // owner[t] receives token t's expert.
  void assign(const float* values, int T, int E, int cap, std::int32_t* owner);
  // Tests only: false takes the scalar path of init's arc pairs, the definition
  // the AVX-512 one must match bit for bit.
  void use_simd(bool on) { simd_ = on; }

 private:
  struct Cand {
    double key;
    std::int32_t tok;
  };
  static constexpr int kBuf = 8;   // buffer size
  // The best few tokens of expert e for arc e -> f, ascending by (key, token):
  // c[0] is always a token now at e (deeper ones may have left). Every token at
  // e not in c has (key, token) after `bound`.
  struct Arc {
    Cand c[kBuf];
    int n;
    Cand bound;
  };

  double key(std::int32_t t, int e, int f) const;
  static void insert(Arc& a, double k, std::int32_t t, int limit);
  void init(int T, int E);
  void init_best_two(int e);
  template <int NV>
  void best_two_cols(const std::vector<std::int32_t>& m, std::size_t r, int f0);
  void refresh_front(int e, int f);
  void rescan(int e, int f);
  void leave(std::int32_t t, int e);
  void enter(std::int32_t t, int f);
  int shortest_path();

  const float* v_ = nullptr;
  bool simd_ = true;
  int E_ = 0;
  std::vector<Arc> arc_;                  // E x E
  std::vector<double> front_;             // E x E: c(e,f) of the front token, +inf when none
  std::vector<std::int64_t> front_tok_;   // E x E: that token, -1 when none (64-bit: vectorises with front_)
  std::vector<std::int32_t> loc_;         // per token: its expert now
  std::vector<float> own_;                // per token: its value there
  std::vector<std::int32_t> pos_;         // per token: its index in members_[loc]
  std::vector<std::vector<std::int32_t>> members_;  // per expert: its tokens, any order
  std::vector<std::int64_t> excess_;      // per expert: tokens held - cap
  std::vector<double> scratch_;           // rescan: keys of one arc
  std::vector<double> second_;            // init: E x E, the second-best key of each arc
  std::vector<std::int64_t> second_tok_;  // init: its token
  std::vector<double> pi_, dist_, tent_;  // potentials; Dijkstra distances
  std::vector<std::int64_t> pred_;        // Dijkstra tree
};

}  // namespace moesim
