// `moesim bench train`: the profile traces it writes, and its bad-input errors.
#include <catch2/catch.hpp>

#include <cmath>
#include <fstream>
#include <sstream>

#include "helpers.hpp"
#include "policies/types.hpp"
#include "torch_backend/bench.hpp"
#include "torch_backend/commands.hpp"
#include "torch_backend/config.hpp"

using namespace moesim;
using namespace moesim::tb_test;

namespace {
std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}
}  // namespace

TEST_CASE("bench train --profile writes one complete trace per precision with the named scopes", "[torch][bench]") {
  TempDir dir;
  const auto prefix = (dir.path / "prof").string();
  const std::string cfg = std::string(MOESIM_SOURCE_DIR) + "/torch_backend/configs/tiny.yaml";
  REQUIRE(torch_backend::bench_command({"train", "--config", cfg, "--steps", "1", "--warmup", "0", "--peak-n", "64",
                                        "--profile", prefix}) == 0);
  for (const char* p : {"fp32", "bf16"}) {
    const auto file = dir.path / ("prof." + std::string(p) + ".json");
    INFO(file);
    REQUIRE(fs::exists(file));
    CHECK(!fs::exists(file.string() + ".tmp"));
    const auto text = slurp(file);
    CHECK(text.find("\"moesim::forward\"") != std::string::npos);
    CHECK(text.find("\"moesim::backward\"") != std::string::npos);
    CHECK(text.find("\"moesim::optimizer\"") != std::string::npos);
    CHECK(text.rfind(']') != std::string::npos);  // the JSON array was closed
  }
}

TEST_CASE("bench train refuses a profile path in a missing directory before any work", "[torch][bench]") {
  TempDir dir;
  const auto bad = (dir.path / "missing" / "prof").string();
  CHECK_THROWS_WITH(torch_backend::bench_command({"train", "--profile", bad}), Catch::Contains("does not exist"));
  CHECK(!fs::exists(dir.path / "missing"));
}

TEST_CASE("bench train runs a config whose own schedule traces and exits beyond the benchmark's steps",
          "[torch][bench]") {
  // topk.yaml traces step 300; a 1-step benchmark must not refuse it.
  const std::string cfg = std::string(MOESIM_SOURCE_DIR) + "/torch_backend/configs/tiny.yaml";
  CHECK(torch_backend::bench_command({"train", "--config", cfg, "--steps", "1", "--warmup", "0", "--peak-n", "64",
                                      "--no-bf16", "train.trace_steps=[300]", "train.exit_interval=500"}) == 0);
}

TEST_CASE("bench train's GEMM shapes are the step's products, hand-computed for a small config", "[torch][bench]") {
  torch_backend::TrainConfig cfg;
  cfg.train.batch = 2;
  cfg.data.seq_len = 16;  // T = 32 tokens
  cfg.model.layers = 2;
  cfg.model.moe_layers = {1};
  cfg.model.dim = 32;
  cfg.model.heads = 4;  // head dim 8
  cfg.model.ff_hidden = 64;
  cfg.model.expert_hidden = 48;
  cfg.model.experts = 4;
  cfg.model.k = 2;  // 32 * 2 / 4 = 16 rows per expert
  cfg.tokenizer.vocab = 100;
  auto shapes = torch_backend::model_gemm_shapes(cfg);
  auto find = [&](const std::string& name) {
    for (const auto& s : shapes)
      if (s.name == name) return s;
    FAIL("no shape " << name);
    return torch_backend::GemmShape{};
  };
  auto is = [](const torch_backend::GemmShape& s, std::int64_t m, std::int64_t n, std::int64_t k, bool ta, bool tb) {
    return s.m == m && s.n == n && s.k == k && s.ta == ta && s.tb == tb;
  };
  CHECK(is(find("attention q/k/v projection"), 32, 96, 32, false, true));
  CHECK(is(find("attention scores (one head)"), 16, 16, 8, false, true));
  CHECK(is(find("attention values (one head)"), 16, 8, 16, false, false));
  CHECK(is(find("dense w13"), 32, 128, 32, false, false));
  CHECK(is(find("dense w2"), 32, 32, 64, false, false));
  CHECK(is(find("expert w13"), 16, 96, 32, false, false));
  CHECK(is(find("expert w13 backward, dw"), 32, 96, 16, true, false));
  CHECK(is(find("expert w2"), 16, 32, 48, false, false));
  CHECK(is(find("head logits (chunk)"), 32, 100, 32, false, true));
  CHECK(is(find("head dW (chunk)"), 100, 32, 32, true, false));
  torch_backend::time_gemm_shapes(shapes, 1);
  for (const auto& s : shapes) {
    INFO(s.name);
    CHECK(std::isfinite(s.fp32_flops));
    CHECK(s.fp32_flops > 0);
    CHECK(std::isfinite(s.bf16_flops));
    CHECK(s.bf16_flops > 0);
  }
}

TEST_CASE("bench train --gemm-shapes prints the table and still times the steps", "[torch][bench]") {
  const std::string cfg = std::string(MOESIM_SOURCE_DIR) + "/torch_backend/configs/tiny.yaml";
  CHECK(torch_backend::bench_command({"train", "--config", cfg, "--steps", "1", "--warmup", "0", "--peak-n", "64",
                                      "--no-bf16", "--gemm-shapes"}) == 0);
}
