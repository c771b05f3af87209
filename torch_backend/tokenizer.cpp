#include "torch_backend/tokenizer.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <fstream>
#include <sstream>
#include <utility>

#include "policies/types.hpp"
#include "torch_backend/spm_shim/spm_shim.h"

namespace moesim::torch_backend {

namespace {

struct Shim {
  decltype(&moesim_spm_new) make;
  decltype(&moesim_spm_delete) destroy;
  decltype(&moesim_spm_free) free;
  decltype(&moesim_spm_load) load;
  decltype(&moesim_spm_train) train;
  decltype(&moesim_spm_encode) encode;
  decltype(&moesim_spm_decode) decode;
  decltype(&moesim_spm_piece_size) piece_size;
  decltype(&moesim_spm_eos_id) eos_id;
};

template <class F>
void bind(void* lib, const char* name, F& f, const std::string& path) {
  f = reinterpret_cast<F>(dlsym(lib, name));
  if (!f) throw Error(path + ": SentencePiece shim lacks symbol " + name);
}

const Shim& shim() {
  static const Shim s = [] {
    const char* env = std::getenv("MOESIM_SPM_SHIM");
    const std::string path = env && *env ? env : MOESIM_SPM_SHIM_PATH;
    // RTLD_DEEPBIND: SentencePiece must resolve to its own bundled protobuf-lite.
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!lib) throw Error("cannot load the SentencePiece shim " + path + " (" + dlerror() + "; set MOESIM_SPM_SHIM)");
    Shim x{};
    bind(lib, "moesim_spm_new", x.make, path);
    bind(lib, "moesim_spm_delete", x.destroy, path);
    bind(lib, "moesim_spm_free", x.free, path);
    bind(lib, "moesim_spm_load", x.load, path);
    bind(lib, "moesim_spm_train", x.train, path);
    bind(lib, "moesim_spm_encode", x.encode, path);
    bind(lib, "moesim_spm_decode", x.decode, path);
    bind(lib, "moesim_spm_piece_size", x.piece_size, path);
    bind(lib, "moesim_spm_eos_id", x.eos_id, path);
    return x;
  }();
  return s;
}

std::string take_error(char* err) {
  std::string s = err ? err : "unknown error";
  if (err) shim().free(err);
  return s;
}

// Feeds the non-empty lines of every document: SentencePiece drops "sentences"
// longer than max_sentence_length, and a web document is far longer than that.
struct DocLines {
  const std::vector<std::string>* docs;
  std::size_t doc = 0, pos = 0;

  static int next(void* ctx, const char** data, size_t* len) {
    auto& s = *static_cast<DocLines*>(ctx);
    while (s.doc < s.docs->size()) {
      const std::string& d = (*s.docs)[s.doc];
      if (s.pos >= d.size()) {
        ++s.doc;
        s.pos = 0;
        continue;
      }
      std::size_t nl = d.find('\n', s.pos);
      if (nl == std::string::npos) nl = d.size();
      const std::size_t b = s.pos;
      s.pos = nl + 1;
      const std::string_view line(d.data() + b, nl - b);
      if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
      *data = line.data();
      *len = line.size();
      return 1;
    }
    return 0;
  }
};

}  // namespace

Tokenizer::Tokenizer() : sp_(shim().make()) {}
Tokenizer::~Tokenizer() {
  if (sp_) shim().destroy(sp_);
}
Tokenizer::Tokenizer(Tokenizer&& o) noexcept : sp_(std::exchange(o.sp_, nullptr)), proto_(std::move(o.proto_)) {}
Tokenizer& Tokenizer::operator=(Tokenizer&& o) noexcept {
  if (this != &o) {
    if (sp_) shim().destroy(sp_);
    sp_ = std::exchange(o.sp_, nullptr);
    proto_ = std::move(o.proto_);
  }
  return *this;
}

Tokenizer Tokenizer::train(const std::vector<std::string>& docs, const TokenizerSpec& spec) {
  const std::vector<std::pair<std::string, std::string>> args = {
      {"model_type", spec.type},
      {"vocab_size", std::to_string(spec.vocab)},
      {"character_coverage", std::to_string(spec.character_coverage)},
      {"input_sentence_size", std::to_string(spec.max_sentences)},
      {"shuffle_input_sentence", "true"},
      {"max_sentence_length", "16384"},
      // A small corpus may not support the requested size; take what it gives.
      {"hard_vocab_limit", "false"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"minloglevel", "2"},
      {"num_threads", "2"},
  };
  std::vector<const char*> keys, values;
  for (const auto& [k, v] : args) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  DocLines lines{&docs};
  char *out = nullptr, *err = nullptr;
  size_t out_len = 0;
  if (shim().train(keys.data(), values.data(), keys.size(), &DocLines::next, &lines, &out, &out_len, &err) != 0)
    throw Error("tokenizer training failed: " + take_error(err));
  std::string proto(out, out_len);
  shim().free(out);
  return from_proto(proto, "freshly trained tokenizer");
}

Tokenizer Tokenizer::from_proto(const std::string& serialized, const std::string& source) {
  Tokenizer t;
  char* err = nullptr;
  if (shim().load(t.sp_, serialized.data(), serialized.size(), &err) != 0)
    throw Error(source + ": not a SentencePiece model (" + take_error(err) + ")");
  t.proto_ = serialized;
  return t;
}

Tokenizer Tokenizer::from_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open tokenizer model");
  std::ostringstream ss;
  ss << in.rdbuf();
  return from_proto(ss.str(), path);
}

int Tokenizer::vocab_size() const { return shim().piece_size(sp_); }
int Tokenizer::eos_id() const { return shim().eos_id(sp_); }

std::vector<int> Tokenizer::encode(const std::string& text) const {
  int* ids = nullptr;
  size_t n = 0;
  char* err = nullptr;
  if (shim().encode(sp_, text.data(), text.size(), &ids, &n, &err) != 0)
    throw Error("tokenizer encode failed: " + take_error(err));
  std::vector<int> out(ids, ids + n);
  shim().free(ids);
  return out;
}

std::string Tokenizer::decode(const std::vector<int>& ids) const {
  char *out = nullptr, *err = nullptr;
  size_t n = 0;
  if (shim().decode(sp_, ids.data(), ids.size(), &out, &n, &err) != 0)
    throw Error("tokenizer decode failed: " + take_error(err));
  std::string s(out, n);
  shim().free(out);
  return s;
}

}  // namespace moesim::torch_backend
