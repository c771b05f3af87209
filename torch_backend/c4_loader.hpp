#pragma once
// C4 shards in JSON-lines form (.json, .jsonl, .json.gz alike; only "text" is
// required). A malformed line is skipped and counted, never fatal; an unreadable
// or truncated file is one clear error naming the file.
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moesim::torch_backend {

// One C4 line: a strict JSON object (common/json.hpp: UTF-8 checked, lone
// surrogates and duplicate keys refused) whose "text" is a string without NUL
// characters. On success returns true and sets text; else false and why ("invalid
// JSON at column 17: ...", "no \"text\" field", "\"text\" holds a NUL character").
bool parse_c4_line(std::string_view line, std::string& text, std::string& why);

struct LoadReport {
  std::int64_t documents = 0;
  std::int64_t skipped = 0;           // malformed lines (invalid JSON, no/non-string text)
  std::vector<std::string> warnings;  // "file:line: skipped: reason", capped per file
  std::vector<std::string> files;
};

// Whole file contents, gunzipped when the name ends in .gz. Throws Error naming the
// file on I/O failure or a truncated/corrupt gzip stream.
std::string read_shard_bytes(const std::string& path);

// Appends the documents of one shard to docs (stopping at max_docs total when
// max_docs > 0). Blank lines are ignored; an empty file adds a warning.
void load_shard(const std::string& path, std::vector<std::string>& docs, LoadReport& report,
                std::int64_t max_docs = 0);

// Shards of a split in dir, sorted: prefix "c4-train." or "c4-validation.",
// suffix .json/.jsonl/.json.gz. Throws Error naming dir when it is missing.
std::vector<std::string> list_shards(const std::string& dir, const std::string& prefix);

// Every document of a split; throws Error when the split has no shard or no document.
std::vector<std::string> load_split(const std::string& dir, const std::string& prefix, LoadReport& report,
                                    std::int64_t max_docs = 0);

// At most this many "skipped" warnings per file; the rest are only counted.
inline constexpr int kMaxWarningsPerFile = 5;

}  // namespace moesim::torch_backend
