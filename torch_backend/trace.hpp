#pragma once
// Router traces: per MoE layer and recorded step, the gate logits and the token
// ids as NPY files (common/npy.hpp), indexed by traces/manifest.json, so that
// numpy.load and json.load read everything with no custom code.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "common/npy.hpp"

namespace moesim::torch_backend {

struct TraceEntry {
  int layer = 0;
  long step = 0;
  std::string file;   // relative to the manifest's directory
  std::string kind;   // "gate_logits" or "token_ids"
  std::vector<std::int64_t> shape;
};

// The entries of a manifest's text, checked strictly (Error naming `source`).
std::vector<TraceEntry> parse_trace_manifest(std::string_view text, const std::string& source);

// Records gate logits per layer and step into dir/, keeping dir/manifest.json
// up to date (rewritten atomically after every record). An existing manifest is
// read strictly: one that is not a moesim router-trace manifest is refused with
// an Error naming it, rather than overwritten (which would orphan its files).
class TraceWriter {
 public:
  explicit TraceWriter(std::string dir);
  void record_logits(int layer, long step, const float* logits, std::int64_t tokens, std::int64_t experts);
  void record_tokens(long step, const std::int64_t* ids, std::int64_t tokens);
  // Drops entries after `step` (a resumed run re-records them).
  void truncate_after(long step);
  const std::vector<TraceEntry>& entries() const { return entries_; }
  const std::string& dir() const { return dir_; }

 private:
  void load_manifest();
  void write_manifest() const;
  std::string dir_;
  std::vector<TraceEntry> entries_;
};

}  // namespace moesim::torch_backend
