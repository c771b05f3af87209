#pragma once
// SwiGLU feed-forward (Shazeer 2020): W2 (silu(x W1) * (x W3)), no biases.
// W1 and W3 are one fused (dim, 2*hidden) matrix: one matmul instead of two.
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace moesim::torch_backend {

// silu(g) * u for gu = [g | u] (..., 2H) -> (..., H), one fused kernel each way
// (sigmoid by exp_fast, relative error below 2e-7).
torch::Tensor silu_mul(const torch::Tensor& gu);

// x: (..., dim); w13: (dim, 2*hidden); w2: (hidden, out). One autograd node
// whose kernels write the GEMMs' operands in the calling thread's precision;
// the same bits as gemm_matmul(silu_mul(gemm_matmul(x, w13)), w2).
torch::Tensor swiglu(const torch::Tensor& x, const torch::Tensor& w13, const torch::Tensor& w2);

// Every expert of an MoE layer as one node: rows [start_g, start_g + rows[g])
// of xs (the expert-sorted rows, rows[g] >= 1 each) go through
// swiglu(., w13s[g], w2s[g]). With at least as many groups as threads they
// run one per thread, largest first, each group's GEMMs on one core; the
// result has the bits of the cat of those calls, for any thread count
// (gemm_into's tiles make the GEMMs thread-count independent); backward
// writes dxs directly (no cat of per-expert gradients). With an index (int64, one entry
// per row), the rows are xs[index] (the dispatch), gathered and rounded in one
// pass, and xs's gradient sums each token's rows in index order: the bits of
// grouped_swiglu(xs.index_select(0, index), ...).
torch::Tensor grouped_swiglu(const torch::Tensor& xs, const std::vector<std::int64_t>& rows,
                             const std::vector<torch::Tensor>& w13s, const std::vector<torch::Tensor>& w2s,
                             const torch::Tensor& index = torch::Tensor());

// The MoE combine: zeros({N, D}).index_add_(0, index, src), bitwise, as one
// node. Forward sums each token's rows in index order, one token per
// iteration on every thread (LibTorch 1.13's index_add_ runs on one); backward
// is index_add_'s own, grad.index_select(0, index).
torch::Tensor combine_rows(const torch::Tensor& src, const torch::Tensor& index, std::int64_t N);

class SwiGLU : public torch::nn::Module {
 public:
  SwiGLU(int dim, int hidden, double init_std, double out_std);
  torch::Tensor forward(const torch::Tensor& x);
  torch::Tensor w13, w2;
};

}  // namespace moesim::torch_backend
