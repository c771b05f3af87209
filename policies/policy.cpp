#include "policies/policy.hpp"

#include <istream>
#include <ostream>
#include <sstream>

#include "policies/select.hpp"

namespace moesim {

Policy::Policy(std::string name, int experts, int k, Knobs knobs)
    : name_(std::move(name)), experts_(experts), k_(k), knobs_(std::move(knobs)) {
  if (experts < 1) fail("number of experts E=" + std::to_string(experts) + " must be >= 1");
  if (k < 1 || k > experts)
    fail("k=" + std::to_string(k) + " must be in [1, E=" + std::to_string(experts) + "]");
}

void Policy::fail(const std::string& what) const { throw Error(name_ + ": " + what); }

void Policy::fail_k(const std::string& what) const { throw KeyError(kShapeKey, name_ + ": " + what); }

void Policy::route(const RouteInput& in, Rng& rng, Assignment& out) {
  if (in.tokens < 0) fail("tokens=" + std::to_string(in.tokens) + " must be >= 0");
  if (in.experts != experts_)
    fail("logits have " + std::to_string(in.experts) + " experts per token, policy was built for E=" +
         std::to_string(experts_));
  if (in.tokens > 0 && in.logits == nullptr) fail("logits pointer is null");
  if (!checks_logits()) check_finite(in.logits, in.tokens, in.experts, name_.c_str());
  do_route(in, rng, out);
}

void Policy::observe(const Assignment& a, const float* perf) {
  if (a.experts != experts_)
    fail("assignment has E=" + std::to_string(a.experts) + ", policy was built for E=" +
         std::to_string(experts_));
  do_observe(a, perf);
}

void Policy::save(std::ostream& os) const {
  os << "moesim-policy-state 1 " << name_ << ' ' << experts_ << ' ' << k_ << '\n';
  os << "knobs " << knobs_.values().size();
  for (const auto& [key, v] : knobs_.values()) os << ' ' << key << '=' << v;
  os << '\n';
  StateWriter w(os);
  save_state(w);
  os << "end\n";
}

void Policy::load(std::istream& is, const std::string& source) {
  std::string header, knobs_line;
  if (!std::getline(is, header) || !std::getline(is, knobs_line))
    throw Error(source + ": truncated policy state (no header)");
  std::ostringstream want, want_knobs;
  want << "moesim-policy-state 1 " << name_ << ' ' << experts_ << ' ' << k_;
  if (header != want.str())
    throw Error(source + ": state is for '" + header + "', this policy is '" + want.str() + "'");
  want_knobs << "knobs " << knobs_.values().size();
  for (const auto& [key, v] : knobs_.values()) want_knobs << ' ' << key << '=' << v;
  if (knobs_line != want_knobs.str())
    throw Error(source + ": state was saved with other knobs: " + knobs_line);
  // Buffer the body up to "end" first: a truncated snapshot is refused before
  // load_state() touches anything, so a failed load loses nothing.
  std::string body, line;
  bool ended = false;
  while (std::getline(is, line)) {
    if (line == "end") {
      ended = true;
      break;
    }
    body += line;
    body += '\n';
  }
  if (!ended) throw Error(source + ": truncated policy state (no end)");
  std::istringstream bs(body);
  StateReader r(bs, source);
  load_state(r);
  if (bs.peek() != std::char_traits<char>::eof()) throw Error(source + ": unexpected data before 'end'");
}

}  // namespace moesim
