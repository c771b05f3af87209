#include "trace/trace_reader.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>
#include <type_traits>

#include "common/error.hpp"
#include "common/files.hpp"

namespace moesim {

namespace fs = std::filesystem;

namespace {

std::string shape_text(const std::vector<std::int64_t>& s) {
  std::string t = "(";
  for (std::size_t i = 0; i < s.size(); ++i) t += (i ? ", " : "") + std::to_string(s[i]);
  return t + (s.size() == 1 ? ",)" : ")");
}

// Refuses the first non-finite logit, naming where it is. The scan tests the
// exponent bits (all ones: NaN or infinity), which the compiler vectorises.
void check_finite(const std::vector<float>& x, int experts, const std::string& file, long step) {
  std::uint32_t any = 0;
  const std::size_t n = x.size();
  for (std::size_t i = 0; i < n; ++i) {
    std::uint32_t u;
    std::memcpy(&u, &x[i], 4);
    any |= static_cast<std::uint32_t>((u & 0x7f800000u) == 0x7f800000u);
  }
  if (!any) return;
  for (std::size_t i = 0; i < x.size(); ++i)
    if (!std::isfinite(x[i]))
      throw Error(file + ": " + (std::isnan(x[i]) ? "NaN" : "infinite") + " logit at step " + std::to_string(step) +
                  ", token " + std::to_string(i / experts) + ", expert " + std::to_string(i % experts));
}

constexpr std::int64_t kMaxDim = std::int64_t{1} << 30;

}  // namespace

TraceReader::TraceReader(const std::string& path, const std::string& tokens, const std::vector<int>& layers) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (!tokens.empty()) throw Error(path + ": a trace folder has its own token ids (stream.trace_tokens is for a plain .npy)");
    open_folder(path, layers);
  } else if (fs::is_regular_file(path, ec)) {
    for (int l : layers)
      if (l != 0) throw Error(path + ": a plain logits file has layer 0 only (asked for layer " + std::to_string(l) + ")");
    open_plain(path, tokens);
  } else {
    throw Error(path + ": no such trace (a folder with manifest.json, or a .npy of logits)");
  }
}

void TraceReader::open_plain(const std::string& file, const std::string& tokens) {
  plain_ = true;
  plain_file_ = file;
  const std::string bytes = read_file(file);  // the view points into it: no second copy of the file
  const NpyView a = parse_npy_view(bytes, file);
  if (a.shape.size() != 2 && a.shape.size() != 3)
    throw Error(file + ": logits of shape " + shape_text(a.shape) + "; expected (tokens, E) or (steps, tokens, E)");
  const std::int64_t S = a.shape.size() == 3 ? a.shape[0] : 1, T = a.shape[a.shape.size() - 2],
                     E = a.shape.back();
  if (S < 1 || T < 1 || E < 1 || T > kMaxDim || E > (1 << 16))
    throw Error(file + ": logits of shape " + shape_text(a.shape) + ": every size must be at least 1 (E at most 65536)");
  try {
    a.to_float(plain_logits_);
  } catch (const Error& e) {
    throw Error(file + ": " + e.what());
  }
  tokens_ = static_cast<int>(T);
  experts_ = static_cast<int>(E);
  layer_ids_ = {0};
  for (long s = 1; s <= S; ++s) steps_.push_back(s);
  for (std::int64_t s = 0; s < S; ++s) {
    const auto first = plain_logits_.begin() + s * T * E;
    if (auto bad = std::find_if(first, first + T * E, [](float v) { return !std::isfinite(v); }); bad != first + T * E) {
      const auto i = bad - first;
      throw Error(file + ": " + (std::isnan(*bad) ? "NaN" : "infinite") + " logit at step " + std::to_string(s + 1) +
                  ", token " + std::to_string(i / E) + ", expert " + std::to_string(i % E));
    }
  }
  if (tokens.empty()) return;
  plain_tokens_file_ = tokens;
  const NpyArray ids = read_npy(tokens);
  const bool ok = (S == 1 && ids.shape == std::vector<std::int64_t>{T}) || ids.shape == std::vector<std::int64_t>{S, T};
  if (!ok)
    throw Error(tokens + ": token ids of shape " + shape_text(ids.shape) + " for logits of shape " + shape_text(a.shape) +
                "; expected " + (S == 1 ? "(" + std::to_string(T) + ",) or " : std::string()) + "(" + std::to_string(S) +
                ", " + std::to_string(T) + ")");
  try {
    plain_ids_ = ids.as_int64();
  } catch (const Error& e) {
    throw Error(tokens + ": " + e.what());
  }
  has_tokens_ = true;
}

void TraceReader::open_folder(const std::string& dir, const std::vector<int>& layers) {
  dir_ = dir;
  const auto manifest = (fs::path(dir) / "manifest.json").string();
  std::error_code ec;
  if (!fs::exists(manifest, ec)) throw Error(manifest + ": no such file (not a moesim trace folder)");
  entries_ = parse_trace_manifest(read_file(manifest), manifest);
  for (std::size_t i = 0; i < entries_.size(); ++i) index_[{entries_[i].layer, entries_[i].step, entries_[i].kind}] = i;
  std::map<int, std::set<long>> logit_steps;
  for (const auto& e : entries_)
    if (e.kind == "gate_logits") logit_steps[e.layer].insert(e.step);
  if (logit_steps.empty()) throw Error(manifest + ": records no gate logits");
  if (layers.empty()) {
    for (const auto& [l, s] : logit_steps) layer_ids_.push_back(l);
  } else {
    for (int l : layers) {
      if (!logit_steps.count(l)) {
        std::string have;
        for (const auto& [r, s] : logit_steps) have += (have.empty() ? "" : ", ") + std::to_string(r);
        throw Error(manifest + ": no layer " + std::to_string(l) + " recorded (recorded layers: " + have + ")");
      }
      layer_ids_.push_back(l);
    }
  }
  const auto& first = logit_steps[layer_ids_[0]];
  for (int l : layer_ids_)
    if (logit_steps[l] != first)
      throw Error(manifest + ": layers " + std::to_string(layer_ids_[0]) + " and " + std::to_string(l) +
                  " record different steps");
  steps_.assign(first.begin(), first.end());
  for (int l : layer_ids_)
    for (long s : steps_) {
      const TraceEntry& e = entry(l, s, "gate_logits");
      const std::string file = (fs::path(dir) / e.file).string();
      if (e.shape.size() != 2 || e.shape[0] < 1 || e.shape[1] < 1 || e.shape[0] > kMaxDim || e.shape[1] > (1 << 16))
        throw Error(file + ": manifest shape " + shape_text(e.shape) + "; gate logits are (tokens, E)");
      if (!fs::exists(file, ec)) throw Error(file + ": no such file (listed in " + manifest + ")");
      if (tokens_ == 0) {
        tokens_ = static_cast<int>(e.shape[0]);
        experts_ = static_cast<int>(e.shape[1]);
      }
      if (e.shape[1] != experts_)
        throw Error(file + ": " + std::to_string(e.shape[1]) + " experts where layer " + std::to_string(layer_ids_[0]) +
                    " has " + std::to_string(experts_) + " (every replayed layer must have the same E)");
      if (e.shape[0] != tokens_)
        throw Error(file + ": " + std::to_string(e.shape[0]) + " tokens where the first step has " +
                    std::to_string(tokens_) + " (every step must route the same number of tokens)");
    }
  auto has = [&](int layer, long step, const char* kind) { return index_.count({layer, step, kind}) > 0; };
  // Token ids and performance are all or nothing: a partial record would switch
  // hash routing or the feedback rule silently from one step to the next.
  auto all_or_none = [&](int layer, const char* kind) {
    std::size_t n = 0;
    long missing = -1;
    for (long s : steps_) {
      if (has(layer, s, kind)) ++n;
      else if (missing < 0) missing = s;
    }
    if (n > 0 && n < steps_.size())
      throw Error(manifest + ": " + kind + " recorded for some steps but not for step " + std::to_string(missing) +
                  (layer >= 0 ? " of layer " + std::to_string(layer) : std::string()));
    return n == steps_.size();
  };
  has_tokens_ = all_or_none(-1, "token_ids");
  has_perf_ = true;
  for (int l : layer_ids_) has_perf_ = all_or_none(l, "expert_perf") && has_perf_;
}

const TraceEntry& TraceReader::entry(int layer, long step, const std::string& kind) const {
  if (auto it = index_.find({layer, step, kind}); it != index_.end()) return entries_[it->second];
  throw Error(dir_ + "/manifest.json: no " + kind + " for layer " + std::to_string(layer) + ", step " +
              std::to_string(step));
}

template <class T>
void TraceReader::read(const TraceEntry& e, std::vector<T>& out) const {
  const std::string file = (fs::path(dir_) / e.file).string();
  // Mapped, not read: a read() copies the page cache into a buffer (a third of a
  // replayed step at E = 64, T = 4096) before to_float copies it again. Traces
  // are replaced by rename, never rewritten in place, so the mapping stays whole.
  const MappedFile map(file);
  const NpyView v = parse_npy_view(map.bytes(), file);
  if (v.shape != e.shape)
    throw Error(file + ": shape " + shape_text(v.shape) + " where the manifest says " + shape_text(e.shape));
  try {
    if constexpr (std::is_same_v<T, float>) v.to_float(out);
    else v.to_int64(out);
  } catch (const Error& err) {
    throw Error(file + ": " + err.what());
  }
}

void TraceReader::logits(int l, std::int64_t i, std::vector<float>& out) const {
  const std::size_t n = static_cast<std::size_t>(tokens_) * static_cast<std::size_t>(experts_);
  if (plain_) {
    out.assign(plain_logits_.begin() + static_cast<std::ptrdiff_t>(i * n), plain_logits_.begin() + static_cast<std::ptrdiff_t>((i + 1) * n));
    return;
  }
  const TraceEntry& e = entry(layer_ids_[l], steps_[i], "gate_logits");
  read(e, out);
  check_finite(out, experts_, (fs::path(dir_) / e.file).string(), steps_[i]);
}

void TraceReader::token_ids(std::int64_t i, std::vector<std::int64_t>& out) const {
  if (!has_tokens_) throw Error((plain_ ? plain_file_ : dir_) + ": the trace has no token ids");
  if (plain_) {
    out.assign(plain_ids_.begin() + i * tokens_, plain_ids_.begin() + (i + 1) * tokens_);
    return;
  }
  const TraceEntry& e = entry(-1, steps_[i], "token_ids");
  read(e, out);
  if (static_cast<int>(out.size()) != tokens_)
    throw Error((fs::path(dir_) / e.file).string() + ": " + std::to_string(out.size()) + " token ids for " +
                std::to_string(tokens_) + " tokens");
}

void TraceReader::expert_perf(int l, std::int64_t i, std::vector<float>& out) const {
  if (!has_perf_) throw Error((plain_ ? plain_file_ : dir_) + ": the trace has no per-expert performance");
  const TraceEntry& e = entry(layer_ids_[l], steps_[i], "expert_perf");
  read(e, out);
  if (static_cast<int>(out.size()) != experts_)
    throw Error((fs::path(dir_) / e.file).string() + ": " + std::to_string(out.size()) + " values for " +
                std::to_string(experts_) + " experts");
}

}  // namespace moesim
