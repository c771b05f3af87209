#include "torch_backend/corpus.hpp"

#include "common/files.hpp"
#include "common/hash.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "policies/rng.hpp"
#include "policies/types.hpp"

namespace moesim::torch_backend {

namespace fs = std::filesystem;

namespace {

struct Hasher {
  std::uint64_t h = kFnvOffset;
  void add(std::string_view s) { h = mix64(fnv1a(s, h) ^ s.size()); }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
    return buf;
  }
};

bool writable_dir(const std::string& dir) {
  std::error_code ec;
  return fs::is_directory(dir, ec) && ::access(dir.c_str(), W_OK) == 0;
}

// The data directory is used only when its mode says writable: root passes
// access(W_OK) everywhere, yet a dr-xr-xr-x data folder is meant to stay untouched.
bool data_dir_writable(const std::string& dir) {
  std::error_code ec;
  const auto perms = fs::status(dir, ec).permissions();
  if (ec) return false;
  const auto w = fs::perms::owner_write | fs::perms::group_write | fs::perms::others_write;
  return (perms & w) != fs::perms::none && writable_dir(dir);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

constexpr char kTokMagic[8] = {'M', 'O', 'E', 'S', 'T', 'O', 'K', '1'};

std::string pack_tokens(const std::vector<std::int32_t>& a, const std::vector<std::int32_t>& b) {
  std::string s(kTokMagic, sizeof kTokMagic);
  const std::uint64_t n[2] = {a.size(), b.size()};
  s.append(reinterpret_cast<const char*>(n), sizeof n);
  s.append(reinterpret_cast<const char*>(a.data()), a.size() * sizeof(std::int32_t));
  s.append(reinterpret_cast<const char*>(b.data()), b.size() * sizeof(std::int32_t));
  return s;
}

bool unpack_tokens(const std::string& s, std::vector<std::int32_t>& a, std::vector<std::int32_t>& b) {
  if (s.size() < sizeof kTokMagic + 16 || std::memcmp(s.data(), kTokMagic, sizeof kTokMagic) != 0) return false;
  std::uint64_t n[2];
  std::memcpy(n, s.data() + sizeof kTokMagic, sizeof n);
  if (s.size() != sizeof kTokMagic + 16 + (n[0] + n[1]) * sizeof(std::int32_t)) return false;
  const char* p = s.data() + sizeof kTokMagic + 16;
  a.resize(n[0]);
  b.resize(n[1]);
  std::memcpy(a.data(), p, n[0] * sizeof(std::int32_t));
  std::memcpy(b.data(), p + n[0] * sizeof(std::int32_t), n[1] * sizeof(std::int32_t));
  return true;
}

std::vector<std::int32_t> encode_docs(const Tokenizer& tok, const std::vector<std::string>& docs) {
  std::vector<std::int32_t> out;
  const int eos = tok.eos_id();
  for (const auto& d : docs) {
    for (int id : tok.encode(d)) out.push_back(id);
    out.push_back(eos);
  }
  return out;
}

void say(std::FILE* log, const std::string& s) {
  if (log) std::fprintf(log, "%s\n", s.c_str());
}

}  // namespace

std::string resolve_cache_dir(const DataConfig& data) {
  if (!data.cache_dir.empty()) return data.cache_dir;
  if (data_dir_writable(data.dir)) return (fs::path(data.dir) / ".moesim_cache").string();
  if (const char* x = std::getenv("XDG_CACHE_HOME"); x && *x) return (fs::path(x) / "moesim").string();
  if (const char* h = std::getenv("HOME"); h && *h) return (fs::path(h) / ".cache" / "moesim").string();
  return (fs::path(".cache") / "moesim").string();
}

namespace {

// SentencePiece (hard_vocab_limit=false) returns fewer pieces than asked when the
// training split cannot support more; the model would silently be another one.
void check_vocab(const Tokenizer& t, int wanted) {
  if (t.vocab_size() != wanted)
    throw KeyError("tokenizer.vocab", "config key 'tokenizer.vocab' = " + std::to_string(wanted) +
                                          ": the training split supports only " + std::to_string(t.vocab_size()) +
                                          " pieces; set tokenizer.vocab=" + std::to_string(t.vocab_size()) +
                                          " or less, or use more data (data.max_docs)");
}

}  // namespace

Corpus prepare_corpus(const TrainConfig& cfg, std::FILE* log) {
  Corpus c;
  auto train_docs = load_split(cfg.data.dir, "c4-train.", c.train_report, cfg.data.max_docs);
  auto val_docs = load_split(cfg.data.dir, "c4-validation.", c.val_report, cfg.data.max_val_docs);
  for (const auto& w : c.train_report.warnings) say(log, "warning: " + w);
  for (const auto& w : c.val_report.warnings) say(log, "warning: " + w);
  say(log, "data: " + std::to_string(train_docs.size()) + " train / " + std::to_string(val_docs.size()) +
               " validation documents from " + cfg.data.dir + " (" +
               std::to_string(c.train_report.skipped + c.val_report.skipped) + " malformed lines skipped)");

  Hasher spm_key;
  spm_key.add("spm-v1");
  spm_key.add(cfg.tokenizer.type);
  spm_key.add(std::to_string(cfg.tokenizer.vocab));
  spm_key.add(format_real(cfg.tokenizer.character_coverage));
  spm_key.add(std::to_string(cfg.tokenizer.max_sentences));
  for (const auto& d : train_docs) spm_key.add(d);
  Hasher tok_key = spm_key;
  tok_key.add("tokens-v1");
  for (const auto& d : val_docs) tok_key.add(d);

  c.cache_dir = resolve_cache_dir(cfg.data);
  std::error_code ec;
  fs::create_directories(c.cache_dir, ec);
  if (ec || !writable_dir(c.cache_dir))
    throw Error("data.cache_dir '" + c.cache_dir + "' cannot be created or written (set data.cache_dir=...)");
  c.tokenizer_path = (fs::path(c.cache_dir) / ("spm-" + spm_key.hex() + ".model")).string();
  const std::string tokens_path = (fs::path(c.cache_dir) / ("tokens-" + tok_key.hex() + ".bin")).string();

  if (fs::exists(c.tokenizer_path)) {
    c.tokenizer = Tokenizer::from_file(c.tokenizer_path);
    check_vocab(c.tokenizer, cfg.tokenizer.vocab);
    c.tokenizer_cached = true;
    say(log, "tokenizer: reused " + c.tokenizer_path);
  } else {
    say(log, "tokenizer: training " + cfg.tokenizer.type + " vocab " + std::to_string(cfg.tokenizer.vocab) + " on the training split...");
    // A fixed sampling seed: the cache key does not include the run's seed.
    const TokenizerSpec spec{cfg.tokenizer.vocab, cfg.tokenizer.type, cfg.tokenizer.character_coverage,
                             cfg.tokenizer.max_sentences, 1};
    c.tokenizer = Tokenizer::train(train_docs, spec);
    check_vocab(c.tokenizer, cfg.tokenizer.vocab);
    write_file_atomic(c.tokenizer_path, c.tokenizer.proto());
    say(log, "tokenizer: saved " + c.tokenizer_path);
  }
  if (fs::exists(tokens_path) && unpack_tokens(read_all(tokens_path), c.train, c.val)) {
    c.tokens_cached = true;
  } else {
    c.train = encode_docs(c.tokenizer, train_docs);
    c.val = encode_docs(c.tokenizer, val_docs);
    write_file_atomic(tokens_path, pack_tokens(c.train, c.val));
  }
  say(log, "tokens: " + std::to_string(c.train.size()) + " train, " + std::to_string(c.val.size()) +
               " validation (vocab " + std::to_string(c.tokenizer.vocab_size()) + ")");
  return c;
}

}  // namespace moesim::torch_backend
