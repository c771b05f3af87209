#pragma once
// The optimizer step in one pass per parameter: LibTorch 1.13's AdamW::step and
// clip_grad_norm_ run about ten kernels per parameter (mul_, add_, addcmul_,
// sqrt, div, add_, addcdiv_, a norm each), a tenth of a bf16 training step on
// this model. These keep LibTorch's state objects (AdamWParamState in the
// optimizer's state map, so checkpoints are unchanged) and its update rule:
//   p <- p * (1 - lr * wd)
//   m <- beta1 m + (1 - beta1) g,  v <- beta2 v + (1 - beta2) g^2
//   p <- p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)
// differing from it only by float rounding (tests compare the two).
#include <torch/torch.h>

#include <vector>

namespace moesim::torch_backend {

// One AdamW step over every parameter group of `opt` (amsgrad unsupported:
// throws std::invalid_argument). Parameters without a gradient are skipped.
// Each gradient is read as g * grad_scale (rounded as g.mul_(grad_scale)
// stores it), so clipping costs no pass of its own over the gradients. With
// bf16_copies, each updated parameter's bf16 copy (bf16_shadow.hpp) is written
// in the same pass, for the next bf16 forward pass to read without a cast.
void fused_adamw_step(torch::optim::AdamW& opt, float grad_scale = 1.0f, bool bf16_copies = false);

// The 2-norm of every defined gradient together (sums of squares in double, in a
// fixed order for any thread count).
double grad_norm(const std::vector<torch::Tensor>& params);

// clip_grad_norm_'s factor: max_norm / (norm + 1e-6) when that is below 1, else 1.
float clip_scale(double norm, double max_norm);

// clip_grad_norm_ with norm 2: scales every gradient by clip_scale(norm,
// max_norm); returns the norm before clipping.
double clip_grad_norm(const std::vector<torch::Tensor>& params, double max_norm);

}  // namespace moesim::torch_backend
