#pragma once
// NPY v1.0 files (NumPy's own format, written by hand so numpy.load reads them
// with no custom code) and the router-trace manifest that indexes them.
#include <cstdint>
#include <string>
#include <vector>

namespace moesim::torch_backend {

// The full file: magic, version 1.0, little-endian header length, the header dict
// padded with spaces and a newline to a multiple of 64 bytes, then the data.
std::string npy_bytes(const float* data, const std::vector<std::int64_t>& shape);
std::string npy_bytes(const std::int64_t* data, const std::vector<std::int64_t>& shape);

struct TraceEntry {
  int layer = 0;
  long step = 0;
  std::string file;   // relative to the manifest's directory
  std::string kind;   // "gate_logits" or "token_ids"
  std::vector<std::int64_t> shape;
};

// Records gate logits per layer and step into dir/, keeping dir/manifest.json
// up to date (rewritten atomically after every record).
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
