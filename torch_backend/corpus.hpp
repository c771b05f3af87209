#pragma once
// The token streams a run trains and evaluates on: C4 documents, a tokenizer
// trained on the training split, and both splits encoded with EOS after each
// document. Tokenizer and tokens are cached, keyed by a hash of the documents
// and the tokenizer settings, so runs of the same data reuse them.
#include <cstdint>
#include <string>
#include <vector>

#include "torch_backend/c4_loader.hpp"
#include "torch_backend/config.hpp"
#include "torch_backend/tokenizer.hpp"

namespace moesim::torch_backend {

struct Corpus {
  Tokenizer tokenizer;
  std::vector<std::int32_t> train;  // concatenated documents, EOS after each
  std::vector<std::int32_t> val;
  std::string cache_dir;
  std::string tokenizer_path;       // cached SentencePiece model
  bool tokenizer_cached = false;    // reused rather than trained
  bool tokens_cached = false;
  LoadReport train_report, val_report;
};

// data.cache_dir when set; else the data directory when writable (the data sits
// read-only on shared machines); else $XDG_CACHE_HOME/moesim or ~/.cache/moesim.
std::string resolve_cache_dir(const DataConfig& data);

// log: progress lines (nullptr = silent). Loader warnings go to log too.
Corpus prepare_corpus(const TrainConfig& cfg, std::FILE* log);

}  // namespace moesim::torch_backend
