#pragma once
// Training throughput: tokens/s and model FLOPs utilisation against this
// machine's measured matmul peak (a large square GEMM), in fp32 and bf16.
#include <cstdio>
#include <string>

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

}  // namespace moesim::torch_backend
