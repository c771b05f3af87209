#include "common/csv.hpp"

#include <cmath>
#include <limits>
#include <set>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"

namespace moesim {

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

int CsvTable::column(std::string_view name) const {
  for (std::size_t i = 0; i < header.size(); ++i)
    if (header[i] == name) return static_cast<int>(i);
  return -1;
}

std::size_t CsvTable::need_column(std::string_view name) const {
  const int c = column(name);
  if (c < 0) throw Error(source + ": no column '" + std::string(name) + "'");
  return static_cast<std::size_t>(c);
}

double CsvTable::number(std::size_t row, std::size_t col) const {
  const std::string& v = rows.at(row).at(col);
  if (v.empty() || v == "nan") return std::numeric_limits<double>::quiet_NaN();
  double x = 0;
  if (v == "inf") return std::numeric_limits<double>::infinity();
  if (v == "-inf") return -std::numeric_limits<double>::infinity();
  if (!parse_real(v, x))
    throw Error(source + ":" + std::to_string(lines.at(row)) + ": column '" + header.at(col) + "': '" + v +
                "' is not a number");
  return x;
}

CsvTable parse_csv(std::string_view text, const std::string& source) {
  CsvTable t;
  t.source = source;
  std::vector<std::string> row;
  std::string field;
  bool in_quotes = false, any = false;
  int line = 1;
  std::vector<int>& row_line = t.lines;
  int start_line = 1;
  auto end_row = [&] {
    row.push_back(std::move(field));
    field.clear();
    if (t.header.empty()) {
      t.header = std::move(row);
    } else {
      t.rows.push_back(std::move(row));
      row_line.push_back(start_line);
    }
    row.clear();
    any = false;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_quotes) {
      if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') {
        field += '"';
        ++i;
      } else if (c == '"') {
        in_quotes = false;
      } else {
        if (c == '\n') ++line;
        field += c;
      }
      continue;
    }
    if (!any) start_line = line;
    any = true;
    if (c == '"') {
      in_quotes = true;
    } else if (c == ',') {
      row.push_back(std::move(field));
      field.clear();
    } else if (c == '\n') {
      if (!field.empty() && field.back() == '\r') field.pop_back();
      end_row();
      ++line;
    } else {
      field += c;
    }
  }
  if (in_quotes) throw Error(source + ":" + std::to_string(line) + ": unterminated quoted field");
  if (any) end_row();
  std::set<std::string> names;
  for (const auto& h : t.header)
    if (!names.insert(h).second) throw Error(source + ":1: column '" + h + "' named twice in the header");
  for (std::size_t r = 0; r < t.rows.size(); ++r)
    if (t.rows[r].size() != t.header.size())
      throw Error(source + ":" + std::to_string(row_line[r]) + ": " + std::to_string(t.rows[r].size()) +
                  " fields, the header has " + std::to_string(t.header.size()));
  return t;
}

CsvTable read_csv(const std::string& path) { return parse_csv(read_file(path), path); }

}  // namespace moesim
