// Router traces: NPY v1.0 files NumPy loads as is, and a JSON manifest.
#include <catch2/catch.hpp>

#include <cstring>

#include "helpers.hpp"
#include "trace/trace.hpp"
#include "torch_backend/trainer.hpp"

using namespace moesim;
using namespace moesim::torch_backend;
using namespace moesim::tb_test;

namespace {
std::string read_bytes(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}
std::string header_of(const std::string& b) {
  const std::size_t hlen = static_cast<unsigned char>(b[8]) | (static_cast<std::size_t>(static_cast<unsigned char>(b[9])) << 8);
  return b.substr(10, hlen);
}
}  // namespace

TEST_CASE("npy: v1.0 header, 64-byte aligned, little-endian data", "[torch][trace]") {
  const float data[6] = {1, 2, 3, 4, 5, -6.5f};
  const auto b = npy_bytes(data, {2, 3});
  REQUIRE(b.size() > 10);
  CHECK(b.substr(0, 6) == std::string("\x93NUMPY", 6));
  CHECK(b[6] == 1);
  CHECK(b[7] == 0);
  const auto h = header_of(b);
  CHECK((10 + h.size()) % 64 == 0);
  CHECK(h.rfind("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 0) == 0);
  CHECK(h.back() == '\n');
  REQUIRE(b.size() == 10 + h.size() + sizeof data);
  CHECK(std::memcmp(b.data() + 10 + h.size(), data, sizeof data) == 0);
  const std::int64_t ids[3] = {7, 8, 9};
  CHECK(header_of(npy_bytes(ids, {3})).rfind("{'descr': '<i8', 'fortran_order': False, 'shape': (3,), }", 0) == 0);
}

TEST_CASE("training records full gate logits per MoE layer for chosen steps", "[torch][trace]") {
  TempDir d;
  auto cfg = tiny_config();
  cfg.model.layers = 3;
  cfg.model.moe_layers = {0, 2};
  cfg.train.steps = 3;
  cfg.train.trace_steps = {1, 3};
  cfg.train.out_dir = d / "run";
  cfg.train.eval_batches = 1;
  const auto stream = random_stream(3000, cfg.tokenizer.vocab, 8);
  Trainer t(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
  t.run();
  const int T = cfg.train.batch * cfg.data.seq_len;
  for (int layer : {0, 2})
    for (int step : {1, 3}) {
      const auto f = d / ("run/traces/layer" + std::to_string(layer) + "_step" + std::to_string(step) + ".npy");
      REQUIRE(fs::exists(f));
      const auto b = read_bytes(f);
      const auto h = header_of(b);
      CHECK(h.find("'shape': (" + std::to_string(T) + ", 4)") != std::string::npos);
      CHECK(b.size() == 10 + h.size() + static_cast<std::size_t>(T) * 4 * sizeof(float));
    }
  CHECK_FALSE(fs::exists(d / "run/traces/layer0_step2.npy"));
  const auto manifest = read_bytes(d / "run/traces/manifest.json");
  CHECK(manifest.find(R"({"layer": 2, "step": 3, "kind": "gate_logits", "file": "layer2_step3.npy", "shape": [)" +
                      std::to_string(T) + ", 4]}") != std::string::npos);
  CHECK(manifest.find(R"("kind": "token_ids", "file": "tokens_step1.npy")") != std::string::npos);
  // The manifest reads back (a resumed run keeps earlier entries): per step the
  // token ids, and per layer logits, choice, served, counts and expert_perf.
  TraceWriter again(d / "run/traces");
  CHECK(again.entries().size() == 2 * (1 + 2 * 5));
}

TEST_CASE("manifest: an existing one is read strictly; garbage, truncation and huge fields are refused by name",
          "[torch][trace]") {
  TempDir d;
  const std::string dir = d / "traces", manifest = dir + "/manifest.json";
  std::string good;
  {
    TraceWriter w(dir);
    const float logits[4] = {1, 2, 3, 4};
    w.record_logits(1, 5, logits, 2, 2);
    w.commit();
    good = read_bytes(manifest);
  }
  {
    TraceWriter again(dir);  // a valid manifest: its entries survive
    REQUIRE(again.entries().size() == 1);
    CHECK(again.entries()[0].step == 5);
    CHECK(again.entries()[0].shape == std::vector<std::int64_t>{2, 2});
  }
  auto refusal = [&](const std::string& text) {
    write_text(manifest, text);
    const auto msg = error_of([&] { TraceWriter w(dir); });
    CHECK(read_bytes(manifest) == text);  // refused, not rewritten
    return msg;
  };
  CHECK_THAT(refusal(""), Catch::StartsWith(manifest + ":"));
  CHECK_THAT(refusal("garbage"), Catch::StartsWith(manifest + ":"));
  CHECK_THAT(refusal(good.substr(0, good.size() / 2)), Catch::StartsWith(manifest + ":"));
  CHECK_THAT(refusal("{\"format\": \"something-else\", \"entries\": []}"),
             Catch::StartsWith(manifest + ": not a moesim-router-trace-1 manifest"));
  // A 50 KB field (once a stack overflow in a regex) is just a long string.
  std::string huge = good;
  huge.replace(huge.find("gate_logits"), 11, std::string(50000, 'x'));
  CHECK_THAT(refusal(huge), Catch::Contains("entry 1: unknown kind 'xxx"));
  // An out-of-range number (once an uncaught std::stoi exception).
  std::string big = good;
  big.replace(big.find("\"step\": 5"), 9, "\"step\": 99999999999999999999999");
  CHECK_THAT(refusal(big), Catch::StartsWith(manifest + ": entry 1") && Catch::Contains("step"));
  // Deep nesting is refused, not recursed into without bound.
  CHECK_THAT(refusal(std::string(100000, '[') + std::string(100000, ']')), Catch::StartsWith(manifest + ":"));
}
