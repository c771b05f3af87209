// Recorded streams: what TraceWriter records reads back through TraceReader, a
// plain logits .npy is a trace, and every bad trace is refused naming the file.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "../sim/scenario_helpers.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/npy.hpp"
#include "trace/trace.hpp"
#include "trace/trace_reader.hpp"

using namespace moesim;
using moesim::test::TempDir;

namespace {

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "<no error>";
}

std::vector<float> ramp(int n, float base) {
  std::vector<float> v(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) v[i] = base + 0.25f * static_cast<float>(i % 7) - 0.1f * static_cast<float>(i % 3);
  return v;
}

// Two layers (1 and 3), steps 10 and 20, T = 3 tokens, E = 4, k = 2.
void write_trace(const std::string& dir) {
  TraceWriter w(dir);
  for (long step : {10L, 20L}) {
    const std::int64_t ids[3] = {step, step + 1, step + 2};
    w.record_tokens(step, ids, 3);
    for (int layer : {1, 3}) {
      const auto z = ramp(12, static_cast<float>(layer + step));
      w.record_logits(layer, step, z.data(), 3, 4);
      Assignment a;
      a.reset(3, 4, 2);
      // Token t asks for experts t and t+1; capacity refuses token 2's second choice.
      for (int t = 0; t < 3; ++t) {
        a.requested[t * 2] = t;
        a.requested[t * 2 + 1] = t + 1;
        a.expert[t * 2] = t;
        a.expert[t * 2 + 1] = t == 2 ? -1 : t + 1;
      }
      const float perf[6] = {1, 2, 3, 4, 5, 6};
      w.record_routing(layer, step, a, perf);
    }
    w.commit();
  }
}

}  // namespace

TEST_CASE("trace reader: what the writer records reads back, per layer and step", "[trace]") {
  TempDir d("trace-rt");
  write_trace(d / "t");
  const TraceReader r(d / "t", "", {});
  CHECK(r.layer_ids() == std::vector<int>{1, 3});
  CHECK(r.recorded_steps() == std::vector<long>{10, 20});
  CHECK(r.tokens() == 3);
  CHECK(r.experts() == 4);
  CHECK(r.has_token_ids());
  CHECK(r.has_perf());
  std::vector<float> z;
  r.logits(1, 1, z);
  CHECK(z == ramp(12, 23.0f));
  std::vector<std::int64_t> ids;
  r.token_ids(1, ids);
  CHECK(ids == std::vector<std::int64_t>{20, 21, 22});
  // Expert 0 served slot perf 1; expert 1: 2 and 3; expert 2: 4 and 5; expert 3 nothing (token 2's
  // second choice was refused), so its mean is NaN.
  std::vector<float> p;
  r.expert_perf(0, 0, p);
  REQUIRE(p.size() == 4);
  CHECK(p[0] == 1.0f);
  CHECK(p[1] == 2.5f);
  CHECK(p[2] == 4.5f);
  CHECK(std::isnan(p[3]));
  const auto counts = read_npy(d / "t/layer1_step10_counts.npy").as_int64();
  CHECK(counts == std::vector<std::int64_t>{1, 2, 2, 0, 0, 0, 0, 1});  // served, then refused per expert
  const TraceReader only3(d / "t", "", {3});
  CHECK(only3.layer_ids() == std::vector<int>{3});
}

TEST_CASE("trace reader: a plain logits .npy, 2-D or 3-D, with optional token ids", "[trace]") {
  TempDir d("trace-plain");
  const auto z = ramp(2 * 5 * 3, 0.0f);
  write_file_atomic(d / "l.npy", npy_bytes(z.data(), {2, 5, 3}));
  const std::int64_t ids[10] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
  write_file_atomic(d / "ids.npy", npy_bytes(ids, {2, 5}));
  const TraceReader r(d / "l.npy", d / "ids.npy", {});
  CHECK(r.steps() == 2);
  CHECK(r.tokens() == 5);
  CHECK(r.experts() == 3);
  CHECK(r.layer_ids() == std::vector<int>{0});
  CHECK_FALSE(r.has_perf());
  std::vector<float> s1;
  r.logits(0, 1, s1);
  CHECK(s1 == std::vector<float>(z.begin() + 15, z.end()));
  std::vector<std::int64_t> got;
  r.token_ids(1, got);
  CHECK(got == std::vector<std::int64_t>{4, 3, 2, 1, 0});
  write_file_atomic(d / "one.npy", npy_bytes(z.data(), {10, 3}));
  CHECK(TraceReader(d / "one.npy", "", {}).steps() == 1);
  // Token ids of the wrong shape, a layer a plain file does not have.
  CHECK_THAT(error_of([&] { TraceReader(d / "l.npy", d / "one.npy", {}); }), Catch::StartsWith(d / "one.npy" + ":"));
  CHECK_THAT(error_of([&] { TraceReader(d / "l.npy", "", {2}); }), Catch::Contains("layer 0 only"));
  const std::int32_t bad[6] = {1, 2, 3, 4, 5, 6};
  write_file_atomic(d / "i.npy", npy_bytes(bad, {2, 3}));
  CHECK_THAT(error_of([&] { TraceReader(d / "i.npy", "", {}); }), Catch::StartsWith(d / "i.npy" + ":"));
}

TEST_CASE("trace reader: bad traces are refused with the file named", "[trace]") {
  TempDir d("trace-bad");
  CHECK_THAT(error_of([&] { TraceReader(d / "nope", "", {}); }), Catch::StartsWith(d / "nope" + ": no such trace"));
  write_trace(d / "t");
  // A layer that was not recorded.
  CHECK_THAT(error_of([&] { TraceReader(d / "t", "", {2}); }), Catch::Contains("no layer 2 recorded (recorded layers: 1, 3)"));
  // A missing step file.
  {
    TempDir e("trace-missing");
    write_trace(e / "t");
    std::filesystem::remove(e / "t/layer3_step20.npy");
    CHECK_THAT(error_of([&] { TraceReader(e / "t", "", {}); }), Catch::StartsWith(e / "t/layer3_step20.npy: no such file"));
  }
  // A truncated .npy: refused when the step is loaded, naming it.
  {
    TempDir e("trace-trunc");
    write_trace(e / "t");
    const std::string f = e / "t/layer1_step20.npy";
    const std::string bytes = read_file(f);
    write_file_atomic(f, bytes.substr(0, bytes.size() - 5));
    const TraceReader r(e / "t", "", {});
    std::vector<float> z;
    CHECK_NOTHROW(r.logits(0, 0, z));
    CHECK_THAT(error_of([&] { r.logits(0, 1, z); }), Catch::StartsWith(f + ":"));
  }
  // A file whose shape is not the manifest's.
  {
    TempDir e("trace-shape");
    write_trace(e / "t");
    const auto z = ramp(8, 0.0f);
    write_file_atomic(e / "t/layer1_step10.npy", npy_bytes(z.data(), {2, 4}));
    const TraceReader r(e / "t", "", {});
    std::vector<float> got;
    CHECK_THAT(error_of([&] { r.logits(0, 0, got); }),
               Catch::StartsWith(e / "t/layer1_step10.npy: shape (2, 4) where the manifest says (3, 4)"));
  }
  // E that differs between layers.
  {
    TempDir e("trace-e");
    TraceWriter w(e / "t");
    const auto z = ramp(12, 0.0f);
    w.record_logits(0, 1, z.data(), 3, 4);
    w.record_logits(1, 1, z.data(), 4, 3);
    w.commit();
    CHECK_THAT(error_of([&] { TraceReader(e / "t", "", {}); }),
               Catch::StartsWith(e / "t/layer1_step1.npy: 3 experts where layer 0 has 4"));
  }
  // NaN logits: the file, the recorded step, the token and the expert.
  {
    TempDir e("trace-nan");
    TraceWriter w(e / "t");
    auto z = ramp(12, 0.0f);
    z[2 * 4 + 1] = std::numeric_limits<float>::quiet_NaN();
    w.record_logits(0, 7, z.data(), 3, 4);
    w.commit();
    const TraceReader r(e / "t", "", {});
    std::vector<float> got;
    CHECK(error_of([&] { r.logits(0, 0, got); }) == e / "t/layer0_step7.npy" + ": NaN logit at step 7, token 2, expert 1");
    write_file_atomic(e / "p.npy", npy_bytes(z.data(), {3, 4}));
    CHECK(error_of([&] { TraceReader(e / "p.npy", "", {}); }) == e / "p.npy" + ": NaN logit at step 1, token 2, expert 1");
  }
}

TEST_CASE("trace reader: token ids or performance recorded for only some steps are refused", "[trace]") {
  TempDir d("trace-partial");
  TraceWriter w(d / "t");
  const auto z = ramp(12, 0.0f);
  const std::int64_t ids[3] = {1, 2, 3};
  w.record_logits(0, 1, z.data(), 3, 4);
  w.record_tokens(1, ids, 3);
  w.record_logits(0, 2, z.data(), 3, 4);  // step 2: no token ids
  w.commit();
  CHECK(error_of([&] { TraceReader(d / "t", "", {}); }) ==
        d / "t/manifest.json" + ": token_ids recorded for some steps but not for step 2");
  // None at all is a trace without token ids (positions stand in), not an error.
  TempDir e("trace-none");
  TraceWriter n(e / "t");
  n.record_logits(0, 1, z.data(), 3, 4);
  n.commit();
  const TraceReader r(e / "t", "", {});
  CHECK_FALSE(r.has_token_ids());
  CHECK_FALSE(r.has_perf());
  std::vector<std::int64_t> got;
  CHECK_THAT(error_of([&] { r.token_ids(0, got); }), Catch::StartsWith(e / "t" + ": the trace has no token ids"));
}
