// DataParallel (torch_backend/data_parallel.hpp) with two ranks as two threads of
// this process, rendezvous over loopback. Without Gloo, join refuses two ranks.
#include "torch_backend/data_parallel.hpp"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <functional>
#include <string>
#include <thread>

#include "common/error.hpp"
#include "common/launch.hpp"

using namespace moesim;
using namespace moesim::torch_backend;

namespace {

// Runs body(rank's DataParallel) on ranks 0 and 1 at once.
void on_two_ranks(const std::function<void(DataParallel&)>& body) {
  ::setenv("MASTER_ADDR", "127.0.0.1", 1);
  ::setenv("MASTER_PORT", std::to_string(free_loopback_port()).c_str(), 1);
  std::string errors[2];
  auto rank = [&](int r) {
    try {
      LaunchPlace p;
      p.rank = r;
      p.size = 2;
      p.launcher = "moesim";
      auto dp = DataParallel::join(p);
      body(*dp);
    } catch (const std::exception& e) {
      errors[r] = e.what();
    }
  };
  std::thread t0(rank, 0), t1(rank, 1);
  t0.join();
  t1.join();
  REQUIRE(errors[0].empty());
  REQUIRE(errors[1].empty());
}

}  // namespace

TEST_CASE("DataParallel: one process needs no group", "[torch][ddp]") {
  LaunchPlace one;
  CHECK(DataParallel::join(one) == nullptr);
}

TEST_CASE("DataParallel: all_gather concatenates in rank order; broadcast copies rank 0's values", "[torch][ddp]") {
  if (!DataParallel::available()) {
    LaunchPlace two;
    two.size = 2;
    CHECK_THROWS_WITH(DataParallel::join(two), Catch::Contains("without c10d's Gloo backend"));
    return;
  }
  torch::Tensor gathered[2], bcast[2];
  on_two_ranks([&](DataParallel& dp) {
    const int r = dp.rank();
    gathered[r] = dp.all_gather(torch::full({2, 3}, static_cast<float>(r + 1)));
    auto t = torch::full({4}, static_cast<float>(10 * (r + 1)));
    dp.broadcast({t});
    bcast[r] = t;
  });
  for (int r = 0; r < 2; ++r) {
    REQUIRE(gathered[r].sizes() == torch::IntArrayRef({4, 3}));
    CHECK(gathered[r].slice(0, 0, 2).eq(1).all().item<bool>());
    CHECK(gathered[r].slice(0, 2, 4).eq(2).all().item<bool>());
    CHECK(bcast[r].eq(10).all().item<bool>());
  }
}

TEST_CASE("DataParallel: average_gradients is the mean over ranks, a missing gradient counts as zero, "
          "and a gradient missing on every rank stays missing", "[torch][ddp]") {
  if (!DataParallel::available()) {
    LaunchPlace two;
    two.size = 2;
    CHECK_THROWS_WITH(DataParallel::join(two), Catch::Contains("without c10d's Gloo backend"));
    return;
  }
  // Phase 0: gradients from a backward whose hooks launch the buckets (arm);
  // phase 1: gradients set by hand, every bucket launched by average_gradients.
  torch::Tensor a[2][2], b[2][2], c[2][2];
  on_two_ranks([&](DataParallel& dp) {
    const int r = dp.rank();
    auto opt = torch::TensorOptions().requires_grad(true);
    auto pa = torch::zeros({3, 2}, opt), pb = torch::zeros({4}, opt), pc = torch::zeros({2}, opt);
    // Buckets of 5 floats: the 3 x 2 one alone, {pb} and {pc} apart.
    dp.attach({pa, pb, pc}, 5);
    const auto coef = torch::arange(6, torch::kFloat).view({3, 2}) * static_cast<float>(r + 1);  // r0: x, r1: 2x
    for (int phase = 0; phase < 2; ++phase) {
      for (auto* p : {&pa, &pb, &pc}) p->mutable_grad().reset();
      if (phase == 0) {
        dp.arm();
        auto loss = (pa * coef).sum();
        if (r == 1) loss = loss + (pb * 4.0f).sum();  // rank 1 only
        loss.backward();
      } else {
        pa.mutable_grad() = coef.clone();
        if (r == 1) pb.mutable_grad() = torch::full({4}, 4.0f);
      }
      dp.average_gradients();
      a[phase][r] = pa.grad();
      b[phase][r] = pb.grad();
      c[phase][r] = pc.grad();
    }
  });
  const auto want_a = torch::arange(6, torch::kFloat).view({3, 2}) * 1.5f;
  for (int phase = 0; phase < 2; ++phase)
    for (int r = 0; r < 2; ++r) {
      INFO("phase " << phase << ", rank " << r);
      REQUIRE(a[phase][r].defined());
      CHECK(torch::equal(a[phase][r], want_a));
      REQUIRE(b[phase][r].defined());
      CHECK(torch::equal(b[phase][r], torch::full({4}, 2.0f)));
      CHECK_FALSE(c[phase][r].defined());
    }
}
