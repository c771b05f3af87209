// YAML configs and key.path overrides: unknown keys and bad values are errors
// naming the key (and the file and line).
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "policies/types.hpp"
#include "torch_backend/config.hpp"

using namespace moesim;
using namespace moesim::torch_backend;
using namespace moesim::tb_test;

TEST_CASE("config: YAML file, overrides, round trip", "[torch][config]") {
  TempDir d;
  write_text(d / "c.yaml", "seed: 5\nmodel:\n  dim: 64\n  moe_layers: [0, 2]\npolicy:\n  name: rdesi\n  knobs:\n    beta: 0.3\n");
  auto cfg = load_config(d / "c.yaml");
  CHECK(cfg.seed == 5);
  CHECK(cfg.model.dim == 64);
  CHECK(cfg.model.moe_layers == std::vector<int>{0, 2});
  CHECK(cfg.policy.knobs.at("beta") == "0.3");
  apply_overrides(cfg, {"train.lr=0.002", "model.moe_layers=1,3", "train.bf16=true"});
  CHECK(cfg.train.lr == 0.002);
  CHECK(cfg.model.moe_layers == std::vector<int>{1, 3});
  CHECK(cfg.train.bf16);
  const auto back = parse_config_text(dump_config(cfg), "dump");
  CHECK(config_fields(back) == config_fields(cfg));
}

TEST_CASE("config: unknown keys and bad values name the key, file and line", "[torch][config]") {
  TempDir d;
  write_text(d / "c.yaml", "model:\n  dim: 64\n  dimm: 3\n");
  const auto m = error_of([&] { (void)load_config(d / "c.yaml"); });
  CHECK(m.find(d / "c.yaml:3") == 0);
  CHECK(m == (d / "c.yaml") + ":3: key 'model.dimm': unknown key (did you mean 'model.dim'?)");
  TrainConfig cfg;
  CHECK(error_of([&] { apply_overrides(cfg, {"train.nope=1"}); }).find("'train.nope'") != std::string::npos);
  CHECK(error_of([&] { apply_overrides(cfg, {"model.dim=abc"}); }).find("'model.dim'") != std::string::npos);
  CHECK(error_of([&] { apply_overrides(cfg, {"tokenizer.type=wordpiece"}); }).find("expected one of") != std::string::npos);
  CHECK(error_of([&] { apply_overrides(cfg, {"no_equals"}); }).find("expected key.path=value") != std::string::npos);
  cfg.model.moe_layers = {7};
  CHECK(error_of([&] { validate(cfg); }).find("model.moe_layers") != std::string::npos);
  cfg = TrainConfig{};
  cfg.policy.knobs.emplace("bogus", "1");
  CHECK(error_of([&] { validate(cfg); }).find("bogus") != std::string::npos);
  cfg = TrainConfig{};
  cfg.policy.name = "switch";
  CHECK(error_of([&] { validate(cfg); }).find("model.k") != std::string::npos);
}

TEST_CASE("config: the scenario files' rules: duplicates, empty files, YAML overrides, cross-key checks",
          "[torch][config]") {
  TempDir d;
  write_text(d / "dup.yaml", "model:\n  dim: 64\nmodel.dim: 32\n");
  CHECK(error_of([&] { (void)load_config(d / "dup.yaml"); }) ==
        (d / "dup.yaml") + ":3: key 'model.dim': set twice (first at line 2)");
  write_text(d / "empty.yaml", "");
  CHECK(error_of([&] { (void)load_config(d / "empty.yaml"); }).find("empty config: expected a map of keys") !=
        std::string::npos);
  write_text(d / "quoted.yaml", "model:\n  dim: \"64\"\n");
  CHECK(error_of([&] { (void)load_config(d / "quoted.yaml"); }).find("expected a number, got a quoted string") !=
        std::string::npos);
  TrainConfig cfg;
  apply_overrides(cfg, {"model.moe_layers=[0, 2]", "policy={name: rdesi, knobs: {preset: reference}}"});
  CHECK(cfg.model.moe_layers == std::vector<int>{0, 2});
  CHECK(cfg.policy.name == "rdesi");
  CHECK(cfg.policy.knobs.at("preset") == "reference");
  apply_overrides(cfg, {"policy={name: topk}"});  // a named policy starts its knobs afresh
  CHECK(cfg.policy.knobs.empty());
  CHECK(error_of([&] { apply_overrides(cfg, {"model.dim=[1, 2]"}); }).find("expected a single value, got a list") !=
        std::string::npos);
  cfg = TrainConfig{};
  cfg.model.moe_layers = {1, 1};
  CHECK(error_of([&] { validate(cfg); }) == "config key 'model.moe_layers': layer 1 listed twice");
  cfg = TrainConfig{};
  cfg.train.steps = 10;
  cfg.train.trace_steps = {5, 20};
  CHECK(error_of([&] { validate(cfg); }).find("step 20 is beyond train.steps = 10") != std::string::npos);
  cfg = TrainConfig{};
  cfg.train.beta2 = 1.0;  // AdamW divides by 1 - beta2^t
  CHECK(error_of([&] { validate(cfg); }).find("config key 'train.beta2' = '1': out of range") != std::string::npos);
  CHECK(error_of([&] { apply_overrides(cfg, {"train.beta1=1"}); }).find("out of range") != std::string::npos);
}

TEST_CASE("config: the shipped configs load and validate", "[torch][config]") {
  for (const char* f : {"topk", "rdesi", "expert_choice", "tiny"}) {
    const auto cfg = load_config(std::string(MOESIM_SOURCE_DIR) + "/torch_backend/configs/" + f + ".yaml");
    CHECK_NOTHROW(validate(cfg));
  }
}
