#pragma once
// Each stage ends by writing STAGE_DIR/manifest.json (atomically, after every
// output is in place): the stage's config section, and a digest (FNV-1a 64 of
// the bytes) of every file it read and wrote:
//
//   {"stage": "score", "config": {"score.method": "router", ...},
//    "inputs": {"corpus/mixed.jsonl": "9a1f..."}, "outputs": {"score/selected.jsonl": "77c0..."}}
//
// A later stage takes a file only as a recorded output of its producer whose
// bytes still match (else: stale, rerun the producer), and `select run` skips a
// stage whose manifest matches its current config and inputs.
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace moesim::selection {

struct Manifest {
  std::string stage;
  std::vector<std::pair<std::string, std::string>> config;  // key, value
  std::map<std::string, std::string> inputs, outputs;       // path -> digest
};

// FNV-1a 64 of a file's bytes, 16 hex digits; Error naming the path when unreadable.
std::string file_digest(const std::string& path);

std::string manifest_path(const std::string& stage_dir);
void write_manifest(const std::string& stage_dir, const Manifest& m);
// Error naming the file when absent or malformed.
Manifest read_manifest(const std::string& stage_dir);

// Checks that `path` is an output recorded in the manifest of `producer_dir`
// (written by stage `producer`) and that its bytes still match; Error otherwise,
// naming the file and the command that remakes it.
void require_output(const std::string& producer_dir, const std::string& producer, const std::string& path);

// Whether the stage in stage_dir finished with this config section and these
// inputs (their current digests), and its outputs are all unchanged.
bool stage_current(const std::string& stage_dir, const std::vector<std::pair<std::string, std::string>>& config,
                   const std::vector<std::string>& inputs);

}  // namespace moesim::selection
