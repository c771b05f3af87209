#include "selection/records.hpp"

#include <cmath>

#include "common/error.hpp"
#include "common/files.hpp"
#include "common/json.hpp"
#include "common/text.hpp"

namespace moesim::selection {

std::string to_jsonl(const std::vector<DocRecord>& docs) {
  std::string out;
  for (const auto& d : docs) {
    out += "{\"source_dataset\": " + json_string(d.source_dataset) + ", \"source_index\": " + std::to_string(d.source_index) +
           ", \"text\": " + json_string(d.text);
    if (d.has_score) out += ", \"quality_score\": " + (std::isfinite(d.quality_score) ? format_real(d.quality_score) : std::string("null"));
    out += "}\n";
  }
  return out;
}

namespace {

DocRecord parse_record(const JsonValue& v, const std::string& where) {
  if (!v.is(JsonValue::Type::Object)) throw Error(where + ": expected a JSON object, got " + to_string(v.type));
  DocRecord d;
  bool dataset = false, index = false, text = false;
  for (const auto& [key, val] : v.members) {
    auto need = [&](JsonValue::Type t) {
      if (!val.is(t)) throw Error(where + ": \"" + key + "\" must be " + to_string(t) + ", got " + to_string(val.type));
    };
    if (key == "source_dataset") {
      need(JsonValue::Type::String);
      d.source_dataset = val.text, dataset = true;
    } else if (key == "source_index") {
      need(JsonValue::Type::Number);
      if (!(val.number >= 0 && val.number < 9.0e15 && std::floor(val.number) == val.number))
        throw Error(where + ": \"source_index\" must be a non-negative integer, got " + val.text);
      d.source_index = static_cast<std::int64_t>(val.number), index = true;
    } else if (key == "text") {
      need(JsonValue::Type::String);
      d.text = val.text, text = true;
    } else if (key == "quality_score") {
      need(JsonValue::Type::Number);
      if (!std::isfinite(val.number)) throw Error(where + ": \"quality_score\" is not finite");
      d.quality_score = val.number, d.has_score = true;
    } else {
      throw Error(where + ": unknown field \"" + key + "\"");
    }
  }
  if (!dataset || !index || !text)
    throw Error(where + ": missing \"" + std::string(!dataset ? "source_dataset" : !index ? "source_index" : "text") + "\"");
  return d;
}

}  // namespace

std::vector<DocRecord> parse_jsonl(const std::string& text, const std::string& source) {
  std::vector<DocRecord> out;
  std::size_t a = 0;
  int line = 0;
  while (a < text.size()) {
    auto b = text.find('\n', a);
    if (b == std::string::npos) b = text.size();
    ++line;
    const std::string_view l(text.data() + a, b - a);
    const std::string where = source + ":" + std::to_string(line);
    if (l.empty()) throw Error(where + ": empty line");
    JsonValue v;
    std::string why;
    if (!try_parse_json(l, v, why)) throw Error(where + ": " + why);
    out.push_back(parse_record(v, where));
    a = b + 1;
  }
  return out;
}

std::vector<DocRecord> read_jsonl(const std::string& path) { return parse_jsonl(read_file(path), path); }

void write_jsonl(const std::string& path, const std::vector<DocRecord>& docs) { write_file_atomic(path, to_jsonl(docs)); }

}  // namespace moesim::selection
