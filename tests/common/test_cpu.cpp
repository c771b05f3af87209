// The CPU description printed next to speed figures agrees with /proc/cpuinfo.
#include <catch2/catch.hpp>

#include <fstream>
#include <string>

#include "common/cpu.hpp"

using namespace moesim;

TEST_CASE("cpu: model and ISA flags agree with /proc/cpuinfo", "[cpu]") {
  std::ifstream in("/proc/cpuinfo");
  REQUIRE(in);
  std::string text((std::istreambuf_iterator<char>(in)), {});
  const auto has = [&](const std::string& flag) { return text.find(" " + flag + " ") != std::string::npos ||
                                                        text.find(" " + flag + "\n") != std::string::npos; };
  CHECK(text.find(cpu_model()) != std::string::npos);
  const std::string isa = cpu_isa();
  CHECK((isa.find("AVX2") != std::string::npos) == has("avx2"));
  CHECK((isa.find("AVX-512F") != std::string::npos) == has("avx512f"));
  CHECK((isa.find("AVX-512-BF16") != std::string::npos) == has("avx512_bf16"));
  CHECK((isa.find("AMX-BF16") != std::string::npos) == has("amx_bf16"));
  CHECK((isa.find("no AMX") != std::string::npos) == !has("amx_bf16"));
}
