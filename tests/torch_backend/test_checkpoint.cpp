// Checkpoints resume exactly: the loss curve after a resume equals the
// uninterrupted run's, for stateless, stateful and randomised policies.
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "policies/types.hpp"
#include "torch_backend/trainer.hpp"

using namespace moesim;
using namespace moesim::torch_backend;
using namespace moesim::tb_test;

TEST_CASE("checkpoint resume reproduces the uninterrupted loss curve exactly", "[torch][checkpoint]") {
  for (const char* policy : {"topk", "rdesi", "noisy_topk", "loss_free", "expert_choice"}) {
    SECTION(policy) {
      TempDir d;
      auto cfg = tiny_config(policy);
      cfg.train.steps = 8;
      cfg.train.accum = 2;
      const auto stream = random_stream(2000, cfg.tokenizer.vocab, 4);
      const TrainData data{&stream, &stream, cfg.tokenizer.vocab, "proto"};

      std::vector<double> straight;
      {
        Trainer a(cfg, data, nullptr);
        for (int i = 0; i < 8; ++i) straight.push_back(a.step().loss);
      }
      std::vector<double> resumed;
      {
        Trainer b(cfg, data, nullptr);
        for (int i = 0; i < 4; ++i) resumed.push_back(b.step().loss);
        b.save(d / "ck.pt");
      }
      // A fresh trainer with a different global torch state must still continue exactly.
      torch::manual_seed(999);
      (void)torch::randn({10});
      Trainer c(cfg, data, nullptr);
      c.load(d / "ck.pt");
      CHECK(c.current_step() == 4);
      for (int i = 0; i < 4; ++i) resumed.push_back(c.step().loss);
      CHECK(resumed == straight);
      CHECK_FALSE(fs::exists(d / "ck.pt.tmp"));
    }
  }
}

TEST_CASE("checkpoint errors name the file", "[torch][checkpoint]") {
  TempDir d;
  auto cfg = tiny_config();
  const auto stream = random_stream(2000, cfg.tokenizer.vocab, 4);
  Trainer a(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
  (void)a.step();
  a.save(d / "ck.pt");
  auto msg = [&](const std::function<void()>& f) -> std::string {
    try {
      f();
    } catch (const Error& e) {
      return e.what();
    }
    return "<no error>";
  };
  // Truncated file.
  fs::copy_file(d / "ck.pt", d / "cut.pt");
  fs::resize_file(d / "cut.pt", fs::file_size(d / "cut.pt") / 2);
  CHECK(msg([&] { a.load(d / "cut.pt"); }).find(d / "cut.pt") == 0);
  CHECK(msg([&] { a.load(d / "missing.pt"); }).find("no such checkpoint") != std::string::npos);
  // Another model shape.
  auto other = tiny_config();
  other.model.experts = 8;
  Trainer b(other, {&stream, &stream, other.tokenizer.vocab, ""}, nullptr);
  CHECK(msg([&] { b.load(d / "ck.pt"); }).find("model.experts") != std::string::npos);
}

TEST_CASE("full run: logs, eval, summary, checkpoint, resume continues the CSV", "[torch][checkpoint]") {
  TempDir d;
  auto cfg = tiny_config("rdesi");
  cfg.train.steps = 6;
  cfg.train.eval_every = 3;
  cfg.train.eval_batches = 2;
  cfg.train.ckpt_every = 3;
  cfg.train.out_dir = d / "run";
  const auto stream = random_stream(3000, cfg.tokenizer.vocab, 8);
  {
    Trainer t(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
    t.run();
  }
  std::ifstream in(d / "run/train_log.csv");
  std::string header, line;
  std::getline(in, header);
  int rows = 0;
  while (std::getline(in, line)) ++rows;
  CHECK(rows == 6);
  for (const char* col : {"loss", "ce", "aux_lb", "aux_z", "lr", "tokens_per_s", "L1_load0", "L1_load3", "L1_maxvio", "L1_gini",
                          "L1_drop", "L1_reputation_mean", "L1_reputation_min", "L1_reputation_max"})
    CHECK(header.find(col) != std::string::npos);
  CHECK(fs::exists(d / "run/checkpoint.pt"));
  CHECK(fs::exists(d / "run/summary.json"));
  CHECK(fs::exists(d / "run/eval_log.csv"));
  // Resuming a finished run trains nothing more and keeps the log intact.
  {
    Trainer t(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
    t.run();
    CHECK(t.current_step() == 6);
  }
  std::ifstream in2(d / "run/train_log.csv");
  int rows2 = -1;
  while (std::getline(in2, line)) ++rows2;
  CHECK(rows2 == 6);
  std::ifstream ev(d / "run/eval_log.csv");
  int evals = -1;
  while (std::getline(ev, line)) ++evals;
  CHECK(evals == 2);  // steps 3 and 6, no duplicate from the second run()
  std::ifstream sj(d / "run/summary.json");
  std::string summary((std::istreambuf_iterator<char>(sj)), {});
  CHECK(summary.find("nan") == std::string::npos);
}
