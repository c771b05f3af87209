// selection/stages.hpp: the pipeline end to end on a tiny model and a fixture
// corpus, the document score against a hand-summed forward pass, resume and
// the refusals of stale or mismatched inputs.
#include <catch2/catch.hpp>
#include <torch/torch.h>

#include <cmath>
#include <filesystem>

#include "../torch_backend/helpers.hpp"
#include "common/csv.hpp"
#include "common/files.hpp"
#include "common/json.hpp"
#include "selection/manifest.hpp"
#include "selection/records.hpp"
#include "selection/report.hpp"
#include "selection/scoring.hpp"
#include "selection/stage_util.hpp"
#include "selection/stages.hpp"
#include "torch_backend/corpus.hpp"
#include "torch_backend/model.hpp"
#include "torch_backend/trainer.hpp"

using namespace moesim;
using namespace moesim::selection;
using namespace moesim::tb_test;
namespace tb = moesim::torch_backend;
namespace fs = std::filesystem;

namespace {

// Pre-trains a tiny MoE on the fixture's first 20 documents; returns its checkpoint.
std::string pretrain(const TempDir& dir, const std::string& name, std::uint64_t seed, long max_docs = 20) {
  auto cfg = tiny_config();
  cfg.seed = seed;
  cfg.data.dir = dir / "c4";
  cfg.data.cache_dir = dir / "cache";
  cfg.data.max_docs = max_docs;
  cfg.train.steps = 4;
  cfg.train.eval_batches = 1;
  cfg.train.out_dir = dir / name;
  const auto corpus = tb::prepare_corpus(cfg, nullptr);
  tb::Trainer tr(cfg, {&corpus.train, &corpus.val, corpus.tokenizer.vocab_size(), corpus.tokenizer.proto()}, nullptr);
  tr.run();
  return dir / (name + "/checkpoint.pt");
}

SelectConfig pipeline_config(const TempDir& dir, const std::string& selector, const std::string& base) {
  SelectConfig c;
  c.seed = 2;
  c.out_dir = dir / "sel";
  c.threads = 1;
  c.corpus.data_dir = dir / "c4";
  c.corpus.first_doc = 20;
  c.corpus.docs = 30;
  c.corpus.heldout_first = 50;
  c.warmup.selector = selector;
  c.warmup.batch = 4;
  c.warmup.warmup_steps = 1;
  c.score.selection_percentage = 0.5;
  c.target.base = base;
  c.target.lora_rank = 2;
  c.target.epochs = 1;
  c.target.batch = 4;
  c.target.warmup_steps = 1;
  c.eval_batches = 2;
  return c;
}

}  // namespace

TEST_CASE("a document's score equals the hand-summed good-expert logits of its forward windows; its loss the log-softmax CE",
          "[selection][stages]") {
  auto cfg = tiny_config();
  cfg.model.experts = 4;
  torch::manual_seed(3);
  tb::Transformer m(cfg, 64);
  m.eval();
  const int eos = 2, trash = 1, L = m.max_len();  // 16 positions: a 40-token document takes 3 windows
  std::vector<int> ids;
  for (int i = 0; i < 40; ++i) ids.push_back(3 + (i * 7) % 61);
  const auto got = score_document(m, ids, eos, trash, "doc");
  // By hand: EOS + ids in windows of L, every window its own forward; the good
  // experts are 0..2; the first window's row 0 (the EOS) is not summed.
  std::vector<std::int64_t> in = {eos};
  for (int t : ids) in.push_back(t);
  std::vector<std::int64_t> tgt(in.begin() + 1, in.end());
  tgt.push_back(eos);
  double router = 0, loss = 0;
  torch::NoGradGuard ng;
  for (std::size_t w0 = 0; w0 < in.size(); w0 += static_cast<std::size_t>(L)) {
    const auto len = std::min<std::size_t>(static_cast<std::size_t>(L), in.size() - w0);
    auto x = torch::tensor(std::vector<std::int64_t>(in.begin() + static_cast<std::ptrdiff_t>(w0), in.begin() + static_cast<std::ptrdiff_t>(w0 + len))).view({1, -1});
    const auto fo = m.forward(x, true);
    const auto lsm = torch::log_softmax(fo.logits.view({static_cast<std::int64_t>(len), -1}).to(torch::kDouble), 1);
    for (std::size_t t = 0; t < len; ++t) loss -= lsm[static_cast<std::int64_t>(t)][tgt[w0 + t]].item<double>();
    for (const auto& l : m.moe_layers()) {
      const auto z = l->last_logits.to(torch::kDouble);
      for (std::size_t t = (w0 == 0 ? 1 : 0); t < len; ++t)
        for (int e = 0; e < 3; ++e) router += z[static_cast<std::int64_t>(t)][e].item<double>();
    }
  }
  CHECK(got.tokens == 40);
  CHECK(got.predicted == 41);
  CHECK(got.router_sum == Approx(router).epsilon(1e-9));
  CHECK(got.loss_sum == Approx(loss).epsilon(1e-5));
}

TEST_CASE("pipeline end to end: outputs, router-only warm-up, top fraction kept, resume, stale and mismatched inputs refused",
          "[selection][stages]") {
  TempDir dir;
  fs::create_directories(dir / "c4");
  {
    TempDir fixture;  // write_c4_fixture writes into a TempDir; copy its files over
    write_c4_fixture(fixture, 60, 8);
    for (const auto& f : fs::directory_iterator(fixture.path)) fs::copy_file(f.path(), dir.path / "c4" / f.path().filename());
  }
  const auto selector = pretrain(dir, "selector", 5), base = pretrain(dir, "base", 6);
  auto cfg = pipeline_config(dir, selector, base);
  run_pipeline(cfg, nullptr);

  // mix: 30 documents, round(0.4 * 30) = 12 corrupted, labels kept aside.
  const auto c = corpus_paths(cfg);
  const auto mixed = read_jsonl(c.mixed);
  REQUIRE(mixed.size() == 30);
  CHECK(mixed.front().source_index == 20);
  CHECK(read_csv(c.labels).rows.size() == 30);
  CHECK(read_jsonl(c.heldout).size() == 10);

  // warmup: one checkpoint per epoch; only the router moved.
  const auto before = tb::load_model(selector), after = tb::load_model(epoch_checkpoint(cfg, 2));
  REQUIRE(fs::exists(epoch_checkpoint(cfg, 1)));
  auto moved = after.model->named_parameters(true);
  for (const auto& p : before.model->named_parameters(true)) {
    INFO(p.key());
    const bool router = p.key().find("moe.gate") != std::string::npos;
    CHECK(torch::equal(p.value(), *moved.find(p.key())) != router);
  }

  // same seed, same bytes: the corpus and the scores made again elsewhere.
  {
    auto again = cfg;
    again.out_dir = dir / "again";
    run_mix(again, nullptr);
    for (const auto& f : {"mixed.jsonl", "labels.csv", "heldout.jsonl"})
      CHECK(read_file(path_in(corpus_dir(again), f)) == read_file(path_in(corpus_dir(cfg), f)));
    again.score.selector = epoch_checkpoint(cfg, 2);
    run_score(again, nullptr);
    for (const auto& f : {"scores.csv", "selected.jsonl"})
      CHECK(read_file(path_in(stage_dir(again, "score"), f)) == read_file(path_in(stage_dir(cfg, "score"), f)));
  }

  // score: the top 15 of 30, best first, their scores the selection's.
  const auto sel = read_jsonl(path_in(stage_dir(cfg, "score"), "selected.jsonl"));
  REQUIRE(sel.size() == 15);
  for (std::size_t i = 1; i < sel.size(); ++i) CHECK(sel[i - 1].quality_score >= sel[i].quality_score);
  const auto scores = read_csv(path_in(stage_dir(cfg, "score"), "scores.csv"));
  CHECK(scores.rows.size() == 30);

  // train + eval: adapters saved apart from the base; finite perplexities and selection statistics.
  CHECK(tb::read_adapter_info(path_in(stage_dir(cfg, "train"), "adapter.pt")).rank == 2);
  const auto ev = parse_json(read_file(path_in(stage_dir(cfg, "eval"), "eval.json")), "eval.json");
  CHECK(ev.find("val_ppl")->number > 1.0);
  CHECK(ev.find("heldout_ppl")->number > 1.0);
  CHECK(ev.find("selected")->number == 15);
  CHECK(ev.find("corrupted")->number == 12);

  // resume: a second run redoes nothing.
  const auto eval_manifest = read_file(manifest_path(stage_dir(cfg, "eval")));
  const auto t0 = fs::last_write_time(manifest_path(warmup_dir(cfg)));
  run_pipeline(cfg, nullptr);
  CHECK(fs::last_write_time(manifest_path(warmup_dir(cfg))) == t0);
  CHECK(read_file(manifest_path(stage_dir(cfg, "eval"))) == eval_manifest);

  // another method: mix and warmup stay, score, train and eval rerun.
  // eval.base=false concerns the eval stage alone; the base's perplexity is then null.
  // The new selection is trained on afresh, not resumed from the router arm's checkpoint.
  const auto adapter_before = file_digest(path_in(stage_dir(cfg, "train"), "adapter.pt"));
  auto random = cfg;
  random.score.method = "random";
  random.eval_base = false;
  run_pipeline(random, nullptr);
  CHECK(file_digest(path_in(stage_dir(cfg, "train"), "adapter.pt")) != adapter_before);
  CHECK(fs::last_write_time(manifest_path(warmup_dir(cfg))) == t0);
  const auto ev2 = parse_json(read_file(path_in(stage_dir(cfg, "eval"), "eval.json")), "e");
  CHECK(ev2.find("method")->text == "random");
  CHECK(ev2.find("base_val_ppl")->is(JsonValue::Type::Null));

  // the report groups the runs into arms.
  const auto rows = collect_arms({cfg.out_dir});
  REQUIRE(rows.size() == 1);
  CHECK(rows[0].arm.rfind("random", 0) == 0);
  CHECK(rows[0].mean[4] == Approx(ev2.find("val_ppl")->number));  // val_ppl, one seed
  CHECK(std::isnan(rows[0].mean[6]));                              // base_val_ppl: no seed has it
  CHECK(rows[0].mean[3] > 0);                                      // train_tokens

  // the oracle reads the labels: its selection is clean while clean documents last.
  auto oracle = cfg;
  oracle.score.method = "oracle";
  run_score(oracle, nullptr);
  for (const auto& d : read_jsonl(path_in(stage_dir(cfg, "score"), "selected.jsonl"))) CHECK(d.quality_score >= 1.0);

  // a selection made under another config (the oracle's) is refused naming the key.
  auto stale_method = oracle;
  stale_method.score.method = "length";
  CHECK_THAT(error_of([&] { run_train(stale_method, nullptr); }),
             Catch::Contains("score.method=oracle") && Catch::Contains("rerun `moesim select score`"));

  // stale: a selection edited after `score` wrote it.
  const auto selected = path_in(stage_dir(cfg, "score"), "selected.jsonl");
  write_file_atomic(selected, read_file(selected) + to_jsonl({{"x", 1, "junk", true, 1.0}}));
  CHECK_THAT(error_of([&] { run_train(random, nullptr); }), Catch::Contains("stale") && Catch::Contains("select score"));
  // mismatched: adapters applied to another base than they were trained on; a
  // stage fed by a producer that ran with another config.
  auto other = random;
  other.target.base = selector;
  CHECK_THAT(error_of([&] { run_eval(other, nullptr); }), Catch::Contains("target.base=" + selector));
  auto late = cfg;
  late.score.epoch = 3;
  CHECK_THAT(error_of([&] { run_score(late, nullptr); }), Catch::Contains("score.epoch"));
}

TEST_CASE("stages refuse bad inputs with one line naming the cause", "[selection][stages]") {
  TempDir dir;
  SelectConfig cfg;
  cfg.out_dir = dir / "sel";
  cfg.corpus.data_dir = dir / "nothing";
  CHECK_THAT(error_of([&] { run_mix(cfg, nullptr); }), Catch::Contains(dir / "nothing"));
  CHECK_THAT(error_of([&] { run_warmup(cfg, nullptr); }), Catch::Contains("warmup.selector"));
  cfg.warmup.selector = dir / "missing.pt";
  CHECK_THAT(error_of([&] { run_warmup(cfg, nullptr); }), Catch::Contains("mixed.jsonl") && Catch::Contains("select mix"));
  CHECK_THAT(error_of([&] { run_train(cfg, nullptr); }), Catch::Contains("target.base"));
  cfg.target.base = dir / "missing.pt";
  CHECK_THAT(error_of([&] { run_train(cfg, nullptr); }), Catch::Contains("selected.jsonl") && Catch::Contains("select score"));
}
