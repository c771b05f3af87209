#pragma once
// Declared, typed, validated policy knobs. Every policy lists its knobs with a
// default and one line of help; `moesim policies` prints exactly this list.
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "common/text.hpp"

namespace moesim {

enum class KnobType { Real, Int, Bool, Choice };

struct KnobSpec {
  std::string name;
  KnobType type = KnobType::Real;
  std::string default_value;
  std::string help;
  std::vector<std::string> choices;  // Choice only
  double lo = -1e300;                // Real: inclusive bounds
  double hi = 1e300;
  long ilo = 0;                      // Int: inclusive bounds, exact beyond 2^53
  long ihi = 0;
};

KnobSpec real_knob(std::string name, double def, std::string help, double lo = -1e300,
                   double hi = 1e300);
KnobSpec int_knob(std::string name, long def, std::string help, long lo = -(1L << 40),
                  long hi = (1L << 40));
KnobSpec bool_knob(std::string name, bool def, std::string help);
KnobSpec choice_knob(std::string name, std::string def, std::vector<std::string> choices,
                     std::string help);

using KnobMap = std::map<std::string, std::string, std::less<>>;

// Refuses a knob value a policy cannot use: a KeyError keyed by the knob, reading
// "<owner>: knob '<knob>' <what>".
[[noreturn]] void fail_knob(std::string_view owner, const std::string& knob, const std::string& what);

// Resolved knob values. Construction validates: an unknown key or a value of the
// wrong type or range throws a KeyError whose key() is the knob's name.
class Knobs {
 public:
  Knobs() = default;
  Knobs(std::string_view owner, const std::vector<KnobSpec>& specs, const KnobMap& overrides);

  double real(std::string_view name) const;
  long integer(std::string_view name) const;
  bool flag(std::string_view name) const;
  const std::string& choice(std::string_view name) const;
  const KnobMap& values() const { return values_; }

 private:
  const std::string& raw(std::string_view name) const;
  std::string owner_;
  KnobMap values_;
};

}  // namespace moesim
