#include "reports/sweep_data.hpp"

#include <filesystem>
#include <limits>
#include <set>

#include "common/csv.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/json.hpp"
#include "common/text.hpp"

namespace fs = std::filesystem;

namespace moesim {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

[[noreturn]] void bad(const std::string& file, const std::string& what) { throw Error(file + ": " + what); }

const JsonValue& member(const JsonValue& o, const char* key, JsonValue::Type type, const std::string& where) {
  const JsonValue* v = o.find(key);
  if (!v || !v->is(type)) bad(where, std::string("'") + key + "' must be " + to_string(type));
  return *v;
}

long whole(const JsonValue& v, const std::string& where) {
  long x = 0;
  if (!v.is(JsonValue::Type::Number) || !parse_int(v.text, x)) bad(where, "expected a whole number, got " + v.text);
  return x;
}

double number_or_nan(const JsonValue* v) { return v && v->is(JsonValue::Type::Number) ? v->number : kNaN; }

void read_summary(SweepData& d, const std::string& file) {
  const JsonValue root = parse_json(read_file(file), file);
  if (!root.is(JsonValue::Type::Object)) bad(file, "expected a JSON object");
  d.name = member(root, "scenario", JsonValue::Type::String, file).text;
  d.description = member(root, "description", JsonValue::Type::String, file).text;
  for (const auto& s : member(root, "seeds", JsonValue::Type::Array, file).items)
    d.seeds.push_back(static_cast<std::uint64_t>(whole(s, file + ": seeds")));
  if (d.seeds.empty()) bad(file, "no seeds");
  for (const auto& [k, v] : member(root, "config", JsonValue::Type::Object, file).members) d.config[k] = v.text;
  for (const auto& g : member(root, "grids", JsonValue::Type::Array, file).items) {
    std::vector<AxisInfo> axes;
    for (const auto& a : member(g, "axes", JsonValue::Type::Array, file).items) {
      AxisInfo ax;
      ax.key = member(a, "key", JsonValue::Type::String, file).text;
      ax.section = member(a, "section", JsonValue::Type::Bool, file).boolean;
      for (const auto& l : member(a, "labels", JsonValue::Type::Array, file).items) ax.labels.push_back(l.text);
      axes.push_back(std::move(ax));
    }
    d.grids.push_back(std::move(axes));
  }
  const auto& points = member(root, "points", JsonValue::Type::Array, file).items;
  for (std::size_t i = 0; i < points.size(); ++i) {
    const JsonValue& p = points[i];
    const std::string where = file + ": point " + std::to_string(i);
    PointInfo pi;
    pi.index = static_cast<int>(whole(member(p, "index", JsonValue::Type::Number, where), where));
    if (pi.index != static_cast<int>(i)) bad(where, "points out of order");
    pi.grid = static_cast<int>(whole(member(p, "grid", JsonValue::Type::Number, where), where));
    pi.label = member(p, "label", JsonValue::Type::String, where).text;
    pi.policy = member(p, "policy", JsonValue::Type::String, where).text;
    pi.replay = member(p, "replay", JsonValue::Type::String, where).text;
    for (const auto& it : member(p, "items", JsonValue::Type::Array, where).items)
      pi.items.push_back(static_cast<int>(whole(it, where)));
    if (!d.grids.empty()) {
      if (pi.grid < 0 || pi.grid >= static_cast<int>(d.grids.size())) bad(where, "names a grid that does not exist");
      const auto& axes = d.grids[static_cast<std::size_t>(pi.grid)];
      if (pi.items.size() != axes.size()) bad(where, "'items' does not match its grid's axes");
      for (std::size_t a = 0; a < axes.size(); ++a)
        if (pi.items[a] < 0 || pi.items[a] >= static_cast<int>(axes[a].labels.size())) bad(where, "'items' out of range");
    }
    for (const auto& r : member(p, "runs", JsonValue::Type::Array, where).items) pi.run_ids.push_back(r.text);
    if (pi.run_ids.empty()) bad(where, "has no runs");
    for (const auto& [m, st] : member(p, "metrics", JsonValue::Type::Object, where).members) {
      SeedStats s;
      s.mean = number_or_nan(st.find("mean"));
      s.std = number_or_nan(st.find("std"));
      s.min = number_or_nan(st.find("min"));
      s.max = number_or_nan(st.find("max"));
      const JsonValue* n = st.find("n");
      s.n = n ? static_cast<int>(whole(*n, where)) : 0;
      pi.stats[m] = s;
    }
    d.points.push_back(std::move(pi));
  }
  if (d.points.empty()) bad(file, "no points");
}

// runs.csv must list exactly the summary's runs, each once, with numeric metrics.
void check_runs(const SweepData& d, const std::string& file) {
  const CsvTable t = read_csv(file);
  const std::size_t c_id = t.need_column("run_id"), c_point = t.need_column("point");
  std::map<std::string, int> point_of;
  for (const auto& p : d.points)
    for (const auto& id : p.run_ids) point_of[id] = p.index;
  std::set<std::string> seen;
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    const std::string& id = t.rows[r][c_id];
    const std::string where = file + ":" + std::to_string(t.lines[r]);
    if (!seen.insert(id).second) bad(where, "run '" + id + "' listed twice");
    auto it = point_of.find(id);
    if (it == point_of.end()) bad(where, "run '" + id + "' is not in summary.json");
    if (t.number(r, c_point) != it->second) bad(where, "run '" + id + "' names another point than summary.json");
    for (const auto& p : d.points.front().stats) {
      const int c = t.column(p.first);
      if (c >= 0) (void)t.number(r, static_cast<std::size_t>(c));  // refuses a non-numeric value
    }
  }
  if (seen.size() != point_of.size())
    bad(file, std::to_string(point_of.size() - seen.size()) + " runs of summary.json are missing");
}

}  // namespace

std::string SweepData::value(const std::string& key) const {
  auto it = config.find(key);
  return it == config.end() ? "" : it->second;
}

SweepData load_sweep(const std::string& out_dir) {
  SweepData d;
  d.dir = out_dir;
  const std::string summary = out_dir + "/summary.json", runs = out_dir + "/runs.csv";
  std::error_code ec;
  if (!fs::exists(out_dir + "/scenario.resolved.yaml", ec))
    throw Error(out_dir + ": no scenario.resolved.yaml: not a folder written by moesim sweep or run");
  if (!fs::exists(runs, ec) || !fs::exists(summary, ec))
    throw Error(out_dir + ": no runs.csv or summary.json: the sweep has not finished (run the same `moesim sweep` "
                          "again to resume it)");
  read_summary(d, summary);
  check_runs(d, runs);
  for (const auto& p : d.points) d.runs += p.run_ids.size();
  return d;
}

int Series::column(const std::string& name) const {
  for (std::size_t i = 0; i < columns.size(); ++i)
    if (columns[i] == name) return static_cast<int>(i);
  return -1;
}

Series read_series(const std::string& path, int only_layer) {
  const CsvTable t = read_csv(path);
  Series s;
  const std::size_t cs = t.need_column("step"), cl = t.need_column("layer");
  for (std::size_t c = 0; c < t.header.size(); ++c)
    if (c != cs && c != cl) s.columns.push_back(t.header[c]);
  s.values.assign(s.columns.size(), {});
  std::vector<int> layers_in_row;
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    const double step = t.number(r, cs);
    const double layer = t.number(r, cl);
    if (std::isnan(step) || std::isnan(layer)) bad(path + ":" + std::to_string(t.lines[r]), "no step or layer");
    if (only_layer >= 0 && static_cast<int>(layer) != only_layer) continue;
    if (s.step.empty() || s.step.back() != step) {
      if (!s.step.empty() && step < s.step.back()) bad(path + ":" + std::to_string(t.lines[r]), "steps out of order");
      s.step.push_back(step);
      layers_in_row.push_back(0);
      for (auto& v : s.values) v.push_back(0.0);
    }
    ++layers_in_row.back();
    std::size_t k = 0;
    for (std::size_t c = 0; c < t.header.size(); ++c) {
      if (c == cs || c == cl) continue;
      s.values[k++].back() += t.number(r, c);
    }
  }
  for (auto& v : s.values)
    for (std::size_t r = 0; r < v.size(); ++r) v[r] /= layers_in_row[r];
  return s;
}

Series mean_series(const std::vector<Series>& all) {
  Series m = all.front();
  std::size_t n = m.step.size();
  for (const auto& s : all) n = std::min(n, s.step.size());
  m.step.resize(n);
  for (auto& v : m.values) v.assign(n, 0.0);
  for (const auto& s : all)
    for (std::size_t c = 0; c < m.columns.size(); ++c) {
      const int sc = s.column(m.columns[c]);
      for (std::size_t r = 0; r < n; ++r)
        m.values[c][r] += (sc >= 0 ? s.values[static_cast<std::size_t>(sc)][r] : kNaN) / static_cast<double>(all.size());
    }
  return m;
}

}  // namespace moesim
