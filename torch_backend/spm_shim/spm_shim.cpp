#include "spm_shim.h"

#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

char* dup(const std::string& s) {
  auto* p = static_cast<char*>(std::malloc(s.size() + 1));
  if (p) std::memcpy(p, s.c_str(), s.size() + 1);
  return p;
}

int fail(const sentencepiece::util::Status& st, char** err) {
  if (err) *err = dup(st.ToString());
  return 1;
}

class CallbackSentences : public sentencepiece::SentenceIterator {
 public:
  CallbackSentences(moesim_spm_next_fn next, void* ctx) : next_(next), ctx_(ctx) { Next(); }
  bool done() const override { return done_; }
  void Next() override {
    const char* d = nullptr;
    size_t n = 0;
    if (next_(ctx_, &d, &n)) cur_.assign(d, n);
    else done_ = true;
  }
  const std::string& value() const override { return cur_; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  moesim_spm_next_fn next_;
  void* ctx_;
  std::string cur_;
  bool done_ = false;
};

sentencepiece::SentencePieceProcessor* sp(void* h) { return static_cast<sentencepiece::SentencePieceProcessor*>(h); }

}  // namespace

extern "C" {

void* moesim_spm_new(void) { return new sentencepiece::SentencePieceProcessor(); }
void moesim_spm_delete(void* h) { delete sp(h); }
void moesim_spm_free(void* p) { std::free(p); }

int moesim_spm_load(void* h, const char* proto, size_t n, char** err) {
  const auto st = sp(h)->LoadFromSerializedProto(std::string(proto, n));
  return st.ok() ? 0 : fail(st, err);
}

int moesim_spm_train(const char* const* keys, const char* const* values, size_t nargs, moesim_spm_next_fn next,
                     void* ctx, char** out, size_t* out_len, char** err) {
  std::unordered_map<std::string, std::string> args;
  for (size_t i = 0; i < nargs; ++i) args[keys[i]] = values[i];
  CallbackSentences it(next, ctx);
  std::string proto;
  const auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &proto);
  if (!st.ok()) return fail(st, err);
  *out = static_cast<char*>(std::malloc(proto.size() ? proto.size() : 1));
  std::memcpy(*out, proto.data(), proto.size());
  *out_len = proto.size();
  return 0;
}

int moesim_spm_encode(void* h, const char* text, size_t n, int** ids, size_t* count, char** err) {
  std::vector<int> v;
  const auto st = sp(h)->Encode(std::string(text, n), &v);
  if (!st.ok()) return fail(st, err);
  *ids = static_cast<int*>(std::malloc((v.size() ? v.size() : 1) * sizeof(int)));
  std::memcpy(*ids, v.data(), v.size() * sizeof(int));
  *count = v.size();
  return 0;
}

int moesim_spm_decode(void* h, const int* ids, size_t count, char** out, size_t* out_len, char** err) {
  std::string s;
  const auto st = sp(h)->Decode(std::vector<int>(ids, ids + count), &s);
  if (!st.ok()) return fail(st, err);
  *out = static_cast<char*>(std::malloc(s.size() ? s.size() : 1));
  std::memcpy(*out, s.data(), s.size());
  *out_len = s.size();
  return 0;
}

int moesim_spm_piece_size(void* h) { return sp(h)->GetPieceSize(); }
int moesim_spm_eos_id(void* h) { return sp(h)->eos_id(); }

}  // extern "C"
