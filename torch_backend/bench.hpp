#pragma once
// Training throughput: tokens/s and model FLOPs utilisation against this
// machine's measured matmul peak (a large square GEMM), in fp32 and bf16.
#include <cstdio>
#include <cstdint>
#include <string>
#include <vector>

#include "torch_backend/config.hpp"

namespace moesim::torch_backend {

struct PeakFlops {
  double fp32 = 0, bf16 = 0;  // FLOP/s of an n x n x n matmul: best of a few, faster of LibTorch mm and gemm.hpp
  int n = 0;
};
PeakFlops measure_peak(int n, int reps);

// Clears what belongs to a config's full run, not to a few benchmark steps: its
// trace steps and exit interval (topk.yaml traces step 300, which a bench never reaches).
void drop_run_schedule(TrainConfig& cfg);

struct BenchResult {
  bool bf16 = false;
  double step_seconds = 0, tokens_per_s = 0, model_flops_per_s = 0, mfu_vs_fp32_peak = 0, mfu_vs_own_peak = 0;
  double flops_per_token = 0;
};
// Times `steps` optimizer steps after `warmup` on random tokens (no data needed).
// A non-empty `profile_path` records the timed steps as a Chrome trace
// (chrome://tracing, Perfetto) of every LibTorch op.
BenchResult bench_train(TrainConfig cfg, bool bf16, int warmup, int steps, const PeakFlops& peak,
                        const std::string& profile_path = "");

// One matrix multiply of a training step, c (m x n) = op(a) (m x k) · op(b) (k x n),
// timed alone through gemm_into in both precisions: where the step's GEMM time
// goes, against the square-matmul peak.
struct GemmShape {
  std::string name;
  std::int64_t m = 0, n = 0, k = 0;
  bool ta = false, tb = false;
  double fp32_flops = 0, bf16_flops = 0;  // FLOP/s, best of a few calls
};
// The step's distinct GEMM shapes for this config: attention, dense and expert
// SwiGLU (experts at the dropless mean of batch*seq*k/experts rows), the output
// head's chunk; the forward product of each, and the two backward products of
// the larger ones.
std::vector<GemmShape> model_gemm_shapes(const TrainConfig& cfg);
// Fills each shape's FLOP/s: best of `reps` timings (after one warm-up), warm caches.
void time_gemm_shapes(std::vector<GemmShape>& shapes, int reps);

}  // namespace moesim::torch_backend
