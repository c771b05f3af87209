#pragma once
// CSV as moesim writes and reads it (RFC 4180): numbers always print the same way
// (format_number), so identical runs give byte-identical files, and the reader
// refuses what it cannot trust, naming the file and line.
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace moesim {

// Quotes a field holding a comma, quote or line break.
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

struct CsvTable {
  std::string source;  // the file, for messages
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<int> lines;  // the line each row starts on (1-based; the header is line 1)
  int column(std::string_view name) const;  // -1 when absent
  // The column's index; throws Error naming the file when it is absent.
  std::size_t need_column(std::string_view name) const;
  // A field as a number: "nan" and "" read as NaN; anything else non-numeric throws
  // Error naming the file, line and column.
  double number(std::size_t row, std::size_t col) const;
};

// Throws Error on an unterminated quote, a row with the wrong number of fields, or
// a header that names a column twice.
CsvTable parse_csv(std::string_view text, const std::string& source);
CsvTable read_csv(const std::string& path);

}  // namespace moesim
