// Policy state text (Policy::load, as checkpoints and `moesim` state files hold
// it). The first byte picks the policy; the rest is the snapshot. A snapshot that
// loads must save back to the same text and keep routing finite.
#include <sstream>

#include "fuzz.hpp"
#include "policies/registry.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const auto& all = moesim::policy_registry();
  const auto& info = all[data[0] % all.size()];
  const int k = moesim::accepted_k(info, 4, 2);
  auto p = moesim::make_policy(info.name, 4, k);
  std::istringstream in(std::string(moesim::fuzz::text(data + 1, size - 1)));
  try {
    p->load(in, "fuzz state");
  } catch (const moesim::Error&) {
    return 0;
  }
  std::ostringstream out;
  p->save(out);
  auto q = moesim::make_policy(info.name, 4, k);
  std::istringstream back(out.str());
  q->load(back, "saved state");  // what save() wrote always loads
  std::ostringstream out2;
  q->save(out2);
  if (out2.str() != out.str()) __builtin_trap();
  // Route one batch on the loaded state (hash needs token ids; balanced T % E == 0).
  const std::vector<float> logits = {0.5f, -1, 2, 0, 1, 1, -2, 0.25f};
  const std::vector<std::int64_t> ids = {3, 9};
  moesim::RouteInput ri{logits.data(), 2, 4, ids.data()};
  moesim::Rng rng(1);
  moesim::Assignment a;
  try {
    p->route(ri, rng, a);
  } catch (const moesim::Error&) {
  }
  return 0;
}
