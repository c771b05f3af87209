#include "sim/csv.hpp"

#include <cmath>
#include <charconv>

namespace moesim {

std::string format_number(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  if (v == 0.0) return "0";  // also -0
  // to_chars is %.9g without the locale: a decimal comma would break the files.
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, 9);
  return std::string(buf, r.ptr);
}

std::string csv_escape(std::string_view f) {
  if (f.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(f);
  std::string out = "\"";
  for (char c : f) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
  return out;
}

void CsvWriter::header(const std::vector<std::string>& names) { text_row(names); }

void CsvWriter::row(std::span<const double> values) {
  line_.clear();
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i) line_ += ',';
    line_ += format_number(values[i]);
  }
  line_ += '\n';
  os_ << line_;
}

void CsvWriter::text_row(const std::vector<std::string>& fields) {
  line_.clear();
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (i) line_ += ',';
    line_ += csv_escape(fields[i]);
  }
  line_ += '\n';
  os_ << line_;
}

}  // namespace moesim
