#pragma once
// Policy state as text with hex floats: exact round trip, diffable, and a
// truncated or foreign file is caught by name instead of read as garbage.
#include <cstdint>
#include <istream>
#include <ostream>
#include <string>
#include <vector>

#include "policies/rng.hpp"

namespace moesim {

class StateWriter {
 public:
  explicit StateWriter(std::ostream& os) : os_(os) {}
  void put(const std::string& key, const std::vector<double>& v);
  void put(const std::string& key, double v);
  void put(const std::string& key, std::int64_t v);

 private:
  std::ostream& os_;
};

// Reads what StateWriter wrote, key by key in order; every value must be finite (a
// NaN in a snapshot would route on garbage) and every count exact.
class StateReader {
 public:
  StateReader(std::istream& is, std::string source) : is_(is), source_(std::move(source)) {}
  std::vector<double> get_vec(const std::string& key, std::size_t expected_size);
  double get_real(const std::string& key);
  std::int64_t get_int(const std::string& key);
  [[noreturn]] void fail(const std::string& why) const;

 private:
  std::vector<std::string> line(const std::string& key);
  std::istream& is_;
  std::string source_;
  int line_no_ = 0;
};

}  // namespace moesim
