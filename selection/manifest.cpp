#include "selection/manifest.hpp"

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/hash.hpp"
#include "common/json.hpp"

namespace moesim::selection {

namespace fs = std::filesystem;

std::string file_digest(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot be read");
  std::uint64_t h = kFnvOffset;
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    h = fnv1a_bytes(buf.data(), static_cast<std::size_t>(in.gcount()), h);
  }
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

std::string manifest_path(const std::string& stage_dir) { return (fs::path(stage_dir) / "manifest.json").string(); }

namespace {

std::string object(const std::vector<std::pair<std::string, std::string>>& kv) {
  std::string s = "{";
  for (std::size_t i = 0; i < kv.size(); ++i) s += (i ? ", " : "") + json_string(kv[i].first) + ": " + json_string(kv[i].second);
  return s + "}";
}

std::vector<std::pair<std::string, std::string>> pairs(const JsonValue* v, const std::string& where) {
  if (!v || !v->is(JsonValue::Type::Object)) throw Error(where + ": expected an object");
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [k, x] : v->members) {
    if (!x.is(JsonValue::Type::String)) throw Error(where + ": \"" + k + "\" is not a string");
    out.emplace_back(k, x.text);
  }
  return out;
}

}  // namespace

void write_manifest(const std::string& stage_dir, const Manifest& m) {
  std::string s = "{\"stage\": " + json_string(m.stage) + ",\n \"config\": " + object(m.config) + ",\n \"inputs\": " +
                  object({m.inputs.begin(), m.inputs.end()}) + ",\n \"outputs\": " + object({m.outputs.begin(), m.outputs.end()}) + "}\n";
  write_file_atomic(manifest_path(stage_dir), s);
}

Manifest read_manifest(const std::string& stage_dir) {
  const auto path = manifest_path(stage_dir);
  if (!fs::exists(path)) throw Error(path + ": no such manifest");
  const auto v = parse_json(read_file(path), path);
  const auto* stage = v.find("stage");
  if (!stage || !stage->is(JsonValue::Type::String)) throw Error(path + ": no \"stage\"");
  Manifest m;
  m.stage = stage->text;
  m.config = pairs(v.find("config"), path + " (config)");
  for (const auto& [k, d] : pairs(v.find("inputs"), path + " (inputs)")) m.inputs[k] = d;
  for (const auto& [k, d] : pairs(v.find("outputs"), path + " (outputs)")) m.outputs[k] = d;
  return m;
}

void require_output(const std::string& producer_dir, const std::string& producer, const std::string& path) {
  const std::string redo = "; rerun `moesim select " + producer + "`";
  if (!fs::exists(path)) throw Error(path + ": missing" + redo);
  if (!fs::exists(manifest_path(producer_dir)))
    throw Error(path + ": " + manifest_path(producer_dir) + " is missing, so this file is not a finished output of `select " + producer + "`" + redo);
  const auto m = read_manifest(producer_dir);
  const auto it = m.outputs.find(path);
  if (m.stage != producer || it == m.outputs.end())
    throw Error(path + ": not an output recorded by `select " + producer + "` in " + manifest_path(producer_dir) + redo);
  if (file_digest(path) != it->second)
    throw Error(path + ": stale: changed since `select " + producer + "` wrote it (digest " + file_digest(path) + ", recorded " +
                it->second + ")" + redo);
}

bool stage_current(const std::string& stage_dir, const std::vector<std::pair<std::string, std::string>>& config,
                   const std::vector<std::string>& inputs) {
  if (!fs::exists(manifest_path(stage_dir))) return false;
  Manifest m;
  try {
    m = read_manifest(stage_dir);
  } catch (const Error&) {
    return false;
  }
  if (m.config != config || m.inputs.size() != inputs.size()) return false;
  for (const auto& p : inputs) {
    const auto it = m.inputs.find(p);
    if (it == m.inputs.end() || !fs::exists(p) || file_digest(p) != it->second) return false;
  }
  for (const auto& [p, d] : m.outputs)
    if (!fs::exists(p) || file_digest(p) != d) return false;
  return true;
}

}  // namespace moesim::selection
