#include "policies/knobs.hpp"

#include <cmath>
#include <cstdio>

#include "policies/types.hpp"

namespace moesim {

KnobSpec real_knob(std::string name, double def, std::string help, double lo, double hi) {
  return {std::move(name), KnobType::Real, format_real(def), std::move(help), {}, lo, hi};
}
KnobSpec int_knob(std::string name, long def, std::string help, long lo, long hi) {
  KnobSpec s{std::move(name), KnobType::Int, std::to_string(def), std::move(help), {}};
  s.ilo = lo;
  s.ihi = hi;
  return s;
}
KnobSpec bool_knob(std::string name, bool def, std::string help) {
  return {std::move(name), KnobType::Bool, def ? "true" : "false", std::move(help), {}, 0, 1};
}
KnobSpec choice_knob(std::string name, std::string def, std::vector<std::string> choices,
                     std::string help) {
  return {std::move(name), KnobType::Choice, std::move(def), std::move(help), std::move(choices),
          0, 0};
}

void fail_knob(std::string_view owner, const std::string& knob, const std::string& what) {
  throw KeyError(knob, std::string(owner) + ": knob '" + knob + "' " + what);
}

static std::string type_name(KnobType t) {
  switch (t) {
    case KnobType::Real: return "a real number";
    case KnobType::Int: return "an integer";
    case KnobType::Bool: return "true or false";
    case KnobType::Choice: return "one of";
  }
  return "?";
}

static void check_value(std::string_view owner, const KnobSpec& s, const std::string& v) {
  auto fail = [&](const std::string& why) {
    throw KeyError(s.name, std::string(owner) + ": knob '" + s.name + "' = '" + v + "': " + why);
  };
  switch (s.type) {
    case KnobType::Real: {
      double x;
      if (!parse_real(v, x) || !std::isfinite(x)) fail("expected " + type_name(s.type));
      if (x < s.lo || x > s.hi)
        fail("out of range [" + format_real(s.lo) + ", " + format_real(s.hi) + "]");
      break;
    }
    case KnobType::Int: {
      long x;
      if (!parse_int(v, x)) fail("expected " + type_name(s.type));
      if (x < s.ilo || x > s.ihi)
        fail("out of range [" + std::to_string(s.ilo) + ", " + std::to_string(s.ihi) + "]");
      break;
    }
    case KnobType::Bool: {
      bool b;
      if (!parse_bool(v, b)) fail("expected true or false");
      break;
    }
    case KnobType::Choice: {
      for (const auto& c : s.choices)
        if (c == v) return;
      std::string all;
      for (const auto& c : s.choices) all += (all.empty() ? "" : ", ") + c;
      fail("expected one of {" + all + "}");
    }
  }
}

Knobs::Knobs(std::string_view owner, const std::vector<KnobSpec>& specs, const KnobMap& overrides)
    : owner_(owner) {
  for (const auto& s : specs) values_[s.name] = s.default_value;
  for (const auto& [k, v] : overrides) {
    const KnobSpec* spec = nullptr;
    for (const auto& s : specs)
      if (s.name == k) spec = &s;
    if (!spec) {
      std::string all;
      for (const auto& s : specs) all += (all.empty() ? "" : ", ") + s.name;
      throw KeyError(k, std::string(owner) + ": unknown knob '" + k + "' (knobs: " + all + ")");
    }
    check_value(owner, *spec, v);
    values_[k] = v;
  }
}

const std::string& Knobs::raw(std::string_view name) const {
  auto it = values_.find(name);
  if (it == values_.end())
    throw Error(owner_ + ": internal: knob '" + std::string(name) + "' not declared");
  return it->second;
}

double Knobs::real(std::string_view name) const {
  double x = 0;
  parse_real(raw(name), x);
  return x;
}
long Knobs::integer(std::string_view name) const {
  long x = 0;
  parse_int(raw(name), x);
  return x;
}
bool Knobs::flag(std::string_view name) const {
  bool b = false;
  parse_bool(raw(name), b);
  return b;
}
const std::string& Knobs::choice(std::string_view name) const { return raw(name); }

}  // namespace moesim
