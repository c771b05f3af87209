// selection/manifest.hpp: a stage's record of its files, stale inputs refused.
#include <catch2/catch.hpp>

#include "../torch_backend/helpers.hpp"
#include "common/files.hpp"
#include "selection/manifest.hpp"

using namespace moesim;
using namespace moesim::selection;
using moesim::tb_test::TempDir;

TEST_CASE("manifest round-trip; an output changed after its stage wrote it is refused as stale", "[selection][manifest]") {
  TempDir dir;
  const auto in = dir / "in.txt", out = dir / "out.txt";
  write_file_atomic(in, "input");
  write_file_atomic(out, "output");
  Manifest m{"score", {{"score.method", "router"}}, {{in, file_digest(in)}}, {{out, file_digest(out)}}};
  write_manifest(dir.path.string(), m);
  const auto back = read_manifest(dir.path.string());
  CHECK(back.stage == "score");
  CHECK(back.config == m.config);
  CHECK(back.outputs == m.outputs);
  CHECK_NOTHROW(require_output(dir.path.string(), "score", out));
  CHECK(stage_current(dir.path.string(), m.config, {in}));
  CHECK_FALSE(stage_current(dir.path.string(), {{"score.method", "random"}}, {in}));

  write_file_atomic(out, "edited");
  CHECK_THROWS_WITH(require_output(dir.path.string(), "score", out),
                    Catch::Contains(out + ": stale") && Catch::Contains("rerun `moesim select score`"));
  CHECK_FALSE(stage_current(dir.path.string(), m.config, {in}));
  CHECK_THROWS_WITH(require_output(dir.path.string(), "mix", out), Catch::Contains("not an output recorded by `select mix`"));
  CHECK_THROWS_WITH(require_output((dir / "none"), "mix", dir / "none/x"), Catch::Contains("missing"));
}

TEST_CASE("file digest: FNV-1a 64 of the bytes (empty file = the offset basis)", "[selection][manifest]") {
  TempDir dir;
  write_file_atomic(dir / "e", "");
  CHECK(file_digest(dir / "e") == "cbf29ce484222325");
  write_file_atomic(dir / "a", "a");
  CHECK(file_digest(dir / "a") == "af63dc4c8601ec8c");  // published FNV-1a 64 test vector for "a"
  CHECK_THROWS_WITH(file_digest(dir / "nope"), Catch::Contains("cannot be read"));
}
