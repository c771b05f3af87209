#pragma once
// Deterministic CSV: numbers always print the same way (%.9g, -0 as 0, nan/inf
// spelled out), so identical runs give byte-identical files.
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace moesim {

// %.9g: 9 significant digits separate every float and are plenty for doubles in reports.
std::string format_number(double v);
// Quotes a field holding a comma, quote or line break (RFC 4180).
std::string csv_escape(std::string_view field);

class CsvWriter {
 public:
  explicit CsvWriter(std::ostream& os) : os_(os) {}
  void header(const std::vector<std::string>& names);
  void row(std::span<const double> values);
  void text_row(const std::vector<std::string>& fields);

 private:
  std::ostream& os_;
  std::string line_;
};

}  // namespace moesim
