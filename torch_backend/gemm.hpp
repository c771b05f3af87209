#pragma once
// The model's matrix multiplies, fp32 or bf16, always with fp32 accumulation and
// fp32 outputs.
//
// Why not LibTorch's own mm and CPU autocast: on this machine LibTorch 1.13 runs
// fp32 mm on OpenBLAS, whose own threads busy-wait beside LibTorch's OpenMP pool
// (measured 127-194 GFLOP/s against 206-228 for oneDNN's sgemm on the same two
// cores), and autocast returns bf16 activations, so every elementwise op after a
// matmul pays a cast and runs LibTorch 1.13's slow bf16 kernels. Here both
// precisions go through oneDNN on LibTorch's OpenMP pool; in bf16 only the GEMM
// operands are rounded (round to nearest even), so norms, softmaxes, the router
// and the losses see fp32 activations, as in mixed-precision training on GPUs.
#include <torch/torch.h>

#include <cstdint>
#include <cstring>

namespace moesim::torch_backend {

enum class GemmPrecision { fp32, bf16 };

GemmPrecision gemm_precision();  // of the calling thread; fp32 unless a scope says otherwise

// Sets the calling thread's GEMM precision for a scope. The precision of a
// forward pass is remembered for its backward pass.
class GemmPrecisionScope {
 public:
  explicit GemmPrecisionScope(GemmPrecision p);
  ~GemmPrecisionScope();
  GemmPrecisionScope(const GemmPrecisionScope&) = delete;
  GemmPrecisionScope& operator=(const GemmPrecisionScope&) = delete;

 private:
  GemmPrecision prev_;
};

// op(a) · op(b), where op transposes the last two dimensions when the flag is set.
// a, b are 2-D, or 3-D with the same leading (batch) size; float inputs, float
// output; differentiable in both operands.
torch::Tensor gemm(const torch::Tensor& a, const torch::Tensor& b, bool transpose_a = false,
                   bool transpose_b = false);

// x · w (w: [in, out]) for x of any leading shape [..., in].
torch::Tensor gemm_matmul(const torch::Tensor& x, const torch::Tensor& w);
// x · wᵀ (w: [out, in]), as torch::nn::functional::linear without bias.
torch::Tensor gemm_linear(const torch::Tensor& x, const torch::Tensor& w);

// Building blocks for fused ops (fused_ce.hpp, swiglu.hpp), no autograd:
// the dtype GEMM operands of precision p are stored in (float or bfloat16),
torch::ScalarType compute_dtype(GemmPrecision p);
// and operands rounded to the precision p, contiguous (in bf16, a parameter's
// copy from bf16_shadow.hpp while it is valid: the same bits, no cast).
torch::Tensor to_compute(const torch::Tensor& t, GemmPrecision p);
// t rounded to bf16 (contiguous) with bf16_bits: the bits of .to(kBFloat16),
// where LibTorch 1.13's cast ran at 3-5 GB/s on one thread inside the
// experts' parallel region (about 15 ms of a 240 ms bf16 step in casts).
torch::Tensor to_bf16(const torch::Tensor& t);
// The bf16 bits of x, rounded to nearest even, NaN to 0xFFFF: what
// LibTorch's vectorised .to(kBFloat16) stores, branch-free so
// a fused kernel can emit bf16 operands without a separate cast pass.
inline std::uint16_t bf16_bits(float x) {
  std::uint32_t b;
  std::memcpy(&b, &x, sizeof b);
  const std::uint32_t rounded = (b + 0x7FFFu + ((b >> 16) & 1u)) >> 16;
  return static_cast<std::uint16_t>((b & 0x7FFFFFFFu) > 0x7F800000u ? 0xFFFFu : rounded);
}

// The value a kernel stores: the float itself, or its bf16 bits rounded as
// .to(kBFloat16) would, so a kernel can write the next GEMM's operand directly.
inline void store_operand(float* o, float v) { *o = v; }
inline void store_operand(std::uint16_t* o, float v) { *o = bf16_bits(v); }

// Runs the kernel with a float* for an fp32 tensor, std::uint16_t* for bf16.
template <typename Kernel>
void with_operand_ptr(const torch::Tensor& t, Kernel&& k) {
  if (t.scalar_type() == torch::kBFloat16)
    k(static_cast<std::uint16_t*>(t.data_ptr()));
  else
    k(t.data_ptr<float>());
}

// c = op(a)·op(b) + beta·c for 2-D row-major a, b already in the compute dtype
// (float or bfloat16) and row-major float c of the right shape.
void gemm_into(const torch::Tensor& a, bool ta, const torch::Tensor& b, bool tb, torch::Tensor& c, float beta);

// Which library multiplies, in words: oneDNN, or LibTorch where oneDNN's headers
// were missing at build time. Where the loaded oneDNN has no bf16 GEMM for this
// CPU (oneDNN 2.x on AVX2) or does not export it, bf16 operands are widened to
// fp32 (exactly) and multiplied in fp32: the same products, fp32 accumulation.
const char* gemm_backend(GemmPrecision p);
// Whether bf16 operands are multiplied by a bf16 GEMM (oneDNN's, AVX-512 and
// up), whose rows come out the same bits whatever the row count M. Not so for
// the widened fp32 path on an AVX2 CPU: there a row's bits changed with M
// (SwiGLU's 600 rows at once against blocks of 256), so a kernel that splits
// the rows into blocks must not do it there.
bool bf16_gemm_native();
// The instruction set oneDNN's GEMMs run on here (its effective ISA), in words.
const char* gemm_isa();

}  // namespace moesim::torch_backend
