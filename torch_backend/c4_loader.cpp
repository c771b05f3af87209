#include "torch_backend/c4_loader.hpp"

#include <zlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "policies/types.hpp"
#include "common/json.hpp"

namespace moesim::torch_backend {

namespace fs = std::filesystem;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string read_gzip(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw Error(path + ": cannot open");
  std::string out;
  std::vector<char> buf(1 << 16);
  while (true) {
    const int n = gzread(f, buf.data(), static_cast<unsigned>(buf.size()));
    if (n > 0) {
      out.append(buf.data(), static_cast<std::size_t>(n));
      continue;
    }
    int err = Z_OK;
    const char* msg = gzerror(f, &err);
    const std::string what = msg ? msg : "unknown zlib error";
    if (n < 0 || (err != Z_OK && err != Z_STREAM_END)) {
      gzclose(f);
      throw Error(path + ": truncated or corrupt gzip stream (" + what + ")");
    }
    break;
  }
  // gzread stops quietly at a truncated member on some zlib versions; gzclose_r reports it.
  const int rc = gzclose_r(f);
  if (rc == Z_BUF_ERROR) throw Error(path + ": truncated gzip stream (unexpected end of file)");
  if (rc != Z_OK) throw Error(path + ": corrupt gzip stream (zlib error " + std::to_string(rc) + ")");
  return out;
}

}  // namespace

std::string read_shard_bytes(const std::string& path) {
  if (!fs::exists(path)) throw Error(path + ": no such file");
  if (ends_with(path, ".gz")) return read_gzip(path);
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": read error");
  return ss.str();
}

bool parse_c4_line(std::string_view line, std::string& text, std::string& why) {
  JsonValue v;
  if (!try_parse_json(line, v, why)) return false;
  if (!v.is(JsonValue::Type::Object)) return why = std::string("expected a JSON object, got ") + to_string(v.type), false;
  const JsonValue* t = v.find("text");
  if (!t) return why = "no \"text\" field", false;
  if (!t->is(JsonValue::Type::String)) return why = "\"text\" is not a string", false;
  if (t->text.find('\0') != std::string::npos) return why = "\"text\" holds a NUL character (\\u0000)", false;
  text = t->text;
  return true;
}

void load_shard(const std::string& path, std::vector<std::string>& docs, LoadReport& report, std::int64_t max_docs) {
  const std::string bytes = read_shard_bytes(path);
  report.files.push_back(path);
  std::size_t pos = 0;
  long line_no = 0;
  int warned = 0;
  std::int64_t skipped_here = 0, docs_here = 0;
  std::string text, why;
  while (pos < bytes.size()) {
    if (max_docs > 0 && static_cast<std::int64_t>(docs.size()) >= max_docs) break;
    std::size_t nl = bytes.find('\n', pos);
    if (nl == std::string::npos) nl = bytes.size();
    std::string_view line(bytes.data() + pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    if (parse_c4_line(line, text, why)) {
      docs.push_back(std::move(text));
      ++docs_here;
      ++report.documents;
      continue;
    }
    ++report.skipped;
    ++skipped_here;
    if (warned < kMaxWarningsPerFile) {
      report.warnings.push_back(path + ":" + std::to_string(line_no) + ": skipped: " + why);
      ++warned;
    }
  }
  if (skipped_here > warned)
    report.warnings.push_back(path + ": skipped " + std::to_string(skipped_here) + " malformed lines in all");
  if (docs_here == 0 && skipped_here == 0 && !(max_docs > 0 && static_cast<std::int64_t>(docs.size()) >= max_docs))
    report.warnings.push_back(path + ": empty file, no documents");
}

std::vector<std::string> list_shards(const std::string& dir, const std::string& prefix) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw Error("data.dir '" + dir + "' is not a directory (run scripts/fetch_c4.sh or set data.dir=...)");
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    if (ends_with(name, ".json") || ends_with(name, ".jsonl") || ends_with(name, ".json.gz") || ends_with(name, ".jsonl.gz"))
      out.push_back(e.path().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> load_split(const std::string& dir, const std::string& prefix, LoadReport& report,
                                    std::int64_t max_docs) {
  const auto shards = list_shards(dir, prefix);
  if (shards.empty()) throw Error("data.dir '" + dir + "' has no " + prefix + "*.json[l][.gz] shards");
  std::vector<std::string> docs;
  for (const auto& s : shards) {
    if (max_docs > 0 && static_cast<std::int64_t>(docs.size()) >= max_docs) break;
    load_shard(s, docs, report, max_docs);
  }
  if (docs.empty()) {
    // Say why: the first per-line reasons, not only that nothing was usable.
    std::string reasons;
    for (std::size_t i = 0; i < report.warnings.size() && i < 3; ++i) reasons += "; " + report.warnings[i];
    throw Error("data.dir '" + dir + "': the " + prefix + "* shards hold no valid document" + reasons);
  }
  return docs;
}

}  // namespace moesim::torch_backend
