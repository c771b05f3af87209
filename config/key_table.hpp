#pragma once
// Typed key tables behind the YAML files and key.path=value overrides of the
// simulator (sim/config) and the trainer (torch_backend/config). Each key has a
// type word, a help line (its one description: `moesim train --keys` and the
// scenario docs print it), a getter that prints the value so that the setter
// reads it back exactly, a setter that range-checks text, and a check that
// range-checks the typed value in place (a config built in code is validated
// without printing and re-parsing it). Errors are KeyErrors: the key is data.
// Keys under policy.knobs.<name> go to the config's policy knob map unchecked;
// the policy registry validates them.
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/error.hpp"
#include "common/text.hpp"

namespace moesim {

// One settable key: its path, the type as a word, and a one-line help.
struct ConfigKey {
  std::string key;
  std::string type;  // "int", "real", "bool", "string", "list", "seed", "knob"
  std::string help;
};

namespace config {

[[noreturn]] inline void bad(std::string_view key, std::string_view value, const std::string& why) {
  throw KeyError(std::string(key), "config key '" + std::string(key) + "' = '" + std::string(value) + "': " + why);
}

template <class C>
struct Field {
  ConfigKey info;
  std::function<std::string(const C&)> get;
  std::function<void(C&, std::string_view)> set;
  std::function<void(const C&)> check;  // throws KeyError when the value is out of its range
};

// Field builders for config type C. Accessors take a mutable config; getters
// only read through them.
template <class C>
struct FieldsOf {
  template <class T>
  using Ref = T& (*)(C&);

  template <class T>
  static T& read(const C& c, Ref<T> ref) {
    return ref(const_cast<C&>(c));
  }

  // [lo, hi], or (lo, hi] when lo_open; hi >= 1e300 reads as unbounded.
  static Field<C> real_field(std::string key, std::string help, Ref<double> ref, double lo, double hi,
                             bool lo_open = false) {
    auto get = [ref](const C& c) { return format_real(read(c, ref)); };
    auto in_range = [key, lo, hi, lo_open](double x, std::string_view text) {
      if (!std::isfinite(x)) bad(key, text, "expected a finite real number");
      if (x < lo || x > hi || (lo_open && x == lo)) {
        std::string range = lo_open ? "(" : "[";
        range += format_real(lo) + ", ";
        range += hi >= 1e300 ? std::string("inf)") : format_real(hi) + "]";
        bad(key, text, "out of range " + range);
      }
    };
    auto set = [ref, key, in_range](C& c, std::string_view v) {
      double x = 0;
      if (!parse_real(v, x)) bad(key, v, "expected a finite real number");
      in_range(x, v);
      ref(c) = x;
    };
    auto check = [ref, in_range](const C& c) {
      const double x = read(c, ref);
      in_range(x, format_real(x));
    };
    return {{std::move(key), "real", std::move(help)}, get, set, check};
  }

  template <class I>
  static Field<C> int_field(std::string key, std::string help, Ref<I> ref, long lo, long hi) {
    auto get = [ref](const C& c) { return std::to_string(read(c, ref)); };
    auto set = [ref, key, lo, hi](C& c, std::string_view v) {
      long x = 0;
      if (!parse_int(v, x)) bad(key, v, "expected an integer");
      if (x < lo || x > hi) bad(key, v, "out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
      ref(c) = static_cast<I>(x);
    };
    auto check = [ref, key, lo, hi](const C& c) {
      const long x = static_cast<long>(read(c, ref));
      if (x < lo || x > hi)
        bad(key, std::to_string(x), "out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    };
    return {{std::move(key), "int", std::move(help)}, get, set, check};
  }

  // An unsigned 64-bit seed.
  static Field<C> seed_field(std::string key, std::string help, Ref<std::uint64_t> ref) {
    auto get = [ref](const C& c) { return std::to_string(read(c, ref)); };
    auto set = [ref, key](C& c, std::string_view v) {
      unsigned long long x = 0;
      if (!parse_uint64(v, x)) bad(key, v, "expected an unsigned 64-bit integer");
      ref(c) = x;
    };
    return {{std::move(key), "seed", std::move(help)}, get, set, [](const C&) {}};
  }

  static Field<C> bool_field(std::string key, std::string help, Ref<bool> ref) {
    auto get = [ref](const C& c) { return std::string(read(c, ref) ? "true" : "false"); };
    auto set = [ref, key](C& c, std::string_view v) {
      bool x = false;
      if (!parse_bool(v, x)) bad(key, v, "expected true or false");
      ref(c) = x;
    };
    return {{std::move(key), "bool", std::move(help)}, get, set, [](const C&) {}};
  }

  // Any text (non-empty when `nonempty`), or one of `choices` when given.
  static Field<C> string_field(std::string key, std::string help, Ref<std::string> ref,
                               std::vector<std::string> choices = {}, bool nonempty = false) {
    auto get = [ref](const C& c) { return read(c, ref); };
    auto allowed = [key, choices, nonempty](std::string_view v) {
      if (nonempty && v.empty()) bad(key, v, "expected a non-empty value");
      if (choices.empty()) return;
      bool ok = false;
      for (const auto& ch : choices) ok = ok || ch == v;
      if (!ok) {
        std::string all;
        for (const auto& ch : choices) all += (all.empty() ? "" : ", ") + ch;
        bad(key, v, "expected one of {" + all + "}");
      }
    };
    auto set = [ref, allowed](C& c, std::string_view v) {
      allowed(v);
      ref(c) = std::string(v);
    };
    auto check = [ref, allowed](const C& c) { allowed(read(c, ref)); };
    return {{std::move(key), "string", std::move(help)}, get, set, check};
  }

  // Comma-separated integers, optionally in brackets ("1,3" or "[1, 3]").
  template <class I>
  static Field<C> list_field(std::string key, std::string help, Ref<std::vector<I>> ref, long lo, long hi) {
    auto get = [ref](const C& c) {
      std::string s;
      for (auto x : read(c, ref)) {
        if (!s.empty()) s += ',';
        s += std::to_string(x);
      }
      return s;
    };
    auto set = [ref, key, lo, hi](C& c, std::string_view v) {
      std::string_view body = v;
      if (body.size() >= 2 && body.front() == '[' && body.back() == ']') body = body.substr(1, body.size() - 2);
      std::vector<I> out;
      std::size_t pos = 0;
      while (pos <= body.size()) {
        std::size_t comma = body.find(',', pos);
        if (comma == std::string_view::npos) comma = body.size();
        std::string_view item = body.substr(pos, comma - pos);
        while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
        while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
        if (!item.empty()) {
          long x = 0;
          if (!parse_int(item, x)) bad(key, v, "expected a comma-separated list of integers");
          if (x < lo || x > hi)
            bad(key, v, "item " + std::string(item) + " out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
          out.push_back(static_cast<I>(x));
        } else if (comma < body.size()) {
          bad(key, v, "empty item in list");
        }
        pos = comma + 1;
      }
      ref(c) = std::move(out);
    };
    auto check = [ref, key, lo, hi](const C& c) {
      for (auto x : read(c, ref))
        if (static_cast<long>(x) < lo || static_cast<long>(x) > hi)
          bad(key, std::to_string(x), "item out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
    };
    return {{std::move(key), "list", std::move(help)}, get, set, check};
  }
};

inline constexpr std::string_view kKnobPrefix = "policy.knobs.";

// The table's keys, then policy.knobs.<knob> once.
template <class C>
std::vector<ConfigKey> keys_of(const std::vector<Field<C>>& fields) {
  std::vector<ConfigKey> k;
  for (const auto& f : fields) k.push_back(f.info);
  k.push_back({std::string(kKnobPrefix) + "<knob>", "knob", "a policy knob override, validated by the registry"});
  return k;
}

// (key, value) for every field in table order, then every knob override.
template <class C>
std::vector<std::pair<std::string, std::string>> values_of(const std::vector<Field<C>>& fields, const C& cfg) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : fields) out.emplace_back(f.info.key, f.get(cfg));
  for (const auto& [k, v] : cfg.policy.knobs) out.emplace_back(std::string(kKnobPrefix) + k, v);
  return out;
}

// Sets one key; an unknown key's error offers the closest known key.
template <class C>
void set_in(const std::vector<Field<C>>& fields, C& cfg, std::string_view key, std::string_view value) {
  if (key.substr(0, kKnobPrefix.size()) == kKnobPrefix) {
    const auto knob = key.substr(kKnobPrefix.size());
    if (knob.empty() || knob.find('.') != std::string_view::npos)
      throw KeyError(std::string(key), "config key '" + std::string(key) + "': expected policy.knobs.<knob>");
    cfg.policy.knobs[std::string(knob)] = std::string(value);
    return;
  }
  for (const auto& f : fields)
    if (f.info.key == key) return f.set(cfg, value);
  std::vector<std::string> names;
  for (const auto& f : fields) names.push_back(f.info.key);
  const auto hint = did_you_mean(key, names);
  throw KeyError(std::string(key), "unknown config key '" + std::string(key) + "'" +
                                       (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
}

// Every field's range check on the typed values (no text round trip).
template <class C>
void check_all(const std::vector<Field<C>>& fields, const C& cfg) {
  for (const auto& f : fields)
    if (f.check) f.check(cfg);
}

}  // namespace config
}  // namespace moesim
