#pragma once
// SentencePiece subword tokenizer (BPE or unigram) trained from documents in
// memory; the model travels as its serialized proto so caches and checkpoints
// hold exactly what was trained. SentencePiece itself lives in a dlopened shim
// (spm_shim/spm_shim.h says why).
#include <string>
#include <vector>

namespace moesim::torch_backend {

struct TokenizerSpec {
  int vocab = 8000;
  std::string type = "bpe";
  double character_coverage = 0.9995;
  long max_sentences = 2000000;
  unsigned seed = 1;
};

class Tokenizer {
 public:
  Tokenizer();
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;

  // Trains on the lines of docs. Throws Error with SentencePiece's message on failure.
  static Tokenizer train(const std::vector<std::string>& docs, const TokenizerSpec& spec);
  static Tokenizer from_proto(const std::string& serialized, const std::string& source);
  static Tokenizer from_file(const std::string& path);

  const std::string& proto() const { return proto_; }
  int vocab_size() const;
  int eos_id() const;
  std::vector<int> encode(const std::string& text) const;
  std::string decode(const std::vector<int>& ids) const;

 private:
  void* sp_ = nullptr;
  std::string proto_;
};

}  // namespace moesim::torch_backend
