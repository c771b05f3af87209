#include "torch_backend/commands.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <cstdio>
#include <filesystem>

#include <unistd.h>

#include <thread>

#include "common/args.hpp"
#include "common/launch.hpp"
#include "common/cpu.hpp"
#include "policies/knobs.hpp"
#include "policies/types.hpp"
#include "torch_backend/bench.hpp"
#include "torch_backend/gemm.hpp"
#include "torch_backend/c4_loader.hpp"
#include "torch_backend/corpus.hpp"
#include "torch_backend/data_parallel.hpp"
#include "torch_backend/generate.hpp"
#include "torch_backend/runtime.hpp"
#include "torch_backend/tokenizer.hpp"
#include "torch_backend/trainer.hpp"

namespace moesim::torch_backend {

namespace fs = std::filesystem;

namespace {

ParsedArgs parse(const std::vector<std::string>& args, std::vector<std::string> options,
                 std::vector<std::string> switches, const std::string& cmd) {
  ArgSpec spec;
  spec.options = std::move(options);
  spec.switches = std::move(switches);
  spec.switches.push_back("--help");
  return parse_args(args, spec, cmd);
}

void print_keys() {
  for (const auto& k : config_keys()) std::printf("  %-28s %-7s %s\n", k.key.c_str(), k.type.c_str(), k.help.c_str());
}

}  // namespace

namespace {

void print_train_help() {
  std::printf(
      "usage: moesim train --config FILE [key.path=value ...] [--nproc N]\n\n"
      "Trains the MoE Transformer on C4 (torch_backend/README.md). Outputs in train.out_dir:\n"
      "checkpoint.pt, train_log.csv, eval_log.csv, summary.json, config.yaml, traces/.\n\n"
      "Data-parallel: --nproc N runs N local processes (rendezvous on 127.0.0.1, a free port);\n"
      "mpirun -np N moesim train ... (or any launcher that sets OMPI_COMM_WORLD_*/PMI_* or\n"
      "MOESIM_RANK/MOESIM_WORLD_SIZE, with MASTER_ADDR/MASTER_PORT) runs them across machines.\n"
      "train.batch is the global batch (divisible by N); each process trains its B/N rows on\n"
      "train.threads threads (default: its share of the cores). Gradients are averaged over\n"
      "c10d's Gloo backend; %s\n"
      "Rank 0 writes every file; a checkpoint resumes on any N.\n\nkeys:\n",
      DataParallel::available() ? "this build has it." : "THIS BUILD HAS NO GLOO (libgloo-dev absent): one process only.");
  print_keys();
}

}  // namespace

int train_command(const std::vector<std::string>& args) {
  const auto a = parse(args, {"--config", "--nproc"}, {"--keys"}, "train");
  if (a.has("--help") || a.has("--keys")) {
    print_train_help();
    return 0;
  }
  if (!a.has("--config")) throw Error("train: --config FILE is required (torch_backend/configs/ has examples)");
  auto cfg = load_config(a.values.at("--config"));
  apply_overrides(cfg, a.overrides);
  validate(cfg);
  const LaunchPlace place = launch_place();
  const long nproc = a.whole("--nproc", 1, 1, 1024);
  if (nproc > 1 && place.size > 1) throw Error("train: --nproc inside a launch of " + std::to_string(place.size) + " processes");
  if (nproc > 1) {
    // The workers run this same command line without --nproc.
    std::vector<std::string> argv = {"/proc/self/exe", "train"};
    for (std::size_t i = 0; i < args.size(); ++i) {
      if (args[i] == "--nproc") {
        ++i;
        continue;
      }
      if (args[i].rfind("--nproc=", 0) == 0) continue;
      argv.push_back(args[i]);
    }
    char exe[4096];
    const ssize_t n = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n > 0) argv[0].assign(exe, static_cast<std::size_t>(n));
    return run_local_workers(static_cast<int>(nproc), argv);
  }
  auto dp = DataParallel::join(place);
  const bool lead = !dp || dp->rank() == 0;
  if (dp && cfg.train.threads == 0)
    cfg.train.threads = std::max(1, static_cast<int>(std::thread::hardware_concurrency()) / place.local_size);
  if (lead) {
    std::fprintf(stderr, "moesim train: seed %llu; replay: moesim train --config %s",
                 static_cast<unsigned long long>(cfg.seed), a.values.at("--config").c_str());
    for (const auto& o : a.overrides) std::fprintf(stderr, " %s", o.c_str());
    std::fprintf(stderr, "%s\n", dp ? (" (" + std::to_string(dp->size()) + " processes)").c_str() : "");
  }
  // Rank 0 builds the tokenizer and the token cache; the others then read the cache.
  if (dp && !lead) dp->barrier();
  const auto corpus = prepare_corpus(cfg, lead ? stderr : nullptr);
  if (dp && lead) dp->barrier();
  TrainData data{&corpus.train, &corpus.val, corpus.tokenizer.vocab_size(), corpus.tokenizer.proto()};
  Trainer tr(cfg, data, lead ? stderr : nullptr, dp.get());
  tr.run();
  return 0;
}

int eval_command(const std::vector<std::string>& args) {
  const auto a = parse(args, {"--checkpoint"}, {}, "eval");
  if (a.has("--help") || !a.has("--checkpoint")) {
    std::printf("usage: moesim eval --checkpoint FILE [data.dir=... train.batch=... train.eval_batches=...]\n");
    return a.has("--help") ? 0 : 2;
  }
  auto lm = load_model(a.values.at("--checkpoint"));
  apply_overrides(lm.cfg, a.overrides);
  configure_runtime(lm.cfg.train.threads);
  auto tok = Tokenizer::from_proto(lm.tokenizer_proto, a.values.at("--checkpoint"));
  LoadReport rep;
  const auto docs = load_split(lm.cfg.data.dir, "c4-validation.", rep, lm.cfg.data.max_val_docs);
  for (const auto& w : rep.warnings) std::fprintf(stderr, "warning: %s\n", w.c_str());
  std::vector<std::int32_t> stream;
  for (const auto& d : docs) {
    for (int id : tok.encode(d)) stream.push_back(id);
    stream.push_back(tok.eos_id());
  }
  PackedSequences seqs(&stream, lm.cfg.data.seq_len);
  const auto ev = evaluate_model(*lm.model, seqs, lm.cfg.train.batch, lm.cfg.train.eval_batches, lm.cfg.train.bf16);
  std::printf("checkpoint %s (step %ld, policy %s): val loss %.4f, val ppl %.2f over %lld tokens\n",
              a.values.at("--checkpoint").c_str(), lm.step, lm.cfg.policy.name.c_str(), ev.loss, std::exp(ev.loss),
              static_cast<long long>(ev.tokens));
  return 0;
}

int generate_command(const std::vector<std::string>& args) {
  const auto a = parse(args, {"--checkpoint", "--prompt", "--max-tokens", "--temperature", "--top-k", "--seed"},
                       {"--no-cache"}, "generate");
  if (a.has("--help") || !a.has("--checkpoint")) {
    std::printf(
        "usage: moesim generate --checkpoint FILE [--prompt TEXT] [--max-tokens 100] [--temperature 0.8] [--top-k 40] "
        "[--seed 1] [--no-cache]\n"
        "  Prints the prompt and its continuation; on stderr the decoding speed. Keys and values are cached\n"
        "  (one attention row per new token); --no-cache recomputes the whole context for every token.\n");
    return a.has("--help") ? 0 : 2;
  }
  if (!a.overrides.empty()) throw Error("generate: takes no key=value overrides");
  auto lm = load_model(a.values.at("--checkpoint"));
  configure_runtime(lm.cfg.train.threads);
  auto tok = Tokenizer::from_proto(lm.tokenizer_proto, a.values.at("--checkpoint"));
  SampleOptions opt;
  opt.max_new_tokens = static_cast<int>(a.whole("--max-tokens", 100, 0, 1 << 20));
  opt.temperature = a.real("--temperature", 0.8);
  if (!(opt.temperature >= 0.0)) throw Error("--temperature: expected a number >= 0");
  opt.top_k = static_cast<int>(a.whole("--top-k", 40, 0, 1 << 30));
  opt.seed = static_cast<std::uint64_t>(a.whole("--seed", 1, 0, 1L << 62));
  opt.stop_token = tok.eos_id();
  const std::string prompt = a.has("--prompt") ? a.values.at("--prompt") : "";
  auto ids = tok.encode(prompt);
  if (ids.empty()) ids.push_back(tok.eos_id());  // an empty prompt starts a fresh document
  opt.kv_cache = !a.has("--no-cache");
  SampleTiming timing;
  auto out = sample_tokens(*lm.model, ids, opt, &timing);
  std::fprintf(stderr,
               "generated %zu tokens: first %.1f ms (prompt of %zu tokens encoded), then %.2f ms/token = %.1f tokens/s "
               "over %d tokens (KV cache %s, seed %llu)\n",
               out.size() - ids.size(), 1e3 * timing.first_s, ids.size(),
               timing.rest_tokens ? 1e3 * timing.rest_s / timing.rest_tokens : 0.0,
               timing.rest_s > 0 ? timing.rest_tokens / timing.rest_s : 0.0, timing.rest_tokens,
               opt.kv_cache ? "on" : "off", static_cast<unsigned long long>(opt.seed));
  if (!out.empty() && out.back() == tok.eos_id()) out.pop_back();
  // Decoded whole: decoding the continuation alone would drop its leading space.
  if (!out.empty() && out.front() == tok.eos_id()) out.erase(out.begin());
  std::printf("%s\n", tok.decode(out).c_str());
  return 0;
}

namespace {
// The step's GEMM shapes timed alone: where a precision's GEMM time goes.
void print_gemm_shapes(const TrainConfig& cfg, const PeakFlops& peak) {
  auto shapes = model_gemm_shapes(cfg);
  time_gemm_shapes(shapes, 3);
  std::printf("%-30s %6s %6s %6s %2s | %9s %9s | %6s %9s\n", "GEMM (one call, GFLOP/s)", "m", "n", "k", "op", "fp32",
              "bf16", "bf16/", "bf16 % of");
  std::printf("%-30s %6s %6s %6s %2s | %9s %9s | %6s %9s\n", "", "", "", "", "", "", "", "fp32", "its peak");
  for (const auto& s : shapes)
    std::printf("%-30s %6lld %6lld %6lld %c%c | %9.1f %9.1f | %5.2fx %8.1f%%\n", s.name.c_str(),
                static_cast<long long>(s.m), static_cast<long long>(s.n), static_cast<long long>(s.k), s.ta ? 'T' : 'N',
                s.tb ? 'T' : 'N', s.fp32_flops / 1e9, s.bf16_flops / 1e9, s.bf16_flops / s.fp32_flops,
                100 * s.bf16_flops / peak.bf16);
  std::fflush(stdout);
}
}  // namespace

int bench_command(const std::vector<std::string>& args) {
  if (args.empty() || args[0] != "train") {
    std::printf("usage: moesim bench train [--config FILE] [--steps 5] [--warmup 2] [--peak-n 4096] [--no-bf16] [--no-fp32] [--profile PREFIX] [--gemm-shapes] [key.path=value ...]\n");
    return args.size() == 1 && args[0] == "--help" ? 0 : 2;
  }
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  const auto a = parse(rest, {"--config", "--steps", "--warmup", "--peak-n", "--profile"}, {"--no-bf16", "--no-fp32", "--gemm-shapes"}, "bench train");
  if (a.has("--help")) {
    std::printf("usage: moesim bench train [--config FILE] [--steps 5] [--warmup 2] [--peak-n 4096] [--no-bf16] [--no-fp32] [--profile PREFIX] [--gemm-shapes] [key.path=value ...]\n");
    return 0;
  }
  TrainConfig cfg = a.has("--config") ? load_config(a.values.at("--config")) : TrainConfig{};
  apply_overrides(cfg, a.overrides);
  drop_run_schedule(cfg);
  validate(cfg);
  if (a.has("--profile")) {
    const auto dir = std::filesystem::path(a.values.at("--profile")).parent_path();
    if (!dir.empty() && !std::filesystem::is_directory(dir))
      throw Error("--profile: directory '" + dir.string() + "' does not exist");
  }
  configure_runtime(cfg.train.threads);
  const int steps = static_cast<int>(a.whole("--steps", 5, 1, 1 << 20)), warmup = static_cast<int>(a.whole("--warmup", 2, 0, 1 << 20));
  const auto peak = measure_peak(static_cast<int>(a.whole("--peak-n", 4096, 64, 1 << 16)), 3);
  std::printf("cpu: %s | ISA: %s | GEMMs: %s | bf16 GEMMs: %s\n", cpu_model().c_str(), cpu_isa().c_str(), gemm_isa(),
              gemm_backend(GemmPrecision::bf16));
  std::printf("threads %d | matmul peak (n=%d): fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s\n", torch::get_num_threads(), peak.n,
              peak.fp32 / 1e9, peak.bf16 / 1e9);
  std::printf("model: %d layers, dim %d, %d heads, ff %d, experts %d x %d (top-%d, policy %s) in layers", cfg.model.layers,
              cfg.model.dim, cfg.model.heads, cfg.model.ff_hidden, cfg.model.experts, cfg.model.expert_hidden, cfg.model.k,
              cfg.policy.name.c_str());
  for (int l : cfg.model.moe_layers) std::printf(" %d", l);
  std::printf(", vocab %d, seq %d, batch %d x accum %d\n", cfg.tokenizer.vocab, cfg.data.seq_len, cfg.train.batch, cfg.train.accum);
  if (a.has("--gemm-shapes")) print_gemm_shapes(cfg, peak);
  std::vector<bool> modes;
  if (!a.has("--no-fp32")) modes.push_back(false);
  if (!a.has("--no-bf16")) modes.push_back(true);
  for (bool bf : modes) {
    const std::string prof = a.has("--profile") ? a.values.at("--profile") + (bf ? ".bf16" : ".fp32") + ".json" : "";
    const auto r = bench_train(cfg, bf, warmup, steps, peak, prof);
    std::printf("%-5s | %.3f s/step | %.0f tokens/s | %.2f GFLOP/s model (%.1f MFLOP/token) | MFU %.1f%% of fp32 peak, %.1f%% of %s peak\n",
                bf ? "bf16" : "fp32", r.step_seconds, r.tokens_per_s, r.model_flops_per_s / 1e9, r.flops_per_token / 1e6,
                100 * r.mfu_vs_fp32_peak, 100 * r.mfu_vs_own_peak, bf ? "bf16" : "fp32");
    std::fflush(stdout);
  }
  return 0;
}

}  // namespace moesim::torch_backend
