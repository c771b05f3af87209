#pragma once
// The routing-policy contract. A policy sees a batch of gate logits, returns an
// assignment (experts, combine weights, counts, drops), then observes per-slot
// performance feedback and updates its own state. The simulator and the LibTorch
// layer call the very same objects; randomness comes only from the Rng passed in.
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

  // Named state for metrics and reports (e.g. "reputation", "bias"); empty when stateless.
  virtual std::vector<NamedVector> state_vectors() const { return {}; }

 protected:
  virtual void do_route(const RouteInput& in, Rng& rng, Assignment& out) = 0;
  virtual void do_observe(const Assignment&, const float*) {}
  virtual void save_state(StateWriter&) const {}
  virtual void load_state(StateReader&) {}
  [[noreturn]] void fail(const std::string& what) const;

 private:
  std::string name_;
  int experts_;
  int k_;
  Knobs knobs_;
};

}  // namespace moesim
