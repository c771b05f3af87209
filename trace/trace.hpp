#pragma once
// Router traces: per MoE layer and recorded step, what routing saw and did, as
// NPY files (common/npy.hpp) indexed by traces/manifest.json, so that numpy.load
// and json.load read everything with no custom code. Kinds, per layer and step:
//   gate_logits   layer<L>_step<S>.npy           (T, E) float32, the logits routed
//   choice        layer<L>_step<S>_choice.npy    (T, w) int32, experts the policy
//                                                asked for (-1: none), before capacity
//   served        layer<L>_step<S>_served.npy    (T, w) int32, after capacity (-1: dropped)
//   counts        layer<L>_step<S>_counts.npy    (2, E) int64: served slots, refused slots
//   expert_perf   layer<L>_step<S>_perf.npy      (E) float32: mean performance signal
//                                                the policy observed per expert (NaN:
//                                                the expert served nothing)
// and per step (layer -1): token_ids  tokens_step<S>.npy  (T) int64.
// Steps are 1-based optimizer steps. sim/ replays these (trace/trace_reader.hpp).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/npy.hpp"
#include "policies/types.hpp"

namespace moesim {

struct TraceEntry {
  int layer = 0;
  long step = 0;
  std::string file;   // relative to the manifest's directory
  std::string kind;   // gate_logits, choice, served, counts, expert_perf, token_ids
  std::vector<std::int64_t> shape;
};

// The entries of a manifest's text, checked strictly (Error naming `source`).
std::vector<TraceEntry> parse_trace_manifest(std::string_view text, const std::string& source);

// The manifest kinds, in the order a step's files are listed.
const std::vector<std::string>& trace_kinds();

// Records routing per layer and step into dir/; commit() rewrites
// dir/manifest.json atomically (after every recorded step: the manifest lists
// only files that are complete). An existing manifest is
// read strictly: one that is not a moesim router-trace manifest is refused with
// an Error naming it, rather than overwritten (which would orphan its files).
class TraceWriter {
 public:
  explicit TraceWriter(std::string dir);
  void record_logits(int layer, long step, const float* logits, std::int64_t tokens, std::int64_t experts);
  void record_tokens(long step, const std::int64_t* ids, std::int64_t tokens);
  // The policy's choices, counts and per-expert mean of slot_perf (per slot).
  void record_routing(int layer, long step, const Assignment& a, const float* slot_perf);
  void commit() const { write_manifest(); }
  // Drops entries after `step` (a resumed run re-records them).
  void truncate_after(long step);
  const std::vector<TraceEntry>& entries() const { return entries_; }
  const std::string& dir() const { return dir_; }

 private:
  void load_manifest();
  void write_manifest() const;
  void add(int layer, long step, const std::string& file, const std::string& kind, const std::string& bytes,
           std::vector<std::int64_t> shape);
  std::string dir_;
  std::vector<TraceEntry> entries_;
};

}  // namespace moesim
