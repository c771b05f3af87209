#include "policies/ssp_assign.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "common/error.hpp"
#include "policies/fast_math.hpp"

namespace moesim {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// The lowest index i with z[i] == x (x occurs in z[0, n)).
inline int first_index_of(const float* z, int n, float x) {
  int i = 0;
#if defined(__AVX512F__)
  const __m512 vx = _mm512_set1_ps(x);
  for (; i + 16 <= n; i += 16)
    if (const unsigned m = _mm512_cmp_ps_mask(_mm512_loadu_ps(z + i), vx, _CMP_EQ_OQ)) return i + __builtin_ctz(m);
#endif
  while (i < n && z[i] != x) ++i;
  return i;
}

inline bool before(double ka, std::int32_t ta, double kb, std::int32_t tb) {
  return ka < kb || (ka == kb && ta < tb);
}

}  // namespace

// Moving t from e to f: exact in double for float values; +inf when f is not allowed.
inline double SspAssigner::key(std::int32_t t, int e, int f) const {
  const float* row = v_ + static_cast<std::size_t>(t) * static_cast<std::size_t>(E_);
  return static_cast<double>(row[e]) - static_cast<double>(row[f]);
}

// Insert (k, t) into a sorted buffer of at most `limit`; when full the last
// one leaves and becomes the bound (every token outside is after it).
inline void SspAssigner::insert(Arc& a, double k, std::int32_t t, int limit) {
  if (a.n == limit) a.bound = a.c[--a.n];
  int p = a.n++;
  while (p > 0 && before(k, t, a.c[p - 1].key, a.c[p - 1].tok)) {
    a.c[p] = a.c[p - 1];
    --p;
  }
  a.c[p] = {k, t};
}

// Every token at its best expert; each arc's buffer starts with its two best
// tokens (init_best_two).
void SspAssigner::init(int T, int E) {
  const auto nE = static_cast<std::size_t>(E);
  loc_.resize(static_cast<std::size_t>(T));
  pos_.resize(static_cast<std::size_t>(T));
  own_.resize(static_cast<std::size_t>(T));
  members_.resize(nE);
  for (auto& m : members_) m.clear();
  excess_.assign(nE, 0);
  front_.assign(nE * nE, kInf);
  second_.assign(nE * nE, kInf);
  front_tok_.assign(nE * nE, -1);
  second_tok_.assign(nE * nE, -1);
  for (int t = 0; t < T; ++t) {
    const float* row = v_ + static_cast<std::size_t>(t) * nE;
    const float mx = row_max(row, E);
    const int best = first_index_of(row, E, mx);
    if (!(mx > -std::numeric_limits<float>::infinity()))
      throw Error("balanced assignment: token " + std::to_string(t) + " has no expert left to take");
    loc_[static_cast<std::size_t>(t)] = best;
    own_[static_cast<std::size_t>(t)] = mx;
    auto& m = members_[static_cast<std::size_t>(best)];
    pos_[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(m.size());
    m.push_back(t);
    ++excess_[static_cast<std::size_t>(best)];
  }
  for (int e = 0; e < E; ++e) init_best_two(e);
  arc_.resize(nE * nE);
  for (std::size_t i = 0; i < nE * nE; ++i) {
    if (i / nE == i % nE) front_[i] = kInf, front_tok_[i] = -1, second_tok_[i] = -1;  // no arc to itself
    Arc& a = arc_[i];
    a.n = 0;
    if (front_tok_[i] >= 0) a.c[a.n++] = {front_[i], static_cast<std::int32_t>(front_tok_[i])};
    if (second_tok_[i] >= 0) a.c[a.n++] = {second_[i], static_cast<std::int32_t>(second_tok_[i])};
    // Two kept may have left tokens out: the second bounds them.
    a.bound = a.n == 2 ? a.c[1] : Cand{kInf, std::numeric_limits<std::int32_t>::max()};
  }
  const auto cap = static_cast<std::int64_t>(T / E);
  for (auto& x : excess_) x -= cap;
  pi_.assign(nE, 0.0);
}

// The two best keys of every arc e -> f over e's tokens, in ascending token
// order so that a strict < keeps the lower token. With AVX-512, up to 32 arcs'
// pairs stay in registers for a pass over the tokens (their rows are then
// read once from memory and again from cache), where a pass per token over
// the arc rows in memory was bound by L2 traffic; the same comparisons in the
// same order, so bitwise the same pairs.
void SspAssigner::init_best_two(int e) {
  const auto nE = static_cast<std::size_t>(E_);
  const std::size_t r = static_cast<std::size_t>(e) * nE;
  const auto& m = members_[static_cast<std::size_t>(e)];
  int f0 = 0;
#if defined(__AVX512F__)
  if (simd_) {
    for (; f0 + 32 <= E_; f0 += 32) best_two_cols<4>(m, r, f0);
    for (; f0 + 16 <= E_; f0 += 16) best_two_cols<2>(m, r, f0);
    for (; f0 + 8 <= E_; f0 += 8) best_two_cols<1>(m, r, f0);
  }
#endif
  double* b1 = front_.data() + r;
  double* b2 = second_.data() + r;
  std::int64_t* t1 = front_tok_.data() + r;
  std::int64_t* t2 = second_tok_.data() + r;
  for (const std::int32_t t : m) {
    const float* row = v_ + static_cast<std::size_t>(t) * nE;
    const double zb = own_[static_cast<std::size_t>(t)];
    const auto ti = static_cast<std::int64_t>(t);
    for (auto f = static_cast<std::size_t>(f0); f < nE; ++f) {
      const double k = zb - static_cast<double>(row[f]);
      const bool lt1 = k < b1[f], lt2 = k < b2[f];
      b2[f] = lt1 ? b1[f] : (lt2 ? k : b2[f]);
      t2[f] = lt1 ? t1[f] : (lt2 ? ti : t2[f]);
      b1[f] = lt1 ? k : b1[f];
      t1[f] = lt1 ? ti : t1[f];
    }
  }
}

#if defined(__AVX512F__)
template <int NV>
void SspAssigner::best_two_cols(const std::vector<std::int32_t>& m, std::size_t r, int f0) {
  __m512d b1[NV], b2[NV];
  __m512i t1[NV], t2[NV];
  for (int j = 0; j < NV; ++j) {
    b1[j] = b2[j] = _mm512_set1_pd(kInf);
    t1[j] = t2[j] = _mm512_set1_epi64(-1);
  }
  const auto nE = static_cast<std::size_t>(E_);
  for (const std::int32_t t : m) {
    const float* row = v_ + static_cast<std::size_t>(t) * nE + f0;
    const __m512d zb = _mm512_set1_pd(static_cast<double>(own_[static_cast<std::size_t>(t)]));
    const __m512i ti = _mm512_set1_epi64(t);
    for (int j = 0; j < NV; ++j) {
      const __m512d k = _mm512_sub_pd(zb, _mm512_cvtps_pd(_mm256_loadu_ps(row + 8 * j)));
      const __mmask8 lt1 = _mm512_cmp_pd_mask(k, b1[j], _CMP_LT_OQ), lt2 = _mm512_cmp_pd_mask(k, b2[j], _CMP_LT_OQ);
      b2[j] = _mm512_mask_blend_pd(lt1, _mm512_mask_blend_pd(lt2, b2[j], k), b1[j]);
      t2[j] = _mm512_mask_blend_epi64(lt1, _mm512_mask_blend_epi64(lt2, t2[j], ti), t1[j]);
      b1[j] = _mm512_mask_blend_pd(lt1, b1[j], k);
      t1[j] = _mm512_mask_blend_epi64(lt1, t1[j], ti);
    }
  }
  for (int j = 0; j < NV; ++j) {
    const std::size_t i = r + static_cast<std::size_t>(f0 + 8 * j);
    _mm512_storeu_pd(front_.data() + i, b1[j]);
    _mm512_storeu_pd(second_.data() + i, b2[j]);
    _mm512_storeu_si512(front_tok_.data() + i, t1[j]);
    _mm512_storeu_si512(second_tok_.data() + i, t2[j]);
  }
}
#endif

// The best kBuf tokens of e for arc e -> f, from every token now at e. Keys
// first, in a loop of independent loads (the rows are scattered over the batch),
// then the selection over that dense scratch.
void SspAssigner::rescan(int e, int f) {
  Arc& a = arc_[static_cast<std::size_t>(e) * static_cast<std::size_t>(E_) + static_cast<std::size_t>(f)];
  const auto& m = members_[static_cast<std::size_t>(e)];
  const std::size_t n = m.size();
  scratch_.resize(n);
  const float* col = v_ + f;
  const auto nE = static_cast<std::size_t>(E_);
  for (std::size_t i = 0; i < n; ++i) {
    const auto t = static_cast<std::size_t>(m[i]);
    scratch_[i] = static_cast<double>(own_[t]) - static_cast<double>(col[t * nE]);
  }
  a.n = 0;
  a.bound = {kInf, std::numeric_limits<std::int32_t>::max()};
  for (std::size_t i = 0; i < n; ++i) {
    const double k = scratch_[i];
    const std::int32_t t = m[i];
    if (!(k < kInf) || (a.n == kBuf && !before(k, t, a.c[kBuf - 1].key, a.c[kBuf - 1].tok))) continue;
    insert(a, k, t, kBuf);
  }
  // A full buffer may have left tokens out: its last one bounds them.
  if (a.n == kBuf) a.bound = a.c[kBuf - 1];
}

// The front of arc e -> f left e: the next buffered token still at e, or a rescan.
void SspAssigner::refresh_front(int e, int f) {
  const std::size_t i = static_cast<std::size_t>(e) * static_cast<std::size_t>(E_) + static_cast<std::size_t>(f);
  Arc& a = arc_[i];
  int s = 1;
  while (s < a.n && loc_[static_cast<std::size_t>(a.c[s].tok)] != e) ++s;
  std::copy(a.c + s, a.c + a.n, a.c);
  a.n -= std::min(s, a.n);
  if (a.n == 0) rescan(e, f);
  front_[i] = a.n ? a.c[0].key : kInf;
  front_tok_[i] = a.n ? a.c[0].tok : -1;
}

void SspAssigner::leave(std::int32_t t, int e) {
  auto& m = members_[static_cast<std::size_t>(e)];
  const std::int32_t p = pos_[static_cast<std::size_t>(t)];
  m[static_cast<std::size_t>(p)] = m.back();
  pos_[static_cast<std::size_t>(m.back())] = p;
  m.pop_back();
  --excess_[static_cast<std::size_t>(e)];
  loc_[static_cast<std::size_t>(t)] = -1;
  const std::int64_t* ft = front_tok_.data() + static_cast<std::size_t>(e) * static_cast<std::size_t>(E_);
  for (int f = 0; f < E_; ++f)
    if (ft[f] == t) refresh_front(e, f);
}

// t joins f: it enters the buffer of every arc f -> g it would rank in.
void SspAssigner::enter(std::int32_t t, int f) {
  auto& m = members_[static_cast<std::size_t>(f)];
  pos_[static_cast<std::size_t>(t)] = static_cast<std::int32_t>(m.size());
  m.push_back(t);
  ++excess_[static_cast<std::size_t>(f)];
  loc_[static_cast<std::size_t>(t)] = f;
  own_[static_cast<std::size_t>(t)] = v_[static_cast<std::size_t>(t) * static_cast<std::size_t>(E_) + static_cast<std::size_t>(f)];
  const auto nE = static_cast<std::size_t>(E_);
  for (int g = 0; g < E_; ++g) {
    if (g == f) continue;
    const double k = key(t, f, g);
    const std::size_t i = static_cast<std::size_t>(f) * nE + static_cast<std::size_t>(g);
    Arc& a = arc_[i];
    if (!(k < kInf) || !before(k, t, a.bound.key, a.bound.tok)) continue;
    bool present = false;  // it left f earlier and its stale entry is still buffered
    for (int j = 0; j < a.n; ++j) present |= a.c[j].tok == t;
    if (present) continue;  // same key as before, already in place
    insert(a, k, t, kBuf);
    front_[i] = a.c[0].key;
    front_tok_[i] = a.c[0].tok;
  }
}

// Dense Dijkstra from every over-full expert to the nearest under-full one on
// the reduced costs; updates the potentials and leaves the tree in pred_.
// tent_ holds the tentative distance of an unsettled expert and -inf once it is
// settled (dist_ keeps its final distance), so both scans are branch-free.
int SspAssigner::shortest_path() {
  const int E = E_;
  const auto nE = static_cast<std::size_t>(E);
  dist_.resize(nE);
  tent_.resize(nE);
  pred_.assign(nE, -1);
  double* tent = tent_.data();
  std::int64_t* pred = pred_.data();
  const double* pi = pi_.data();
  // Every over-full expert is a source at distance 0: all settled at once, their
  // arcs relaxed in one pass each (in index order, so ties keep the lower source).
  std::fill(tent_.begin(), tent_.end(), kInf);
  for (std::size_t s = 0; s < nE; ++s) {
    if (excess_[s] <= 0) continue;
    const double ps = pi[s];
    const double* row = front_.data() + s * nE;
    const auto si = static_cast<std::int64_t>(s);
    for (std::size_t f = 0; f < nE; ++f) {
      const double nd = std::max(0.0, row[f] + ps - pi[f]);
      const bool lt = nd < tent[f];
      tent[f] = lt ? nd : tent[f];
      pred[f] = lt ? si : pred[f];
    }
  }
  for (std::size_t s = 0; s < nE; ++s)
    if (excess_[s] > 0) dist_[s] = 0.0, tent[s] = -kInf, pred[s] = -1;
  int target = -1;
  for (int it = 0; it < E; ++it) {
    double best = kInf;
    for (std::size_t e = 0; e < nE; ++e) best = std::min(best, tent[e] > -kInf ? tent[e] : kInf);
    if (!(best < kInf)) break;
    std::size_t u = 0;
    while (tent[u] != best) ++u;  // the lowest index at the minimum
    dist_[u] = best;
    tent[u] = -kInf;
    if (excess_[u] < 0) {
      target = static_cast<int>(u);
      break;
    }
    const double base = best, pu = pi[u];
    const double* row = front_.data() + u * nE;
    const auto ui = static_cast<std::int64_t>(u);
    for (std::size_t f = 0; f < nE; ++f) {
      // Reduced costs are >= 0; the clamp only drops the potentials' rounding.
      const double nd = base + std::max(0.0, row[f] + pu - pi[f]);
      const bool lt = nd < tent[f];
      tent[f] = lt ? nd : tent[f];
      pred[f] = lt ? ui : pred[f];
    }
  }
  if (target < 0)
    throw Error("balanced assignment: no under-full expert is reachable, so no balanced assignment exists "
                "(this is a bug when every token has enough experts left)");
  const double D = dist_[static_cast<std::size_t>(target)];
  // Settled experts move by their distance, every other one by D.
  for (std::size_t e = 0; e < nE; ++e) pi_[e] += tent[e] == -kInf ? dist_[e] : D;
  return target;
}

void SspAssigner::assign(const float* values, int T, int E, int cap, std::int32_t* owner) {
  if (static_cast<std::int64_t>(E) * cap != T)
    throw Error("balanced assignment: T=" + std::to_string(T) + " is not E*cap=" + std::to_string(E) + "*" +
                std::to_string(cap));
  v_ = values;
  E_ = E;
  init(T, E);
  std::int64_t moves = 0;
  for (auto x : excess_) moves += std::max<std::int64_t>(x, 0);
  std::vector<std::int32_t> path;
  for (std::int64_t n = 0; n < moves; ++n) {
    const int target = shortest_path();
    // Tokens first, moves after: a token moved into an expert could otherwise
    // become the front of the path's next arc.
    path.clear();
    for (int f = target; pred_[static_cast<std::size_t>(f)] >= 0; f = static_cast<int>(pred_[static_cast<std::size_t>(f)])) {
      const int u = static_cast<int>(pred_[static_cast<std::size_t>(f)]);
      path.push_back(static_cast<std::int32_t>(front_tok_[static_cast<std::size_t>(u) * static_cast<std::size_t>(E) + static_cast<std::size_t>(f)]));
      path.push_back(u);
      path.push_back(f);
    }
    for (std::size_t i = 0; i < path.size(); i += 3) {
      leave(path[i], path[i + 1]);
      enter(path[i], path[i + 2]);
    }
  }
  std::copy(loc_.begin(), loc_.end(), owner);
}

}  // namespace moesim
