#pragma once
// LoRA (Hu et al. 2021): a frozen weight W plus a trained low-rank update,
//
//   W' = W + (alpha / r) * B A,   A: (r, in), B: (out, r)
//
// in PEFT's layout and initialisation: A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's
// kaiming_uniform_(a = sqrt 5)), B = 0, so a fresh adapter leaves the model
// exactly as it was. The model multiplies by W' formed once per forward pass
// (an (out x in) product of rank r, small next to a batch's GEMMs), so the fused
// kernels stay as they are and gradients reach A and B only. An adapter sits
// next to its weight as the submodule "lora_<weight name>": block1.attn.w_qkv's
// is block1.attn.lora_w_qkv (with tensors .a and .b). One adapter per stored
// matrix: the fused q/k/v and gate/up matrices get one each, as PEFT adapts a
// fused projection (GPT-2's c_attn).
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace moesim::torch_backend {

class LoraAdapter : public torch::nn::Module {
 public:
  // A weight of shape (rows, cols): (out, in) when used as x W^T (linear layers),
  // (in, out) when used as x W (the experts' w13 and w2): in_rows = true.
  LoraAdapter(std::int64_t rows, std::int64_t cols, bool in_rows, int rank, double alpha);
  // (alpha / r) * B A, in the weight's own layout.
  torch::Tensor delta() const;
  torch::Tensor a, b;  // (r, in), (out, r)
  double scale;        // alpha / r
  bool in_rows;
};

// w, or w + the adapter's update when there is one.
torch::Tensor adapted(const torch::Tensor& w, const std::shared_ptr<LoraAdapter>& lora);

// The adapter of a weight, registered next to it in `owner`.
std::shared_ptr<LoraAdapter> add_adapter(torch::nn::Module& owner, const std::string& weight_name, const torch::Tensor& w,
                                         bool in_rows, int rank, double alpha);

// Every adapter of a model with the full name of the weight it adapts.
std::vector<std::pair<std::string, std::shared_ptr<LoraAdapter>>> adapters_of(torch::nn::Module& model);

// Copies every parameter of `from` into the parameter of the same name in `to`;
// `to` may have more (its adapters). Throws Error naming a parameter that `to`
// lacks, or has in another shape, and a non-adapter parameter of `to` that `from` lacks.
void copy_weights(torch::nn::Module& from, torch::nn::Module& to, const std::string& source);

// Writes into `plain` (the same model without adapters) the adapted model's
// weights with every update merged in: W + (alpha / r) B A.
void merge_adapters(torch::nn::Module& adapted_model, torch::nn::Module& plain);

// The adapters alone, apart from the base: an archive (written to a temp file,
// then renamed) of format "moesim-lora-1" holding the adapted weights' names,
// each adapter's A and B, and what they need to be applied again: rank, alpha,
// targets and the base checkpoint's digest.
struct AdapterFileInfo {
  int rank = 0;
  double alpha = 0.0;
  std::string targets;
  std::string base_digest;  // selection/manifest.hpp's file_digest of the base checkpoint
  std::int64_t adapters = 0;
};
void write_adapters(const std::string& path, torch::nn::Module& model, const AdapterFileInfo& info);
// Reads the header (Error naming the file when it is not an adapter file).
AdapterFileInfo read_adapter_info(const std::string& path);
// Loads A and B into the model's adapters of the same names and shapes; Error
// naming the file and the weight when one is missing or of another shape.
void read_adapters(const std::string& path, torch::nn::Module& model);

}  // namespace moesim::torch_backend
