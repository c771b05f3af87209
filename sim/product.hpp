#pragma once
// The gate's logits Z = X W^T (X: T x d, W: E x d, both row-major; Z: T x E) in
// one fixed order: z_te = fma(x_t,d-1, w_e,d-1, ... fma(x_t1, w_e1, fma(x_t0, w_e0, +0))),
// one correctly rounded fused multiply-add per term, in q = 0 .. d-1. A BLAS
// (Eigen included) picks its summation order from the vector width and its
// blocking, so its bits differ between builds; these do not: the AVX-512
// kernel and the scalar loop give the same Z, and so the same simulation.
#include <vector>

namespace moesim {

// z[T x E] = x[T x d] * w[E x d]^T as above. scratch: reused between calls (it
// holds W transposed and padded to a multiple of 16 experts).
void gate_logits(const float* x, int T, int d, const float* w, int E, float* z, std::vector<float>& scratch);

}  // namespace moesim
