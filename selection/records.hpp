#pragma once
// The pipeline's documents as JSON lines, the record seed 004 specifies:
//   {"source_dataset": "c4_tiny/train", "source_index": 12345, "text": "...", "quality_score": 98.76}
// quality_score is present in a selection (select score) and absent in a corpus.
// Numbers print in the shortest form that reads back to the same double.
#include <cstdint>
#include <string>
#include <vector>

namespace moesim::selection {

struct DocRecord {
  std::string source_dataset;
  std::int64_t source_index = 0;
  std::string text;
  bool has_score = false;
  double quality_score = 0.0;
};

std::string to_jsonl(const std::vector<DocRecord>& docs);
// Strict: every line one JSON object with those fields and types, no other
// field, a finite score; Error naming the file and line otherwise.
std::vector<DocRecord> parse_jsonl(const std::string& text, const std::string& source);
std::vector<DocRecord> read_jsonl(const std::string& path);
// Atomically (temp file, then rename).
void write_jsonl(const std::string& path, const std::vector<DocRecord>& docs);

}  // namespace moesim::selection
