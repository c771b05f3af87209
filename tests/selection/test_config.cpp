// selection/config.hpp: YAML + overrides, errors naming the key.
#include <catch2/catch.hpp>

#include "../torch_backend/helpers.hpp"
#include "selection/config.hpp"

using namespace moesim;
using namespace moesim::selection;
using moesim::tb_test::TempDir;
using moesim::tb_test::write_text;

TEST_CASE("select config: nested YAML and key=value overrides; every key dumps and reloads", "[selection][config]") {
  TempDir dir;
  write_text(dir / "c.yaml", "seed: 4\nout_dir: x\nscore:\n  method: length\n  trash_expert_ratio: 0.25\ntarget:\n  lora_rank: 4\n");
  auto cfg = load_select_config(dir / "c.yaml");
  CHECK(cfg.seed == 4);
  CHECK(cfg.score.method == "length");
  CHECK(cfg.score.trash_expert_ratio == 0.25);
  CHECK(cfg.target.lora_rank == 4);
  apply_select_overrides(cfg, {"score.method=router", "warmup.epochs=3", "corpus.kinds=shuffle,truncate"});
  CHECK(cfg.score.method == "router");
  CHECK(cfg.warmup.epochs == 3);
  CHECK(cfg.corpus.kinds == "shuffle,truncate");
  write_text(dir / "d.yaml", dump_select_config(cfg));
  CHECK(select_fields(load_select_config(dir / "d.yaml")) == select_fields(cfg));
  CHECK(section_fields(cfg, "warmup").size() == 6);
  CHECK(corpus_dir(cfg) == "x/corpus");
}

TEST_CASE("select config errors name the key", "[selection][config]") {
  SelectConfig cfg;
  CHECK_THROWS_WITH(apply_select_overrides(cfg, {"score.methd=router"}), Catch::Contains("did you mean 'score.method'"));
  CHECK_THROWS_WITH(apply_select_overrides(cfg, {"score.method=best"}), Catch::Contains("'score.method'"));
  CHECK_THROWS_WITH(apply_select_overrides(cfg, {"score.selection_percentage=0"}), Catch::Contains("out of range"));
  cfg.corpus.kinds = "shuffle,upcase";
  CHECK_THROWS_WITH(validate(cfg), Catch::Contains("corpus.kinds") && Catch::Contains("upcase"));
  cfg = SelectConfig{};
  cfg.corpus.heldout_first = 1500;  // inside [1200, 2200)
  CHECK_THROWS_WITH(validate(cfg), Catch::Contains("corpus.heldout_first") && Catch::Contains("overlap"));
}
