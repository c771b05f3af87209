#include "selection/corrupt.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "common/error.hpp"
#include "policies/rng.hpp"

namespace moesim::selection {

namespace {

std::vector<std::string> words_of(std::string_view text) {
  std::vector<std::string> w;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    const auto b = i;
    while (i < text.size() && !std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    if (i > b) w.emplace_back(text.substr(b, i - b));
  }
  return w;
}

std::string join(const std::vector<std::string>& w) {
  std::string s;
  for (const auto& x : w) {
    if (!s.empty()) s += ' ';
    s += x;
  }
  return s;
}

template <class T>
void shuffle_in_place(std::vector<T>& v, Rng& rng) {
  for (std::size_t i = v.size(); i > 1; --i) std::swap(v[i - 1], v[rng.below(i)]);
}

std::string shuffled(std::string_view text, Rng& rng) {
  auto w = words_of(text);
  shuffle_in_place(w, rng);
  return join(w);
}

std::string boilerplate(std::size_t length, Rng& rng) {
  static const char* lines[] = {
      "Click here to subscribe to our newsletter.", "All rights reserved.", "This site uses cookies to improve your experience.",
      "Accept all cookies.", "Share this post on Facebook Twitter Pinterest.", "Terms of Use | Privacy Policy | Contact Us",
      "Copyright 2019. Powered by WordPress.", "Sign up now and get 10% off your first order!", "Read more...",
      "Skip to main content.", "Leave a comment. Your email address will not be published.", "Home | About | Blog | Shop"};
  constexpr std::size_t n = sizeof lines / sizeof lines[0];
  std::string s;
  while (s.size() < std::max<std::size_t>(length, 40)) {
    if (!s.empty()) s += ' ';
    s += lines[rng.below(n)];
  }
  return s;
}

std::string random_chars(std::size_t length, Rng& rng) {
  static const std::string alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,;:!?-_/#@$%&*()[]";
  std::string s;
  while (s.size() < std::max<std::size_t>(length, 40)) {
    if (!s.empty()) s += ' ';
    for (int c = 1 + static_cast<int>(rng.below(10)); c > 0; --c) s += alphabet[rng.below(alphabet.size())];
  }
  return s;
}

std::string truncated(std::string_view text, Rng& rng) {
  const auto w = words_of(text);
  const double share = rng.uniform(0.05, 0.15);
  const auto keep = std::min(w.size(), std::max<std::size_t>(3, static_cast<std::size_t>(share * static_cast<double>(w.size()))));
  return join(std::vector<std::string>(w.begin(), w.begin() + static_cast<std::ptrdiff_t>(keep)));
}

std::string char_noise(std::size_t length, Rng& rng) {
  // Consonants and vowels of an invented orthography, several with diacritics.
  static const char* cons[] = {"k", "t", "v", "z", "š", "ž", "č", "ł", "ń", "ř", "dz", "gj", "ć", "p", "r", "ś"};
  static const char* vow[] = {"a", "e", "i", "o", "u", "ą", "ę", "ė", "į", "ų", "ō", "ý", "ä", "ö"};
  std::string s;
  while (s.size() < std::max<std::size_t>(length, 40)) {
    if (!s.empty()) s += ' ';
    for (int syl = 1 + static_cast<int>(rng.below(4)); syl > 0; --syl) {
      s += cons[rng.below(sizeof cons / sizeof cons[0])];
      s += vow[rng.below(sizeof vow / sizeof vow[0])];
    }
    if (rng.below(8) == 0) s += '.';
  }
  return s;
}

}  // namespace

const char* to_string(Corruption c) {
  switch (c) {
    case Corruption::shuffle: return "shuffle";
    case Corruption::boilerplate: return "boilerplate";
    case Corruption::random_chars: return "random_chars";
    case Corruption::truncate: return "truncate";
    case Corruption::char_noise: return "char_noise";
  }
  return "?";
}

Corruption corruption_from(std::string_view name) {
  for (auto c : {Corruption::shuffle, Corruption::boilerplate, Corruption::random_chars, Corruption::truncate,
                 Corruption::char_noise})
    if (name == to_string(c)) return c;
  throw Error("unknown corruption '" + std::string(name) + "' (expected shuffle, boilerplate, random_chars, truncate, char_noise)");
}

std::vector<Corruption> corruptions_from(std::string_view list) {
  std::vector<Corruption> out;
  std::size_t a = 0;
  while (a <= list.size()) {
    auto b = list.find(',', a);
    if (b == std::string_view::npos) b = list.size();
    out.push_back(corruption_from(list.substr(a, b - a)));
    a = b + 1;
  }
  return out;
}

std::string corrupt(std::string_view text, Corruption kind, std::uint64_t seed) {
  Rng rng(seed);
  switch (kind) {
    case Corruption::shuffle: return shuffled(text, rng);
    case Corruption::boilerplate: return boilerplate(text.size(), rng);
    case Corruption::random_chars: return random_chars(text.size(), rng);
    case Corruption::truncate: return truncated(text, rng);
    case Corruption::char_noise: return char_noise(text.size(), rng);
  }
  return std::string(text);
}

std::vector<int> corruption_plan(std::int64_t n, double fraction, int kinds, std::uint64_t seed) {
  std::vector<int> plan(static_cast<std::size_t>(n), -1);
  if (kinds <= 0) return plan;
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  for (std::int64_t i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  Rng rng(seed);
  shuffle_in_place(order, rng);
  const auto count = static_cast<std::int64_t>(std::llround(fraction * static_cast<double>(n)));
  for (std::int64_t j = 0; j < count; ++j) plan[static_cast<std::size_t>(order[static_cast<std::size_t>(j)])] = static_cast<int>(j % kinds);
  return plan;
}

}  // namespace moesim::selection
