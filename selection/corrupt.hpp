#pragma once
// Reproducible corruptions of a document: the junk a data selector should reject.
// Each is a pure function of (text, seed), drawn with moesim's own Rng, so the
// same seed gives the same bytes on every machine:
//
//   shuffle       the document's words (whitespace-separated) in a random order:
//                 C4's vocabulary and length, no syntax
//   boilerplate   web boilerplate sentences repeated to the document's length
//   random_chars  random printable ASCII (letters, digits, punctuation) in
//                 words of 1-10 characters, the document's length
//   truncate      the first 5-15% of the words (at least 3), cut mid-sentence
//   char_noise    pseudo-words from a non-English syllable inventory with
//                 diacritics (valid UTF-8): other-language-like text
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace moesim::selection {

enum class Corruption { shuffle, boilerplate, random_chars, truncate, char_noise };

const char* to_string(Corruption c);
// Error naming the word when it is none of the five.
Corruption corruption_from(std::string_view name);
// A comma list of names, in order.
std::vector<Corruption> corruptions_from(std::string_view list);

std::string corrupt(std::string_view text, Corruption kind, std::uint64_t seed);

// Which documents of a corpus of n are corrupted, and how: exactly
// round(fraction * n) of them, chosen by a seeded shuffle, the kinds assigned
// in turn along that shuffle (so every kind gets its share). -1 = clean.
std::vector<int> corruption_plan(std::int64_t n, double fraction, int kinds, std::uint64_t seed);

}  // namespace moesim::selection
