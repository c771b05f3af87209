#include "trace/trace.hpp"

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/json.hpp"
#include "common/text.hpp"

namespace moesim {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "moesim-router-trace-1";

long whole_member(const JsonValue& e, const char* key, long lo, long hi, const std::string& where) {
  const JsonValue* v = e.find(key);
  long x = 0;
  if (!v || !v->is(JsonValue::Type::Number) || !parse_int(v->text, x) || x < lo || x > hi)
    throw Error(where + ": '" + key + "' must be a whole number in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return x;
}

std::string text_member(const JsonValue& e, const char* key, const std::string& where) {
  const JsonValue* v = e.find(key);
  if (!v || !v->is(JsonValue::Type::String)) throw Error(where + ": '" + key + "' must be a string");
  return v->text;
}

}  // namespace

TraceWriter::TraceWriter(std::string dir) : dir_(std::move(dir)) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw Error(dir_ + ": cannot create trace directory: " + ec.message());
  load_manifest();
}

const std::vector<std::string>& trace_kinds() {
  static const std::vector<std::string> k = {"gate_logits", "choice", "served", "counts", "expert_perf", "token_ids"};
  return k;
}

void TraceWriter::add(int layer, long step, const std::string& file, const std::string& kind, const std::string& bytes,
                      std::vector<std::int64_t> shape) {
  write_file_atomic((fs::path(dir_) / file).string(), bytes);
  std::erase_if(entries_, [&](const TraceEntry& e) { return e.file == file; });
  entries_.push_back({layer, step, file, kind, std::move(shape)});
}

void TraceWriter::record_logits(int layer, long step, const float* logits, std::int64_t tokens, std::int64_t experts) {
  const std::string file = "layer" + std::to_string(layer) + "_step" + std::to_string(step) + ".npy";
  add(layer, step, file, "gate_logits", npy_bytes(logits, {tokens, experts}), {tokens, experts});
}

void TraceWriter::record_tokens(long step, const std::int64_t* ids, std::int64_t tokens) {
  add(-1, step, "tokens_step" + std::to_string(step) + ".npy", "token_ids", npy_bytes(ids, {tokens}), {tokens});
}

void TraceWriter::record_routing(int layer, long step, const Assignment& a, const float* slot_perf) {
  const std::string stem = "layer" + std::to_string(layer) + "_step" + std::to_string(step);
  const std::int64_t T = a.tokens, w = a.width, E = a.experts;
  add(layer, step, stem + "_choice.npy", "choice", npy_bytes(a.requested.data(), {T, w}), {T, w});
  add(layer, step, stem + "_served.npy", "served", npy_bytes(a.expert.data(), {T, w}), {T, w});
  std::vector<std::int64_t> counts(static_cast<std::size_t>(2 * E), 0);
  std::vector<double> perf_sum(static_cast<std::size_t>(E), 0.0);
  for (std::size_t s = 0; s < a.expert.size(); ++s) {
    if (a.requested[s] >= 0 && a.expert[s] < 0) ++counts[static_cast<std::size_t>(E + a.requested[s])];
    if (a.expert[s] < 0) continue;
    ++counts[static_cast<std::size_t>(a.expert[s])];
    perf_sum[static_cast<std::size_t>(a.expert[s])] += slot_perf[s];
  }
  add(layer, step, stem + "_counts.npy", "counts", npy_bytes(counts.data(), {2, E}), {2, E});
  std::vector<float> perf(static_cast<std::size_t>(E));
  for (std::int64_t e = 0; e < E; ++e)
    perf[e] = counts[e] > 0 ? static_cast<float>(perf_sum[e] / static_cast<double>(counts[e]))
                            : std::numeric_limits<float>::quiet_NaN();
  add(layer, step, stem + "_perf.npy", "expert_perf", npy_bytes(perf.data(), {E}), {E});
}

void TraceWriter::truncate_after(long step) {
  std::erase_if(entries_, [&](const TraceEntry& e) { return e.step > step; });
  write_manifest();
}

void TraceWriter::write_manifest() const {
  std::ostringstream os;
  os << "{\n  \"format\": \"" << kFormat << "\",\n  \"entries\": [";
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const auto& e = entries_[i];
    os << (i ? ",\n    " : "\n    ") << "{\"layer\": " << e.layer << ", \"step\": " << e.step << ", \"kind\": \""
       << e.kind << "\", \"file\": " << json_string(e.file) << ", \"shape\": [";
    for (std::size_t d = 0; d < e.shape.size(); ++d) os << (d ? ", " : "") << e.shape[d];
    os << "]}";
  }
  os << "\n  ]\n}\n";
  write_file_atomic((fs::path(dir_) / "manifest.json").string(), os.str());
}

void TraceWriter::load_manifest() {
  const auto path = (fs::path(dir_) / "manifest.json").string();
  std::error_code ec;
  if (!fs::exists(path, ec)) return;
  entries_ = parse_trace_manifest(read_file(path), path);
}

std::vector<TraceEntry> parse_trace_manifest(std::string_view text, const std::string& path) {
  const JsonValue doc = parse_json(text, path);
  const JsonValue* format = doc.find("format");
  const JsonValue* entries = doc.find("entries");
  if (!doc.is(JsonValue::Type::Object) || !format || !format->is(JsonValue::Type::String) || format->text != kFormat ||
      !entries || !entries->is(JsonValue::Type::Array))
    throw Error(path + ": not a " + kFormat + " manifest (move it away, or delete the traces folder, to record anew)");
  std::vector<TraceEntry> loaded;
  for (std::size_t i = 0; i < entries->items.size(); ++i) {
    const JsonValue& e = entries->items[i];
    const std::string where = path + ": entry " + std::to_string(i + 1);
    if (!e.is(JsonValue::Type::Object)) throw Error(where + ": expected an object");
    TraceEntry t;
    t.layer = static_cast<int>(whole_member(e, "layer", -1, 1 << 20, where));
    t.step = whole_member(e, "step", 0, 1L << 50, where);
    t.kind = text_member(e, "kind", where);
    t.file = text_member(e, "file", where);
    const auto& kinds = trace_kinds();
    if (std::find(kinds.begin(), kinds.end(), t.kind) == kinds.end())
      throw Error(where + ": unknown kind '" + t.kind + "'");
    if (t.file.empty() || t.file.find('/') != std::string::npos || t.file == "." || t.file == "..")
      throw Error(where + ": 'file' must name a file in the traces folder");
    const JsonValue* shape = e.find("shape");
    if (!shape || !shape->is(JsonValue::Type::Array) || shape->items.size() > 8)
      throw Error(where + ": 'shape' must be a list of at most 8 sizes");
    for (const auto& d : shape->items) {
      long x = 0;
      if (!d.is(JsonValue::Type::Number) || !parse_int(d.text, x) || x < 0 || x > (1L << 40))
        throw Error(where + ": 'shape' holds a size that is not a whole number in [0, 2^40]");
      t.shape.push_back(x);
    }
    loaded.push_back(std::move(t));
  }
  return loaded;
}

}  // namespace moesim
