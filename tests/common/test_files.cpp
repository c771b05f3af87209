// common/files.hpp: atomic writes that leave the old file whole, reads that name the path.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "common/error.hpp"
#include "common/files.hpp"

namespace fs = std::filesystem;
using namespace moesim;

namespace {
struct Dir {
  fs::path p;
  Dir() : p(fs::temp_directory_path() / ("moesim-files-" + std::to_string(::getpid()))) {
    fs::remove_all(p);
    fs::create_directories(p);
  }
  ~Dir() {
    std::error_code ec;
    fs::permissions(p, fs::perms::owner_all, ec);
    fs::remove_all(p, ec);
  }
};
}  // namespace

TEST_CASE("write_file_atomic replaces the file whole and leaves no temporary behind") {
  Dir d;
  const std::string f = (d.p / "a.txt").string();
  write_file_atomic(f, "first");
  write_file_atomic(f, "second, longer");
  CHECK(read_file(f) == "second, longer");
  int files = 0;
  for (const auto& e : fs::directory_iterator(d.p)) files += e.is_regular_file();
  CHECK(files == 1);
  write_file_atomic(f, "");
  CHECK(read_file(f).empty());
}

TEST_CASE("a failed write names the path and leaves the old content") {
  Dir d;
  const std::string f = (d.p / "keep.txt").string();
  write_file_atomic(f, "old");
  if (::geteuid() != 0) {  // root writes into read-only folders anyway
    fs::permissions(d.p, fs::perms::owner_read | fs::perms::owner_exec);
    CHECK_THROWS_WITH(write_file_atomic(f, "new"), Catch::Contains("keep.txt") && Catch::Contains("cannot create"));
    fs::permissions(d.p, fs::perms::owner_all);
  }
  CHECK_THROWS_WITH(write_file_atomic((d.p / "no/such/dir/x").string(), "x"), Catch::Contains("cannot create"));
  CHECK(read_file(f) == "old");
  CHECK_THROWS_WITH(read_file((d.p / "missing").string()), Catch::Contains("missing: cannot read"));
  CHECK_THROWS_WITH(read_file(d.p.string()), Catch::Contains("is a folder"));
}

TEST_CASE("commit_file moves a finished temporary into place; remove_temp_files clears leftovers") {
  Dir d;
  {
    std::ofstream(d.p / "x.tmp") << "done";
    std::ofstream(d.p / "left.123.tmp") << "killed mid-write";
  }
  commit_file((d.p / "x.tmp").string(), (d.p / "x").string());
  CHECK(read_file((d.p / "x").string()) == "done");
  CHECK_FALSE(fs::exists(d.p / "x.tmp"));
  remove_temp_files(d.p.string());
  CHECK_FALSE(fs::exists(d.p / "left.123.tmp"));
  CHECK(fs::exists(d.p / "x"));
}

TEST_CASE("DirLock: a second holder of one folder is refused with the caller's words") {
  Dir d;
  DirLock a(d.p.string(), "another sweep is writing into this folder");
  CHECK_THROWS_WITH(DirLock(d.p.string(), "another sweep is writing into this folder"),
                    Catch::EndsWith(": another sweep is writing into this folder"));
}

TEST_CASE("MappedFile: the file's bytes as written, empty for an empty file, errors name the path") {
  Dir d;
  const std::string f = (d.p / "m.bin").string();
  std::string content(70000, '\0');  // more than a page, with every byte value
  for (std::size_t i = 0; i < content.size(); ++i) content[i] = static_cast<char>((i * 131) % 256);
  write_file_atomic(f, content);
  {
    const MappedFile m(f);
    CHECK(m.bytes() == content);
    // A rename over the path (how every moesim file is replaced) leaves the mapping whole.
    write_file_atomic(f, "new");
    CHECK(m.bytes() == content);
  }
  CHECK(MappedFile(f).bytes() == "new");
  write_file_atomic(f, "");
  CHECK(MappedFile(f).bytes().empty());
  CHECK_THROWS_WITH(MappedFile((d.p / "none.bin").string()), Catch::Contains("none.bin") && Catch::Contains("cannot read"));
  CHECK_THROWS_WITH(MappedFile(d.p.string()), Catch::Contains("is a folder"));
}
