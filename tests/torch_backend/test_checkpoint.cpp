// Checkpoints resume exactly: the loss curve after a resume equals the
// uninterrupted run's, for stateless, stateful and randomised policies. Altered
// files, another run's config and a second writer are refused by name.
#include <catch2/catch.hpp>

#include <cstring>
#include <limits>

#include "common/files.hpp"
#include "helpers.hpp"
#include "policies/types.hpp"
#include "torch_backend/config.hpp"
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

namespace {

// A stored (uncompressed) zip entry of a checkpoint: its name and where its bytes are.
struct ZipEntry {
  std::string name;
  std::size_t offset = 0, size = 0;
  bool stored = false;  // uncompressed (tensor data and data.pkl are; some code files are deflated)
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Walks the central directory (PK\1\2) from the end record (PK\5\6): the sizes
// live there, not in the local headers.
std::vector<ZipEntry> zip_entries(const std::string& bytes) {
  auto u16 = [&](std::size_t at) { return static_cast<std::size_t>(static_cast<unsigned char>(bytes[at])) |
                                          static_cast<std::size_t>(static_cast<unsigned char>(bytes[at + 1])) << 8; };
  auto u32 = [&](std::size_t at) { return u16(at) | u16(at + 2) << 16; };
  const std::size_t end = bytes.rfind(std::string("PK\5\6", 4));
  REQUIRE(end != std::string::npos);
  std::vector<ZipEntry> out;
  std::size_t at = u32(end + 16);
  for (std::size_t n = u16(end + 10); n > 0; --n) {
    REQUIRE(bytes.compare(at, 4, std::string("PK\1\2", 4)) == 0);
    ZipEntry e;
    e.stored = u16(at + 10) == 0;
    const std::size_t name_len = u16(at + 28), extra = u16(at + 30), comment = u16(at + 32);
    e.name = bytes.substr(at + 46, name_len);
    e.size = u32(at + 20);
    const std::size_t local = u32(at + 42);
    e.offset = local + 30 + u16(local + 26) + u16(local + 28);
    out.push_back(e);
    at += 46 + name_len + extra + comment;
  }
  REQUIRE_FALSE(out.empty());
  return out;
}

// The largest tensor-data entry: float32 weights.
ZipEntry largest_data(const std::vector<ZipEntry>& entries) {
  ZipEntry best;
  for (const auto& e : entries)
    if (e.stored && e.name.find("/data/") != std::string::npos && e.size > best.size) best = e;
  REQUIRE(best.size >= 64);
  return best;
}

}  // namespace

TEST_CASE("a checkpoint with altered bytes is refused: NaN by tensor name, any other change by digest",
          "[torch][checkpoint]") {
  TempDir d;
  auto cfg = tiny_config("rdesi");
  const auto stream = random_stream(2000, cfg.tokenizer.vocab, 4);
  Trainer a(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
  (void)a.step();
  a.save(d / "ck.pt");
  const std::string good = read_bytes(d / "ck.pt");
  const auto entries = zip_entries(good);
  const ZipEntry data = largest_data(entries);
  auto altered = [&](const std::function<void(std::string&)>& edit) {
    std::string b = good;
    edit(b);
    write_text(d / "bad.pt", b);
    Trainer t(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
    return error_of([&] { t.load(d / "bad.pt"); });
  };
  SECTION("a NaN written into a weight") {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const auto msg = altered([&](std::string& b) { std::memcpy(&b[data.offset + 16], &nan, sizeof nan); });
    CHECK_THAT(msg, Catch::StartsWith(d / "bad.pt" + ": tensor '") && Catch::Contains("' holds NaN or infinite values"));
  }
  SECTION("one bit of a weight flipped") {
    const auto msg = altered([&](std::string& b) { b[data.offset + 17] ^= 1; });
    CHECK(msg == d / "bad.pt" + ": model weights do not match their digest: the file was altered or damaged");
  }
  SECTION("a digit of the recorded config edited") {
    // The config text is pickled as is: change its first digit, keeping the length.
    const auto msg = altered([&](std::string& b) {
      const std::string text = dump_config(cfg);
      const auto at = b.find(text);
      REQUIRE(at != std::string::npos);
      const auto digit = at + text.find_first_of("0123456789");
      b[digit] = b[digit] == '1' ? '2' : '1';
    });
    CHECK(msg == d / "bad.pt" + ": checkpoint metadata does not match its digest: the file was altered or damaged");
  }
  SECTION("the unaltered copy still loads") {
    CHECK(altered([](std::string&) {}) == "<no error>");
  }
}

TEST_CASE("resume refuses another config by key, unless asked; steps and logging may change",
          "[torch][checkpoint]") {
  TempDir d;
  auto cfg = tiny_config();
  cfg.train.steps = 2;
  cfg.train.eval_every = 0;
  cfg.train.out_dir = d / "run";
  const auto stream = random_stream(3000, cfg.tokenizer.vocab, 8);
  const TrainData data{&stream, &stream, cfg.tokenizer.vocab, ""};
  { Trainer(cfg, data, nullptr).run(); }
  const std::string config_before = read_bytes(d / "run/config.yaml");
  auto other = cfg;
  other.seed = cfg.seed + 1;
  other.train.lr = 0.002;
  CHECK(error_of([&] { Trainer(other, data, nullptr).run(); }) ==
        d / "run/checkpoint.pt" +
            ": resuming with another config: seed (checkpoint 3, now 4), train.lr (checkpoint 0.003, now 0.002); "
            "set train.allow_config_change=true to continue anyway, or train into another train.out_dir");
  CHECK(read_bytes(d / "run/config.yaml") == config_before);  // the refused run changed nothing
  auto longer = cfg;
  longer.train.steps = 3;
  longer.train.log_every = 1;
  {
    Trainer t(longer, data, nullptr);
    t.run();
    CHECK(t.current_step() == 3);
  }
  other.train.steps = 4;
  other.train.allow_config_change = true;
  {
    Trainer t(other, data, nullptr);
    t.run();
    CHECK(t.current_step() == 4);
  }
}

TEST_CASE("a second training into a folder that one is writing is refused", "[torch][checkpoint]") {
  TempDir d;
  auto cfg = tiny_config();
  cfg.train.steps = 1;
  cfg.train.out_dir = d / "run";
  fs::create_directories(d / "run");
  const auto stream = random_stream(3000, cfg.tokenizer.vocab, 8);
  const DirLock held(d / "run", "held by the test");
  CHECK(error_of([&] { Trainer(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr).run(); }) ==
        d / "run: another `moesim train` is writing into this folder (wait for it, or pick another train.out_dir)");
  CHECK_FALSE(fs::exists(d / "run/config.yaml"));
}

TEST_CASE("resume refuses a log written under another header (an older build's columns)", "[torch][checkpoint]") {
  TempDir d;
  auto cfg = tiny_config();
  cfg.train.steps = 2;
  cfg.train.eval_every = 0;
  cfg.train.eval_batches = 1;
  cfg.train.out_dir = d / "run";
  const auto stream = random_stream(3000, cfg.tokenizer.vocab, 8);
  {
    Trainer t(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
    t.run();
  }
  // Drop the last column from the header and every row, as a log from before the column existed.
  const std::string log = d / "run/train_log.csv";
  std::ifstream in(log);
  std::string text, line;
  while (std::getline(in, line)) text += line.substr(0, line.rfind(',')) + "\n";
  in.close();
  write_text(log, text);
  cfg.train.steps = 4;
  Trainer t(cfg, {&stream, &stream, cfg.tokenizer.vocab, ""}, nullptr);
  CHECK_THAT(error_of([&] { t.run(); }), Catch::StartsWith(log + ": its header is not the one this build writes"));
  std::ifstream again(log);
  CHECK(std::string(std::istreambuf_iterator<char>(again), {}) == text);  // left as it was
}

TEST_CASE("two runs of one seed write byte-identical checkpoints (optimizer state keyed by position)",
          "[torch][checkpoint]") {
  TempDir da, db;  // one file name in two folders: the zip names its entries after the file
  auto cfg = tiny_config("topk");
  const auto stream = random_stream(2000, cfg.tokenizer.vocab, 4);
  const TrainData data{&stream, &stream, cfg.tokenizer.vocab, "proto"};
  // Both alive at once: their parameters cannot share addresses.
  Trainer ta(cfg, data, nullptr), tb(cfg, data, nullptr);
  for (int i = 0; i < 3; ++i) ta.step(), tb.step();
  ta.save(da / "ck.pt");
  tb.save(db / "ck.pt");
  const std::string a = read_file(da / "ck.pt"), b = read_file(db / "ck.pt");
  REQUIRE(!a.empty());
  CHECK(a == b);
}

// The fused kernels split rows and elements over at::parallel_for's threads;
// every reduction across rows goes through fixed blocks added in order, so the
// thread count must not change a bit. 256 rows a step: four RMSNorm gradient
// blocks, several chunks of every row kernel; vocab 512 x dim 64 and the
// experts give AdamW more than one 16K-element chunk. (The checkpoint files
// themselves differ: they hold the config, train.threads included.)
TEST_CASE("training on 1 and on 2 threads gives bitwise the same losses and parameters, fp32 and bf16",
          "[torch][checkpoint]") {
  for (bool bf16 : {false, true}) {
    CAPTURE(bf16);
    auto cfg = tiny_config("topk");
    cfg.data.seq_len = 32;
    cfg.train.batch = 8;
    cfg.tokenizer.vocab = 512;
    cfg.model.dim = 64;
    cfg.model.expert_hidden = 128;
    cfg.train.bf16 = bf16;
    cfg.train.clip = 0.5;  // the gradient norm's chunked sum scales every step
    const auto stream = random_stream(6000, cfg.tokenizer.vocab, 8);
    const TrainData data{&stream, &stream, cfg.tokenizer.vocab, "proto"};
    auto run = [&](int threads, std::vector<double>& losses, std::vector<std::pair<std::string, torch::Tensor>>& params) {
      auto c = cfg;
      c.train.threads = threads;
      Trainer t(c, data, nullptr);
      REQUIRE(torch::get_num_threads() == threads);
      for (int i = 0; i < 4; ++i) losses.push_back(t.step().loss);
      for (const auto& p : t.model().named_parameters()) params.emplace_back(p.key(), p.value().detach().clone());
    };
    std::vector<double> loss1, loss2;
    std::vector<std::pair<std::string, torch::Tensor>> p1, p2;
    run(1, loss1, p1);
    run(2, loss2, p2);
    CHECK(loss1 == loss2);
    REQUIRE(p1.size() == p2.size());
    for (std::size_t i = 0; i < p1.size(); ++i) {
      CAPTURE(p1[i].first);
      CHECK(torch::equal(p1[i].second, p2[i].second));
    }
  }
}
