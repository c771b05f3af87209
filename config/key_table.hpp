#pragma once
// Typed key tables behind the YAML files and key.path=value overrides of the
// simulator (sim/config) and the trainer (torch_backend/config). Each key has a
// type word, a help line, a getter that prints the value so that the setter reads
// it back exactly, and a setter that range-checks and names the key on error.
// Keys under policy.knobs.<name> go to the config's policy knob map unchecked;
// the policy registry validates them.
#include <cmath>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "policies/knobs.hpp"
#include "policies/types.hpp"

namespace moesim {

// One settable key: its path, the type as a word, and a one-line help.
struct ConfigKey {
  std::string key;
  std::string type;  // "int", "real", "bool", "string", "list", "seed", "knob"
  std::string help;
};

namespace config {

[[noreturn]] inline void bad(std::string_view key, std::string_view value, const std::string& why) {
  throw Error("config key '" + std::string(key) + "' = '" + std::string(value) + "': " + why);
}

template <class C>
struct Field {
  ConfigKey info;
  std::function<std::string(const C&)> get;
  std::function<void(C&, std::string_view)> set;
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
    auto set = [ref, key, lo, hi, lo_open](C& c, std::string_view v) {
      double x = 0;
      if (!parse_real(v, x) || !std::isfinite(x)) bad(key, v, "expected a finite real number");
      if (x < lo || x > hi || (lo_open && x == lo)) {
        std::string range = lo_open ? "(" : "[";
        range += format_real(lo) + ", ";
        range += hi >= 1e300 ? std::string("inf)") : format_real(hi) + "]";
        bad(key, v, "out of range " + range);
      }
      ref(c) = x;
    };
    return {{std::move(key), "real", std::move(help)}, get, set};
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
    return {{std::move(key), "int", std::move(help)}, get, set};
  }

  static Field<C> bool_field(std::string key, std::string help, Ref<bool> ref) {
    auto get = [ref](const C& c) { return std::string(read(c, ref) ? "true" : "false"); };
    auto set = [ref, key](C& c, std::string_view v) {
      bool x = false;
      if (!parse_bool(v, x)) bad(key, v, "expected true or false");
      ref(c) = x;
    };
    return {{std::move(key), "bool", std::move(help)}, get, set};
  }

  // Any text, or one of `choices` when given.
  static Field<C> string_field(std::string key, std::string help, Ref<std::string> ref,
                               std::vector<std::string> choices = {}) {
    auto get = [ref](const C& c) { return read(c, ref); };
    auto set = [ref, key, choices](C& c, std::string_view v) {
      if (!choices.empty()) {
        bool ok = false;
        for (const auto& ch : choices) ok = ok || ch == v;
        if (!ok) {
          std::string all;
          for (const auto& ch : choices) all += (all.empty() ? "" : ", ") + ch;
          bad(key, v, "expected one of {" + all + "}");
        }
      }
      ref(c) = std::string(v);
    };
    return {{std::move(key), "string", std::move(help)}, get, set};
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
    return {{std::move(key), "list", std::move(help)}, get, set};
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

// Sets one key; an unknown key's error lists the known keys of its section, as a
// typo is the usual cause.
template <class C>
void set_in(const std::vector<Field<C>>& fields, C& cfg, std::string_view key, std::string_view value) {
  if (key.substr(0, kKnobPrefix.size()) == kKnobPrefix) {
    const auto knob = key.substr(kKnobPrefix.size());
    if (knob.empty() || knob.find('.') != std::string_view::npos)
      throw Error("config key '" + std::string(key) + "': expected policy.knobs.<knob>");
    cfg.policy.knobs[std::string(knob)] = std::string(value);
    return;
  }
  for (const auto& f : fields)
    if (f.info.key == key) return f.set(cfg, value);
  const auto dot = key.find('.');
  const std::string section = dot == std::string_view::npos ? "" : std::string(key.substr(0, dot + 1));
  const auto keys = keys_of(fields);
  std::string known;
  for (const auto& k : keys) {
    const bool same = section.empty() ? k.key.find('.') == std::string::npos : k.key.rfind(section, 0) == 0;
    if (same) known += (known.empty() ? "" : ", ") + k.key;
  }
  if (known.empty())
    for (const auto& k : keys) known += (known.empty() ? "" : ", ") + k.key;
  throw Error("unknown config key '" + std::string(key) + "' (known: " + known + ")");
}

}  // namespace config
}  // namespace moesim
