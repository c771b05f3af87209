#pragma once
// bf16 copies of fp32 parameters, written by the optimizer as it updates them
// (Megatron-Core's mixed-precision layout: fp32 main weights in the optimizer,
// bf16 weights for the GEMMs). Why: a bf16 step otherwise casts every weight
// before its GEMM, reading 4 bytes and writing 2 per parameter from memory,
// where AdamW already streams the weights and writes the copy for 2 bytes more.
//
// Validity: a copy is recorded with its parameter's version counter and data
// pointer, and is handed out only while both are unchanged. Every in-place
// torch op on the parameter (a checkpoint load, copy_, a broadcast's copy)
// bumps the counter, so a copy is never used stale; the optimizer writes the
// parameter by pointer and the copy in the same pass, then records them anew.
// Lookups are thread-safe (the grouped experts cast on two threads).
#include <torch/torch.h>

namespace moesim::torch_backend {

// The bf16 copy recorded for `param`, valid or not, for the optimizer to write
// into; undefined when none was recorded or `param` has another shape now.
torch::Tensor bf16_shadow_buffer(const torch::Tensor& param);

// Records `copy` (bf16, param's shape, holding bf16_bits of every element) as
// param's copy at param's current version.
void set_bf16_shadow(const torch::Tensor& param, const torch::Tensor& copy);

// param's copy when it is still valid, else an undefined tensor.
torch::Tensor bf16_shadow(const torch::Tensor& param);

// Forgets every copy (frees their memory).
void clear_bf16_shadows();

}  // namespace moesim::torch_backend
