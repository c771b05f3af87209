#pragma once
// The checkpoint file: a LibTorch archive holding the model ("model"), the
// optimizer ("optimizer"), named metadata entries (config, step, data position,
// policy states, RNG states, ...) and three digests that make an altered or
// damaged file refuse to load: LibTorch's archive reader does not verify the zip
// CRCs, so a flipped byte in a tensor would otherwise train on silently.
//
//   digest_meta       FNV-1a 64 over every metadata entry (key, then value), in key order;
//                     the key list itself is the entry "meta_keys"
//   digest_model      over every parameter and buffer: name, dtype, shape, bytes
//   digest_optimizer  over AdamW's state per parameter, in parameter-group order
//
// Loading also refuses a NaN or infinite value in any tensor, naming it.
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace moesim::torch_backend {

inline constexpr const char* kCheckpointFormat = "moesim-checkpoint-2";

using CheckpointMeta = std::vector<std::pair<std::string, c10::IValue>>;

// Writes path.tmp, then renames it into place (Error naming the file on failure).
void write_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::AdamW& opt,
                      const CheckpointMeta& meta);

class CheckpointReader {
 public:
  // Opens the archive and checks its format tag and metadata digest.
  explicit CheckpointReader(std::string path);
  const std::string& path() const { return path_; }
  // A metadata entry (Error naming the file and key when absent).
  const c10::IValue& get(const std::string& key) const;
  // Loads the weights into `model` (same shapes), checks them finite and against digest_model.
  void load_model(torch::nn::Module& model);
  // Loads the optimizer state, checks it finite and against digest_optimizer.
  void load_optimizer(torch::optim::AdamW& opt, torch::nn::Module& model);

 private:
  std::string path_;
  torch::serialize::InputArchive ar_;
  std::vector<std::pair<std::string, c10::IValue>> meta_;
};

}  // namespace moesim::torch_backend
