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

std::vector<GemmShape> model_gemm_shapes(const TrainConfig& cfg) {
  const auto& m = cfg.model;
  const std::int64_t T = static_cast<std::int64_t>(cfg.train.batch) * cfg.data.seq_len, S = cfg.data.seq_len;
  const std::int64_t D = m.dim, hd = m.dim / m.heads, V = cfg.tokenizer.vocab;
  const std::int64_t rows = std::max<std::int64_t>(1, T * m.k / m.experts), chunk = std::min<std::int64_t>(1024, T);
  std::vector<GemmShape> v;
  auto add = [&](std::string name, std::int64_t M, std::int64_t N, std::int64_t K, bool ta, bool tb) {
    GemmShape g;
    g.name = std::move(name);
    g.m = M, g.n = N, g.k = K, g.ta = ta, g.tb = tb;
    v.push_back(g);
  };
  add("attention q/k/v projection", T, 3 * D, D, false, true);
  add("attention scores (one head)", S, S, hd, false, true);
  add("attention values (one head)", S, hd, S, false, false);
  add("attention output projection", T, D, D, false, true);
  if (m.layers > static_cast<int>(m.moe_layers.size())) {
    add("dense w13", T, 2 * m.ff_hidden, D, false, false);
    add("dense w13 backward, dx", T, D, 2 * m.ff_hidden, false, true);
    add("dense w13 backward, dw", D, 2 * m.ff_hidden, T, true, false);
    add("dense w2", T, D, m.ff_hidden, false, false);
  }
  if (!m.moe_layers.empty()) {
    add("expert w13", rows, 2 * m.expert_hidden, D, false, false);
    add("expert w13 backward, dx", rows, D, 2 * m.expert_hidden, false, true);
    add("expert w13 backward, dw", D, 2 * m.expert_hidden, rows, true, false);
    add("expert w2", rows, D, m.expert_hidden, false, false);
  }
  add("head logits (chunk)", chunk, V, D, false, true);
  add("head dh (chunk)", chunk, D, V, false, false);
  add("head dW (chunk)", V, D, chunk, true, false);
  return v;
}

void time_gemm_shapes(std::vector<GemmShape>& shapes, int reps) {
  torch::NoGradGuard ng;
  for (auto& s : shapes) {
    const auto a0 = s.ta ? torch::randn({s.k, s.m}) : torch::randn({s.m, s.k});
    const auto b0 = s.tb ? torch::randn({s.n, s.k}) : torch::randn({s.k, s.n});
    auto c = torch::empty({s.m, s.n}, torch::kFloat);
    for (auto p : {GemmPrecision::fp32, GemmPrecision::bf16}) {
      const auto a = to_compute(a0, p), b = to_compute(b0, p);
      // Each timing repeats the call for at least 20 ms, so that a 20 us product is timed too.
      double best = 1e30;
      for (int r = 0; r <= reps; ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        int calls = 0;
        do {
          gemm_into(a, s.ta, b, s.tb, c, 0.0f);
          ++calls;
        } while (seconds_since(t0) < 0.02);
        if (r > 0) best = std::min(best, seconds_since(t0) / calls);  // round 0 warms up
      }
      const double flop = 2.0 * static_cast<double>(s.m) * static_cast<double>(s.n) * static_cast<double>(s.k);
      (p == GemmPrecision::bf16 ? s.bf16_flops : s.fp32_flops) = flop / best;
    }
  }
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
