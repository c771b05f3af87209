// torch_backend/lora.hpp: the update's algebra, what trains, merging, loading a base.
#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <map>

#include "helpers.hpp"
#include "torch_backend/lora.hpp"
#include "torch_backend/model.hpp"
#include "torch_backend/trainer.hpp"

using namespace moesim;
using namespace moesim::torch_backend;
using namespace moesim::tb_test;

TEST_CASE("LoRA delta is (alpha / r) B A in the weight's layout (hand-computed, rank 2)", "[torch][lora]") {
  // A weight (out 2, in 3) used as x W^T, and the same update for an (in 3, out 2) weight.
  LoraAdapter lin(2, 3, false, 2, 4.0), col(3, 2, true, 2, 4.0);
  for (auto* ad : {&lin, &col}) {
    torch::NoGradGuard ng;
    ad->a.copy_(torch::tensor({{1.0f, 2.0f, 3.0f}, {0.0f, -1.0f, 1.0f}}));  // (r, in)
    ad->b.copy_(torch::tensor({{1.0f, 0.0f}, {2.0f, 1.0f}}));               // (out, r)
  }
  // B A = [[1, 2, 3], [2, 3, 7]]; scale 4 / 2 = 2.
  const auto want = torch::tensor({{2.0f, 4.0f, 6.0f}, {4.0f, 6.0f, 14.0f}});
  CHECK(torch::equal(lin.delta(), want));
  CHECK(torch::equal(col.delta(), want.t()));
}

TEST_CASE("a fresh adapter (B = 0) leaves the model's logits exactly as they were", "[torch][lora]") {
  auto cfg = tiny_config();
  torch::manual_seed(5);
  Transformer plain(cfg, 64);
  cfg.lora.rank = 4;
  torch::manual_seed(5);
  Transformer with(cfg, 64);
  plain.eval();
  with.eval();
  CHECK(adapters_of(with).size() == 2 * 2 + 2 * 4);  // q/k/v and output of 2 blocks, w13 and w2 of 4 experts
  const auto ids = torch::randint(3, 64, {2, 16}, torch::kLong);
  torch::NoGradGuard ng;
  CHECK(torch::equal(plain.forward(ids).logits, with.forward(ids).logits));
}

TEST_CASE("LoRA training of rank r changes only adapter weights, and merging reproduces the adapted logits",
          "[torch][lora]") {
  for (const char* targets : {"attention", "experts", "attention,experts"}) {
    INFO("targets " << targets);
    auto cfg = tiny_config();
    cfg.lora.rank = 2;
    cfg.lora.targets = targets;
    cfg.train.lr = 1e-2;
    auto stream = random_stream(2000, cfg.tokenizer.vocab, 9);
    Trainer tr(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
    std::map<std::string, torch::Tensor> before;
    for (const auto& p : tr.model().named_parameters()) before[p.key()] = p.value().detach().clone();
    for (int i = 0; i < 3; ++i) (void)tr.step();
    int adapters_moved = 0;
    for (const auto& p : tr.model().named_parameters()) {
      INFO(p.key());
      const bool adapter = p.key().find(".lora_") != std::string::npos;
      const bool changed = !torch::equal(before[p.key()], p.value().detach());
      if (!adapter) CHECK_FALSE(changed);
      if (adapter) {
        CHECK((p.key().find("attn") != std::string::npos ? std::string(targets).find("attention")
                                                         : std::string(targets).find("experts")) != std::string::npos);
        adapters_moved += changed;
      }
    }
    CHECK(adapters_moved > 0);

    auto plain_cfg = cfg;
    plain_cfg.lora.rank = 0;
    Transformer plain(plain_cfg, cfg.tokenizer.vocab);
    merge_adapters(tr.model(), plain);
    tr.model().eval();
    plain.eval();
    const auto ids = torch::randint(3, cfg.tokenizer.vocab, {2, 16}, torch::kLong);
    torch::NoGradGuard ng;
    const auto want = tr.model().forward(ids).logits, got = plain.forward(ids).logits;
    // The forward adds the same update to the same weight: equal up to nothing but float addition order.
    CHECK((want - got).abs().max().item<float>() <= 1e-5f);
    CHECK(want.abs().max().item<float>() > 0.0f);
  }
}

TEST_CASE("LoRA from a base checkpoint: base weights copied, adapters fresh; a model without a base weight is refused",
          "[torch][lora]") {
  TempDir dir;
  auto cfg = tiny_config();
  cfg.train.steps = 2;
  cfg.train.out_dir = dir / "base";
  auto stream = random_stream(2000, cfg.tokenizer.vocab, 2);
  {
    Trainer base(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
    base.run();
  }
  const auto base = load_model(dir / "base/checkpoint.pt");
  auto lcfg = cfg;
  lcfg.lora.rank = 2;
  lcfg.train.init_from = dir / "base/checkpoint.pt";
  lcfg.train.out_dir = dir / "lora";
  lcfg.train.steps = 2;
  Trainer tr(lcfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
  tr.run();
  auto mine = tr.model().named_parameters(true);
  for (const auto& p : base.model->named_parameters(true)) {
    INFO(p.key());
    REQUIRE(mine.find(p.key()) != nullptr);
    CHECK(torch::equal(*mine.find(p.key()), p.value()));  // frozen through training
  }
  // The adapted run's own checkpoint reloads with its adapters.
  const auto again = load_model(dir / "lora/checkpoint.pt");
  CHECK(adapters_of(*again.model).size() == adapters_of(tr.model()).size());

  auto other = lcfg;
  other.model.expert_hidden = 16;
  Transformer wrong(other, cfg.tokenizer.vocab);
  CHECK_THAT(error_of([&] { copy_weights(*base.model, wrong, "base.pt"); }),
             Catch::Contains("base.pt: parameter '") && Catch::Contains("another shape"));
}
