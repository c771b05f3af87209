#include "torch_backend/npy.hpp"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include "policies/types.hpp"
#include "torch_backend/corpus.hpp"

namespace moesim::torch_backend {

namespace fs = std::filesystem;

namespace {

std::string npy_raw(const char* descr, const void* data, std::size_t elem, const std::vector<std::int64_t>& shape) {
  std::string dict = std::string("{'descr': '") + descr + "', 'fortran_order': False, 'shape': (";
  std::size_t n = 1;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    dict += std::to_string(shape[i]);
    if (shape.size() == 1 || i + 1 < shape.size()) dict += ",";
    if (i + 1 < shape.size()) dict += " ";
    n *= static_cast<std::size_t>(shape[i]);
  }
  dict += "), }";
  // magic(6) + version(2) + header length(2) + dict + padding + '\n' = multiple of 64.
  std::size_t total = 10 + dict.size() + 1;
  const std::size_t pad = (64 - total % 64) % 64;
  dict.append(pad, ' ');
  dict += '\n';
  const auto hlen = static_cast<std::uint16_t>(dict.size());
  std::string out("\x93NUMPY", 6);
  out += '\x01';
  out += '\x00';
  out += static_cast<char>(hlen & 0xff);
  out += static_cast<char>(hlen >> 8);
  out += dict;
  out.append(static_cast<const char*>(data), n * elem);
  return out;
}

std::string json_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') o += '\\';
    o += c;
  }
  return o;
}

}  // namespace

// x86-64 is little-endian, which is what '<f4' and '<i8' promise.
std::string npy_bytes(const float* data, const std::vector<std::int64_t>& shape) {
  return npy_raw("<f4", data, sizeof(float), shape);
}
std::string npy_bytes(const std::int64_t* data, const std::vector<std::int64_t>& shape) {
  return npy_raw("<i8", data, sizeof(std::int64_t), shape);
}

TraceWriter::TraceWriter(std::string dir) : dir_(std::move(dir)) {
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec) throw Error(dir_ + ": cannot create trace directory: " + ec.message());
  load_manifest();
}

void TraceWriter::record_logits(int layer, long step, const float* logits, std::int64_t tokens, std::int64_t experts) {
  const std::string file = "layer" + std::to_string(layer) + "_step" + std::to_string(step) + ".npy";
  write_file_atomic((fs::path(dir_) / file).string(), npy_bytes(logits, {tokens, experts}));
  std::erase_if(entries_, [&](const TraceEntry& e) { return e.file == file; });
  entries_.push_back({layer, step, file, "gate_logits", {tokens, experts}});
  write_manifest();
}

void TraceWriter::record_tokens(long step, const std::int64_t* ids, std::int64_t tokens) {
  const std::string file = "tokens_step" + std::to_string(step) + ".npy";
  write_file_atomic((fs::path(dir_) / file).string(), npy_bytes(ids, {tokens}));
  std::erase_if(entries_, [&](const TraceEntry& e) { return e.file == file; });
  entries_.push_back({-1, step, file, "token_ids", {tokens}});
  write_manifest();
}

void TraceWriter::truncate_after(long step) {
  std::erase_if(entries_, [&](const TraceEntry& e) { return e.step > step; });
  write_manifest();
}

void TraceWriter::write_manifest() const {
  std::ostringstream os;
  os << "{\n  \"format\": \"moesim-router-trace-1\",\n  \"entries\": [";
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const auto& e = entries_[i];
    os << (i ? ",\n    " : "\n    ") << "{\"layer\": " << e.layer << ", \"step\": " << e.step << ", \"kind\": \""
       << e.kind << "\", \"file\": \"" << json_escape(e.file) << "\", \"shape\": [";
    for (std::size_t d = 0; d < e.shape.size(); ++d) os << (d ? ", " : "") << e.shape[d];
    os << "]}";
  }
  os << "\n  ]\n}\n";
  write_file_atomic((fs::path(dir_) / "manifest.json").string(), os.str());
}

void TraceWriter::load_manifest() {
  const auto path = fs::path(dir_) / "manifest.json";
  if (!fs::exists(path)) return;
  std::ifstream in(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  // Only our own writer produces this file, one entry per line.
  static const std::regex re(
      R"re(\{"layer": (-?\d+), "step": (\d+), "kind": "([a-z_]+)", "file": "([^"]+)", "shape": \[([0-9, ]*)\]\})re");
  const std::string text = ss.str();
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re); it != std::sregex_iterator(); ++it) {
    TraceEntry e;
    e.layer = std::stoi((*it)[1]);
    e.step = std::stol((*it)[2]);
    e.kind = (*it)[3];
    e.file = (*it)[4];
    std::istringstream dims((*it)[5]);
    std::string d;
    while (std::getline(dims, d, ','))
      if (d.find_first_not_of(' ') != std::string::npos) e.shape.push_back(std::stoll(d));
    entries_.push_back(std::move(e));
  }
}

}  // namespace moesim::torch_backend
