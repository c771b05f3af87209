// C4 loader, JSON line parser, tokenizer and corpus cache on fixtures written here.
#include <catch2/catch.hpp>

#include "helpers.hpp"
#include "policies/types.hpp"
#include "torch_backend/c4_loader.hpp"
#include "torch_backend/corpus.hpp"
#include "torch_backend/packed_data.hpp"
#include "torch_backend/tokenizer.hpp"

using namespace moesim;
using namespace moesim::torch_backend;
using namespace moesim::tb_test;

TEST_CASE("JSON line parser: text, escapes, surrogates, errors", "[torch][data]") {
  std::string text, why;
  REQUIRE(parse_c4_line(R"({"url": "x", "text": "caf\u00e9 \ud83d\ude00\n\"q\"", "n": [1, {"a": null}], "t": 1.5e3})", text, why));
  CHECK(text == "caf\xc3\xa9 \xf0\x9f\x98\x80\n\"q\"");
  CHECK_FALSE(parse_c4_line(R"({"text": "unterminated)", text, why));
  CHECK(why.find("invalid JSON") != std::string::npos);
  CHECK_FALSE(parse_c4_line(R"({"url": "x"})", text, why));
  CHECK(why == "no \"text\" field");
  CHECK_FALSE(parse_c4_line(R"({"text": 42})", text, why));
  CHECK(why == "\"text\" is not a string");
  CHECK_FALSE(parse_c4_line(R"({"text": "a"} trailing)", text, why));
  CHECK_FALSE(parse_c4_line(R"(["text"])", text, why));
}

TEST_CASE("loader: malformed lines are skipped and counted with file and line", "[torch][data]") {
  TempDir d;
  const auto f = d / "c4-train.00000-of-00001.jsonl";
  write_text(f, json_line("first doc") + "{not json\n" + "{\"url\": \"u\"}\n" + "\n" + json_line("second doc") +
                    "{\"text\": [1]}\n");
  std::vector<std::string> docs;
  LoadReport rep;
  load_shard(f, docs, rep);
  REQUIRE(docs.size() == 2);
  CHECK(docs[1] == "second doc");
  CHECK(rep.skipped == 3);
  REQUIRE(rep.warnings.size() == 3);
  CHECK(rep.warnings[0].find(f + ":2: skipped: invalid JSON") == 0);
  CHECK(rep.warnings[1] == f + ":3: skipped: no \"text\" field");
  CHECK(rep.warnings[2] == f + ":6: skipped: \"text\" is not a string");
}

TEST_CASE("JSON line parser: invalid UTF-8, lone surrogates, NUL and a duplicate text key are refused", "[torch][data]") {
  std::string text, why;
  CHECK_FALSE(parse_c4_line("{\"text\": \"caf\xe9\"}", text, why));  // Latin-1 byte, not UTF-8
  CHECK_THAT(why, Catch::Contains("UTF-8"));
  CHECK_FALSE(parse_c4_line("{\"text\": \"\xc3\"}", text, why));  // truncated sequence
  CHECK_THAT(why, Catch::Contains("UTF-8"));
  CHECK_FALSE(parse_c4_line(R"({"text": "a\ud800b"})", text, why));  // high surrogate alone
  CHECK_THAT(why, Catch::Contains("surrogate"));
  CHECK_FALSE(parse_c4_line(R"({"text": "a\udc00"})", text, why));  // low surrogate alone
  CHECK_THAT(why, Catch::Contains("surrogate"));
  CHECK_FALSE(parse_c4_line(R"({"text": "a\u0000b"})", text, why));
  CHECK_THAT(why, Catch::Contains("NUL"));
  CHECK_FALSE(parse_c4_line(R"({"text": "one", "text": "two"})", text, why));
  CHECK_THAT(why, Catch::Contains("text"));
}

TEST_CASE("loader: a shard where every line is malformed says why, line by line", "[torch][data]") {
  TempDir d;
  const auto f = d / "c4-train.00000-of-00001.jsonl";
  write_text(f, "{\"text\": \"caf\xe9\"}\n{\"url\": 1}\n{bad\n");
  LoadReport rep;
  const auto msg = error_of([&] { (void)load_split(d.path.string(), "c4-train.", rep); });
  CHECK_THAT(msg, Catch::Contains("hold no valid document; " + f + ":1: skipped: ") &&
                      Catch::Contains(f + ":2: skipped: no \"text\" field") && Catch::Contains(f + ":3: skipped: "));
}

TEST_CASE("loader: truncated gzip is one clear error naming the file", "[torch][data]") {
  TempDir d;
  const auto f = d / "c4-train.00000-of-00001.json.gz";
  std::string big;
  for (int i = 0; i < 200; ++i) big += json_line(synthetic_doc(static_cast<std::uint64_t>(i), 8));
  write_gzip(f, big);
  const auto full = fs::file_size(f);
  fs::resize_file(f, full / 2);
  const auto msg = error_of([&] { (void)read_shard_bytes(f); });
  CHECK(msg.find(f) == 0);
  CHECK(msg.find("truncated") != std::string::npos);
  CHECK(msg.find('\n') == std::string::npos);
  // The same file through the split loader: the error still names it.
  CHECK(error_of([&] {
          LoadReport r;
          (void)load_split(d.path.string(), "c4-train.", r);
        }).find(f) == 0);
}

TEST_CASE("loader: empty files, missing splits and directories", "[torch][data]") {
  TempDir d;
  write_text(d / "c4-train.00000-of-00001.json", "");
  std::vector<std::string> docs;
  LoadReport rep;
  load_shard(d / "c4-train.00000-of-00001.json", docs, rep);
  CHECK(docs.empty());
  REQUIRE(rep.warnings.size() == 1);
  CHECK(rep.warnings[0].find("empty file") != std::string::npos);
  LoadReport r2;
  CHECK(error_of([&] { (void)load_split(d.path.string(), "c4-train.", r2); }).find("no valid document") != std::string::npos);
  CHECK(error_of([&] { (void)load_split(d.path.string(), "c4-validation.", r2); }).find("has no c4-validation.") !=
        std::string::npos);
  CHECK(error_of([&] { (void)load_split(d / "nope", "c4-train.", r2); }).find("data.dir") == 0);
}

TEST_CASE("loader: .json, .jsonl and .json.gz read alike, splits kept apart", "[torch][data]") {
  TempDir d;
  write_c4_fixture(d, 6, 3);
  LoadReport rt, rv;
  const auto train = load_split(d.path.string(), "c4-train.", rt);
  const auto val = load_split(d.path.string(), "c4-validation.", rv);
  CHECK(train.size() == 6);
  CHECK(val.size() == 3);
  CHECK(rt.files.size() == 2);
  CHECK(rv.files.size() == 1);
  CHECK(rt.skipped == 0);
}

TEST_CASE("tokenizer: trained on documents, encode/decode round trip", "[torch][data]") {
  std::vector<std::string> docs;
  for (int i = 0; i < 40; ++i) docs.push_back(synthetic_doc(static_cast<std::uint64_t>(i), 10));
  for (const char* type : {"bpe", "unigram"}) {
    TokenizerSpec spec;
    spec.vocab = 80;
    spec.type = type;
    auto tok = Tokenizer::train(docs, spec);
    CHECK(tok.vocab_size() <= 80);
    CHECK(tok.eos_id() == 2);
    const std::string text = "The big dog ran to the river. A bird sang in every garden.";
    const auto ids = tok.encode(text);
    CHECK(ids.size() < text.size());
    CHECK(tok.decode(ids) == text);
    // The serialized proto rebuilds the very same tokenizer.
    auto again = Tokenizer::from_proto(tok.proto(), "test");
    CHECK(again.encode(text) == ids);
  }
  CHECK(error_of([] { (void)Tokenizer::from_proto("garbage", "bad.model"); }).find("bad.model: not a SentencePiece model") == 0);
}

TEST_CASE("corpus: tokenizer and tokens cached by content, reused on the next run", "[torch][data]") {
  TempDir d, cache;
  write_c4_fixture(d, 30, 6);
  auto cfg = tiny_config();
  cfg.data.dir = d.path.string();
  cfg.data.cache_dir = cache.path.string();
  const auto a = prepare_corpus(cfg, nullptr);
  CHECK_FALSE(a.tokenizer_cached);
  CHECK(fs::exists(a.tokenizer_path));
  CHECK(a.train.size() > 1000);
  CHECK(a.val.size() > 100);
  CHECK(std::count(a.train.begin(), a.train.end(), a.tokenizer.eos_id()) == 30);  // one EOS per document
  const auto b = prepare_corpus(cfg, nullptr);
  CHECK(b.tokenizer_cached);
  CHECK(b.tokens_cached);
  CHECK(b.train == a.train);
  CHECK(b.val == a.val);
  // Another vocabulary is another cache entry.
  cfg.tokenizer.vocab = 70;
  const auto c = prepare_corpus(cfg, nullptr);
  CHECK_FALSE(c.tokenizer_cached);
  CHECK(c.tokenizer_path != a.tokenizer_path);
}

TEST_CASE("corpus: a vocabulary the training split cannot support is refused, and nothing is cached", "[torch][data]") {
  TempDir d, cache;
  write_c4_fixture(d, 30, 6);
  auto cfg = tiny_config();
  cfg.data.dir = d.path.string();
  cfg.data.cache_dir = cache.path.string();
  cfg.tokenizer.vocab = 100000;
  try {
    (void)prepare_corpus(cfg, nullptr);
    FAIL("a 100000-piece vocabulary from 30 short documents was accepted");
  } catch (const KeyError& e) {
    CHECK(e.key() == "tokenizer.vocab");
    CHECK_THAT(e.what(), Catch::StartsWith("config key 'tokenizer.vocab' = 100000: the training split supports only "));
  }
  for (const auto& e : fs::directory_iterator(cache.path)) CHECK(e.path().extension() != ".model");
}

TEST_CASE("corpus: a read-only data dir is never written; the cache goes elsewhere", "[torch][data]") {
  TempDir d;
  fs::permissions(d.path, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read | fs::perms::group_exec);
  DataConfig dc;
  dc.dir = d.path.string();
  CHECK(resolve_cache_dir(dc).find(d.path.string()) != 0);
  fs::permissions(d.path, fs::perms::owner_all);
  CHECK(resolve_cache_dir(dc).find(d.path.string()) == 0);
  dc.cache_dir = "/somewhere/else";
  CHECK(resolve_cache_dir(dc) == "/somewhere/else");
}

TEST_CASE("packing and sampler: next-token targets, exact resume of the order", "[torch][data]") {
  std::vector<std::int32_t> s(101);
  for (int i = 0; i <= 100; ++i) s[static_cast<std::size_t>(i)] = i;
  PackedSequences p(&s, 10);
  REQUIRE(p.size() == 10);
  std::int64_t in[10], tg[10];
  p.fill(3, in, tg);
  CHECK(in[0] == 30);
  CHECK(tg[0] == 31);
  CHECK(tg[9] == 40);
  Sampler a(p.size(), 5), b(p.size(), 5);
  (void)a.next(7);
  (void)a.next(7);  // crosses into epoch 1
  b.set_state(a.state());
  CHECK(a.state().epoch == 1);
  CHECK(a.next(13) == b.next(13));
}
