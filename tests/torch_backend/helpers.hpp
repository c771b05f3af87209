#pragma once
// Fixtures the torch-backend tests write themselves (never real data in the repo).
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <functional>
#include <fstream>
#include <string>
#include <vector>

#include "policies/rng.hpp"
#include "policies/types.hpp"
#include "torch_backend/config.hpp"

namespace moesim::tb_test {

namespace fs = std::filesystem;

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "moesim_tb_XXXXXX").string();
    path = ::mkdtemp(tmpl.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  std::string operator/(const std::string& name) const { return (path / name).string(); }
};

// The message of the moesim::Error that f throws, or "<no error>".
inline std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

inline void write_gzip(const std::string& path, const std::string& text) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, text.data(), static_cast<unsigned>(text.size()));
  gzclose(f);
}

// Plain English-like sentences from a small vocabulary, deterministic by seed.
inline std::string synthetic_doc(std::uint64_t seed, int sentences) {
  static const std::vector<std::string> words = {"the", "cat", "sat", "on", "a", "mat", "and", "dog", "ran", "to",
                                                 "house", "with", "red", "door", "big", "small", "tree", "in",
                                                 "garden", "bird", "sang", "every", "morning", "near", "river"};
  Rng rng(seed);
  std::string s;
  for (int i = 0; i < sentences; ++i) {
    const int n = 4 + static_cast<int>(rng.below(6));
    for (int w = 0; w < n; ++w) {
      std::string word = words[rng.below(words.size())];
      if (w == 0) word[0] = static_cast<char>(word[0] - 'a' + 'A');
      s += (w ? " " : "") + word;
    }
    s += ".";
    if (i + 1 < sentences) s += (i % 3 == 2) ? "\n" : " ";
  }
  return s;
}

inline std::string json_line(const std::string& text) {
  std::string o = "{\"text\": \"";
  for (char c : text) {
    if (c == '\n') o += "\\n";
    else if (c == '"') o += "\\\"";
    else o += c;
  }
  return o + "\", \"url\": \"http://example.com\"}\n";
}

// A C4-shaped data dir: train split as .jsonl + .json.gz, validation as .json.
inline void write_c4_fixture(const TempDir& dir, int train_docs, int val_docs) {
  std::string a, b, v;
  for (int i = 0; i < train_docs; ++i) (i % 2 ? a : b) += json_line(synthetic_doc(100 + i, 12));
  for (int i = 0; i < val_docs; ++i) v += json_line(synthetic_doc(9000 + i, 12));
  write_text(dir / "c4-train.00000-of-00002.jsonl", a);
  write_gzip(dir / "c4-train.00001-of-00002.json.gz", b);
  write_text(dir / "c4-validation.00000-of-00001.json", v);
}

// A tiny model config for tests: seconds per run on one core.
inline torch_backend::TrainConfig tiny_config(const std::string& policy = "topk") {
  torch_backend::TrainConfig c;
  c.seed = 3;
  c.data.seq_len = 16;
  c.tokenizer.vocab = 64;
  c.model.layers = 2;
  c.model.dim = 32;
  c.model.heads = 2;
  c.model.ff_hidden = 64;
  c.model.expert_hidden = 32;
  c.model.moe_layers = {1};
  c.model.experts = 4;
  c.model.k = 2;
  c.policy.name = policy;
  c.train.batch = 4;
  c.train.steps = 8;
  c.train.warmup = 2;
  c.train.lr = 3e-3;
  c.train.threads = 1;
  return c;
}

// Random token stream in [3, vocab) (0..2 are unk/bos/eos).
inline std::vector<std::int32_t> random_stream(std::size_t n, int vocab, std::uint64_t seed) {
  Rng rng(seed);
  std::vector<std::int32_t> s(n);
  for (auto& t : s) t = 3 + static_cast<std::int32_t>(rng.below(static_cast<std::uint64_t>(vocab - 3)));
  return s;
}

}  // namespace moesim::tb_test
