// `moesim bench train`: the profile traces it writes, and its bad-input errors.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "helpers.hpp"
#include "policies/types.hpp"
#include "torch_backend/commands.hpp"

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
