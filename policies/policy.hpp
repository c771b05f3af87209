#pragma once
// The routing-policy contract. A policy sees a batch of gate logits, returns an
// assignment (experts, combine weights, counts, drops), then observes per-slot
// performance feedback and updates its own state. The simulator and the LibTorch
// layer call the very same objects; randomness comes only from the Rng passed in.
//
// Lifecycle
//   1. construction, only through the registry (make_policy): knobs resolved and
//      validated, E and k checked; a policy refuses a shape it cannot route (Switch:
//      k != 1) here, with a KeyError for key "k".
//   2. per batch: route(), then observe() with that batch's assignment. observe()
//      may be skipped (evaluation, no feedback); route() never changes the state
//      observe() updates, so routing twice without observing routes alike.
//   3. between batches, at any time: save()/load() (exact text snapshot), clone()
//      (an independent copy: both continue as the original would).
//
// Hooks a policy implements (one class per policy, one file each):
//   weight_spec()   required  how combine weights follow from the logits
//   do_route()      required  fill `out` for in.tokens tokens; inputs already checked
//   clone()         required  a deep copy
//   do_observe()    optional  state update from the served slots' performance
//   save_state()    optional  with load_state(): every value do_observe() changes,
//   load_state()    optional    written and read in the same order
//   state_vectors() optional  per-expert state by name, for logs (bias, counts, ...)
//   reputation()    optional  per-expert reputation R_i, for the metrics; nullptr: none
//   reads_gate_input() optional  whether do_route() reads RouteInput::gate_input (its own jitter)
#include <iosfwd>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "policies/knobs.hpp"
#include "policies/rng.hpp"
#include "policies/state_io.hpp"
#include "policies/types.hpp"

namespace moesim {

using NamedVector = std::pair<std::string, std::vector<double>>;

// The key of the KeyError a policy throws for a k it cannot route.
inline constexpr const char* kShapeKey = "k";

class Policy {
 public:
  // Throws Error when experts < 1 or k outside [1, experts].
  Policy(std::string name, int experts, int k, Knobs knobs);
  virtual ~Policy() = default;

  const std::string& name() const { return name_; }
  int experts() const { return experts_; }
  int k() const { return k_; }
  const Knobs& knobs() const { return knobs_; }

  // How combine weights derive from the logits (for differentiable recompute).
  virtual WeightSpec weight_spec() const = 0;

  // Validates shape and finiteness (errors name the token and expert), then routes.
  void route(const RouteInput& in, Rng& rng, Assignment& out);
  // perf: one value per slot of `a` (tokens x width), read on served slots only;
  // nullptr when the caller has no signal (stateless policies ignore it anyway).
  void observe(const Assignment& a, const float* perf);

  virtual std::unique_ptr<Policy> clone() const = 0;

  // Exact text snapshot of the state; load() rejects a snapshot of another
  // policy, size or knob set, and a truncated one.
  void save(std::ostream& os) const;
  void load(std::istream& is, const std::string& source = "policy state");

  // Per-expert state by name, for logs and traces (e.g. "bias"); empty when stateless.
  virtual std::vector<NamedVector> state_vectors() const { return {}; }
  // Per-expert reputation (RD-ESI's R_i), for the reputation metrics; nullptr when none.
  virtual const std::vector<double>* reputation() const { return nullptr; }
  // Whether route() reads RouteInput::gate_input (a policy's own input jitter), so a
  // caller routing another process's tokens must bring their gate input too.
  virtual bool reads_gate_input() const { return false; }

 protected:
  // Optional: true when do_route() refuses non-finite logits itself, inside its
  // selection pass and with check_finite's error, before changing any state;
  // route() then skips its own pass over the T x E logits.
  virtual bool checks_logits() const { return false; }
  virtual void do_route(const RouteInput& in, Rng& rng, Assignment& out) = 0;
  virtual void do_observe(const Assignment&, const float*) {}
  virtual void save_state(StateWriter&) const {}
  virtual void load_state(StateReader&) {}
  [[noreturn]] void fail(const std::string& what) const;
  // A shape this policy cannot route: a KeyError for key kShapeKey, which configs map to their k.
  [[noreturn]] void fail_k(const std::string& what) const;

 private:
  std::string name_;
  int experts_;
  int k_;
  Knobs knobs_;
};

}  // namespace moesim
