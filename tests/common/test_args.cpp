// common/args.hpp: one command-line parser for every subcommand.
#include <catch2/catch.hpp>

#include "common/args.hpp"
#include "common/error.hpp"

using namespace moesim;

namespace {
ArgSpec spec() {
  ArgSpec s;
  s.options = {"--out", "--threads"};
  s.switches = {"--quiet"};
  s.aliases = {{"-o", "--out"}, {"-j", "--threads"}};
  s.max_positional = 1;
  return s;
}
}  // namespace

TEST_CASE("parse_args: options in both spellings, aliases, switches, overrides and one positional") {
  const auto a = parse_args({"scen.yaml", "-o", "dir", "steps=3", "--threads=2", "--quiet", "x.y=[1, 2]"}, spec(), "sweep");
  CHECK(a.positional == std::vector<std::string>{"scen.yaml"});
  CHECK(a.get("--out") == "dir");
  CHECK(a.whole("--threads", 0, 1, 8) == 2);
  CHECK(a.has("--quiet"));
  CHECK(a.overrides == std::vector<std::string>{"steps=3", "x.y=[1, 2]"});
  CHECK(a.get("--missing", "def") == "def");
  CHECK(wants_help({"a", "-h"}));
  CHECK_FALSE(wants_help({"a"}));
}

TEST_CASE("parse_args errors name the command and the option") {
  CHECK_THROWS_WITH(parse_args({"--out"}, spec(), "sweep"), "sweep: --out needs a value");
  CHECK_THROWS_WITH(parse_args({"--out="}, spec(), "sweep"), "sweep: --out needs a non-empty value");
  CHECK_THROWS_WITH(parse_args({"--qiet"}, spec(), "sweep"),
                    "sweep: unknown option '--qiet' (did you mean '--quiet'?) (see --help)");
  CHECK_THROWS_WITH(parse_args({"a.yaml", "b.yaml"}, spec(), "sweep"),
                    Catch::Contains("unexpected argument 'b.yaml'") && Catch::Contains("already given: 'a.yaml'"));
  const auto a = parse_args({"--threads", "0"}, spec(), "sweep");
  CHECK_THROWS_WITH(a.whole("--threads", 1, 1, 4096), "--threads: expected a whole number in [1, 4096], got '0'");
}
