#pragma once
// Recorded streams for replay: a moesim trace folder (trace/trace.hpp, read
// through its manifest.json) or a plain logits file from any framework, a
// float .npy of shape (tokens, E) or (steps, tokens, E) with an optional
// integer token-id .npy of shape (tokens) or (steps, tokens).
// Everything is checked when it is opened or loaded, with an Error naming the
// file: a missing file, a shape that is not the manifest's or differs between
// steps, E that differs between layers, a truncated .npy, and a NaN or
// infinite logit (naming the recorded step, the token and the expert).
// Step files are loaded one at a time, so memory does not grow with the steps
// (a plain file is held whole: it is one array).
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <vector>

#include "common/npy.hpp"
#include "trace/trace.hpp"

namespace moesim {

class TraceReader {
 public:
  // path: a trace folder or a .npy file; tokens: an optional token-id .npy for
  // a plain file ("" = none); layers: recorded layer numbers to replay (empty =
  // every recorded layer; a plain file has layer 0 only).
  TraceReader(const std::string& path, const std::string& tokens, const std::vector<int>& layers);

  int layers() const { return static_cast<int>(layer_ids_.size()); }
  const std::vector<int>& layer_ids() const { return layer_ids_; }
  std::int64_t steps() const { return static_cast<std::int64_t>(steps_.size()); }
  // The recorded step of each replayed step: training steps (1-based) for a
  // trace folder, 1..steps for a plain file.
  const std::vector<long>& recorded_steps() const { return steps_; }
  int tokens() const { return tokens_; }
  int experts() const { return experts_; }
  bool has_token_ids() const { return has_tokens_; }
  bool has_perf() const { return has_perf_; }  // expert_perf recorded for every layer and step

  // Replayed step i (0-based) of the l-th selected layer: tokens x experts logits.
  void logits(int l, std::int64_t i, std::vector<float>& out) const;
  void token_ids(std::int64_t i, std::vector<std::int64_t>& out) const;
  // Per expert: the mean performance the recording's policy observed (NaN: served nothing).
  void expert_perf(int l, std::int64_t i, std::vector<float>& out) const;

 private:
  void open_folder(const std::string& dir, const std::vector<int>& layers);
  void open_plain(const std::string& file, const std::string& tokens);
  const TraceEntry& entry(int layer, long step, const std::string& kind) const;
  // The entry's file, mapped, checked against the manifest's shape and
  // converted into out (float or int64); every Error names the file.
  template <class T>
  void read(const TraceEntry& e, std::vector<T>& out) const;

  std::string dir_;
  std::vector<TraceEntry> entries_;
  std::map<std::tuple<int, long, std::string>, std::size_t> index_;  // (layer, step, kind) -> entry
  std::vector<int> layer_ids_;
  std::vector<long> steps_;
  int tokens_ = 0, experts_ = 0;
  bool has_tokens_ = false, has_perf_ = false;
  bool plain_ = false;
  std::string plain_file_, plain_tokens_file_;
  std::vector<float> plain_logits_;
  std::vector<std::int64_t> plain_ids_;
};

}  // namespace moesim
