#include "torch_backend/bench.hpp"

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>

#include <torch/csrc/autograd/profiler_legacy.h>

#include "common/files.hpp"
#include "torch_backend/gemm.hpp"
#include "torch_backend/trainer.hpp"

namespace moesim::torch_backend {

namespace {
double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

template <class F>
double best_flops(int n, int reps, F&& mm) {
  mm();  // warm-up: thread pool, packing buffers
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    mm();
    best = std::min(best, seconds_since(t0));
  }
  return 2.0 * n * static_cast<double>(n) * n / best;
}

// The faster of LibTorch's mm (OpenBLAS for fp32, oneDNN for bf16) and our GEMM,
// so that utilisation is measured against the best this machine offers.
double peak_for(int n, int reps, GemmPrecision p) {
  const auto dt = p == GemmPrecision::bf16 ? torch::kBFloat16 : torch::kFloat;
  auto a = torch::randn({n, n}), b = torch::randn({n, n});
  auto ad = a.to(dt), bd = b.to(dt);
  const double lib = best_flops(n, reps, [&] { (void)torch::mm(ad, bd); });
  GemmPrecisionScope scope(p);
  const double ours = best_flops(n, reps, [&] { (void)gemm(a, b); });
  return std::max(lib, ours);
}
}  // namespace

PeakFlops measure_peak(int n, int reps) {
  torch::NoGradGuard ng;
  PeakFlops p;
  p.n = n;
  p.fp32 = peak_for(n, reps, GemmPrecision::fp32);
  p.bf16 = peak_for(n, reps, GemmPrecision::bf16);
  return p;
}

void drop_run_schedule(TrainConfig& cfg) {
  cfg.train.trace_steps.clear();
  cfg.train.trace_every = 0;
  cfg.train.exit_interval = 0;
}

BenchResult bench_train(TrainConfig cfg, bool bf16, int warmup, int steps, const PeakFlops& peak,
                        const std::string& profile_path) {
  cfg.train.bf16 = bf16;
  cfg.train.steps = warmup + steps;
  cfg.train.warmup = 1;
  drop_run_schedule(cfg);
  const int vocab = cfg.tokenizer.vocab;
  const std::int64_t need = static_cast<std::int64_t>(warmup + steps + 1) * cfg.train.batch * cfg.train.accum * cfg.data.seq_len + 1;
  auto gen = torch::randint(3, vocab, {need}, torch::kInt);
  std::vector<std::int32_t> stream(gen.data_ptr<std::int32_t>(), gen.data_ptr<std::int32_t>() + need);
  TrainData data{&stream, &stream, vocab, ""};
  Trainer tr(cfg, data, nullptr);
  for (int i = 0; i < warmup; ++i) tr.step();
  // The trace goes to a temporary name first: an interrupted run leaves no half-written PATH.
  const std::string tmp_path = profile_path + ".tmp";
  std::unique_ptr<torch::autograd::profiler::RecordProfile> profile;
  if (!profile_path.empty()) profile = std::make_unique<torch::autograd::profiler::RecordProfile>(tmp_path);
  const auto t0 = std::chrono::steady_clock::now();
  std::int64_t tokens = 0;
  for (int i = 0; i < steps; ++i) tokens += tr.step().tokens;
  const double secs = seconds_since(t0);
  if (profile) {
    profile.reset();  // writes the trace, outside the timed region
    commit_file(tmp_path, profile_path);
  }
  BenchResult r;
  r.bf16 = bf16;
  r.step_seconds = secs / steps;
  r.tokens_per_s = static_cast<double>(tokens) / secs;
  r.flops_per_token = train_flops_per_token(cfg.model, vocab, cfg.data.seq_len);
  r.model_flops_per_s = r.flops_per_token * r.tokens_per_s;
  r.mfu_vs_fp32_peak = r.model_flops_per_s / peak.fp32;
  r.mfu_vs_own_peak = r.model_flops_per_s / (bf16 ? peak.bf16 : peak.fp32);
  return r;
}

}  // namespace moesim::torch_backend
