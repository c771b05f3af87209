#include "sim/run_store.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <sstream>

#include "common/csv.hpp"
#include "common/json.hpp"
#include "common/text.hpp"

namespace fs = std::filesystem;

namespace moesim {

namespace {

const std::string& created(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir + "/runs", ec);
  if (ec) throw Error(dir + "/runs: cannot create: " + ec.message());
  return dir;
}

// A config.yaml without its comment header: the resolved config alone.
std::string config_part(const std::string& text) {
  std::size_t pos = 0;
  while (pos < text.size() && text[pos] == '#') {
    const auto nl = text.find('\n', pos);
    if (nl == std::string::npos) return "";
    pos = nl + 1;
  }
  return text.substr(pos);
}

}  // namespace

RunStore::RunStore(std::string out_dir, Role role) : dir_(std::move(out_dir)) {
  created(dir_);
  if (role == Role::helper) return;
  lock_.emplace(dir_, "another sweep is writing into this folder");
  remove_temp_files(dir_);
}


std::string RunStore::config_file(const Scenario& sc, const SweepPoint& p, const RunSpec& r, const std::string& program) {
  return "# run " + r.id + ", point " + std::to_string(p.index) + " '" + p.label + "', seed " +
         std::to_string(r.seed) + " of scenario '" + sc.name + "'\n# replay: " +
         replay_command(sc, p, r.seed, program, "") + "\n" + config_yaml(r.config);
}

bool RunStore::complete(const RunSpec& r) const {
  const std::string dir = run_dir(r.id);
  remove_temp_files(dir);
  std::error_code ec;
  if (!fs::is_regular_file(dir + "/metrics.csv", ec) || !fs::is_regular_file(dir + "/timeseries.csv", ec)) return false;
  try {
    return config_part(read_file(dir + "/config.yaml")) == config_yaml(r.config);
  } catch (const Error&) {
    return false;  // no readable config: run it again
  }
}

void RunStore::finish(const RunSpec& r, const std::string& config_file, const std::string& timeseries,
                      const std::string& metrics) const {
  const std::string dir = run_dir(r.id);
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create: " + ec.message());
  // The old marker goes first: killed between these writes, the run is incomplete, never mixed.
  fs::remove(dir + "/metrics.csv", ec);
  write_file_atomic(dir + "/config.yaml", config_file);
  write_file_atomic(dir + "/timeseries.csv", timeseries);
  write_file_atomic(dir + "/metrics.csv", metrics);
}

namespace {

// The runs' metrics.csv files and the union of their columns, in first-seen order
// (points may differ in layers); values[point][metric] collects each point's seeds.
struct RunMetrics {
  std::vector<std::string> names;
  std::vector<CsvTable> tables;
  std::vector<std::vector<std::vector<double>>> values;
};

RunMetrics read_run_metrics(const std::string& out, std::size_t points, const std::vector<RunSpec>& runs) {
  RunMetrics m;
  m.tables.reserve(runs.size());
  for (const auto& r : runs) {
    m.tables.push_back(read_csv(out + "/runs/" + r.id + "/metrics.csv"));
    const auto& t = m.tables.back();
    if (t.rows.size() != 1 || t.rows[0].size() != t.header.size())
      throw Error(out + "/runs/" + r.id + "/metrics.csv: expected a header and one row");
    for (const auto& n : t.header)
      if (std::find(m.names.begin(), m.names.end(), n) == m.names.end()) m.names.push_back(n);
  }
  m.values.assign(points, std::vector<std::vector<double>>(m.names.size()));
  for (std::size_t i = 0; i < runs.size(); ++i)
    for (std::size_t k = 0; k < m.names.size(); ++k) {
      const int c = m.tables[i].column(m.names[k]);
      m.values[static_cast<std::size_t>(runs[i].point)][k].push_back(
          c >= 0 ? m.tables[i].number(0, static_cast<std::size_t>(c)) : std::numeric_limits<double>::quiet_NaN());
    }
  return m;
}

std::string runs_csv(const std::vector<SweepPoint>& points, const std::vector<RunSpec>& runs,
                     const std::vector<std::string>& keys, const RunMetrics& m) {
  std::ostringstream csv;
  CsvWriter w(csv);
  std::vector<std::string> header = {"run_id", "point", "seed", "label"};
  header.insert(header.end(), keys.begin(), keys.end());
  header.emplace_back("policy");
  header.insert(header.end(), m.names.begin(), m.names.end());
  w.header(header);
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    std::vector<std::string> row = {r.id, std::to_string(r.point), std::to_string(r.seed),
                                    points[static_cast<std::size_t>(r.point)].label};
    for (const auto& k : keys) row.push_back(config_value(r.config, k));
    row.push_back(r.config.policy.name);
    for (const auto& name : m.names) {
      const int c = m.tables[i].column(name);
      row.push_back(c >= 0 ? m.tables[i].rows[0][static_cast<std::size_t>(c)] : "");
    }
    w.text_row(row);
  }
  return csv.str();
}

template <class T, class F>
void json_list(std::ostream& js, const std::vector<T>& items, F&& item) {
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (i) js << ", ";
    item(items[i]);
  }
}

// The sweep's structure, for reports: each grid's axes with their value labels.
void json_grids(std::ostream& js, const Scenario& sc) {
  json_list(js, sc.grids, [&](const std::vector<SweepAxis>& grid) {
    js << "{\"axes\": [";
    json_list(js, grid, [&](const SweepAxis& axis) {
      js << "{\"key\": " << json_string(axis.key) << ", \"section\": " << (axis.section ? "true" : "false")
         << ", \"labels\": [";
      json_list(js, axis.items, [&](const SweepItem& it) { js << json_string(it.label); });
      js << "]}";
    });
    js << "]}";
  });
}

void json_point(std::ostream& js, const Scenario& sc, const SweepPoint& p, const std::vector<std::string>& keys,
                const std::vector<std::string>& run_ids, const RunMetrics& m, const std::string& program) {
  js << "\n    {\n      \"index\": " << p.index << ",\n      \"grid\": " << p.grid
     << ",\n      \"label\": " << json_string(p.label) << ",\n      \"policy\": " << json_string(p.config.policy.name)
     << ",\n      \"values\": {";
  json_list(js, keys, [&](const std::string& k) { js << json_string(k) << ": " << json_string(config_value(p.config, k)); });
  js << "},\n      \"items\": [";
  // Which value of each axis of its grid the point takes.
  for (std::size_t a = 0; a < p.items.size(); ++a)
    js << (a ? ", " : "") << (p.items[a] - sc.grids[static_cast<std::size_t>(p.grid)][a].items.data());
  js << "],\n      \"runs\": [";
  json_list(js, run_ids, [&](const std::string& id) { js << json_string(id); });
  js << "],\n      \"replay\": " << json_string(replay_command(sc, p, sc.run_seeds().front(), program, ""))
     << ",\n      \"metrics\": {";
  const auto& values = m.values[static_cast<std::size_t>(p.index)];
  for (std::size_t k = 0; k < m.names.size(); ++k) {
    const auto s = seed_stats(values[k]);
    js << (k ? "," : "") << "\n        " << json_string(m.names[k]) << ": {\"mean\": " << json_number(s.mean)
       << ", \"std\": " << json_number(s.std) << ", \"min\": " << json_number(s.min) << ", \"max\": " << json_number(s.max)
       << ", \"n\": " << s.n << "}";
  }
  js << "\n      }\n    }";
}

std::string summary_json(const Scenario& sc, const std::vector<SweepPoint>& points, const std::vector<RunSpec>& runs,
                         const std::vector<std::string>& keys, const RunMetrics& m, const std::string& program) {
  // Each point's runs, once (a scan per point is quadratic in a large sweep).
  std::vector<std::vector<std::string>> runs_of(points.size());
  for (const auto& r : runs) runs_of[static_cast<std::size_t>(r.point)].push_back(r.id);
  std::ostringstream js;
  js << "{\n  \"scenario\": " << json_string(sc.name) << ",\n  \"description\": " << json_string(sc.description)
     << ",\n  \"source\": " << json_string(sc.path) << ",\n  \"overrides\": [";
  json_list(js, sc.overrides, [&](const std::string& o) { js << json_string(o); });
  js << "],\n  \"seeds\": [";
  json_list(js, sc.run_seeds(), [&](std::uint64_t seed) { js << seed; });
  js << "],\n  \"runs\": " << runs.size() << ",\n  \"config\": {";
  const auto fields = config_fields(sc.base);
  for (std::size_t i = 0; i < fields.size(); ++i)
    js << (i ? ",\n" : "\n") << "    " << json_string(fields[i].first) << ": " << json_string(fields[i].second);
  js << "\n  },\n  \"swept_keys\": [";
  json_list(js, keys, [&](const std::string& k) { js << json_string(k); });
  js << "],\n  \"grids\": [";
  json_grids(js, sc);
  js << "],\n  \"stats\": \"mean, std (n-1), min, max over seeds of each final metric; NaNs skipped\",\n"
     << "  \"points\": [";
  for (std::size_t pi = 0; pi < points.size(); ++pi) {
    if (pi) js << ",";
    json_point(js, sc, points[pi], keys, runs_of[pi], m, program);
  }
  js << "\n  ]\n}\n";
  return js.str();
}

}  // namespace

void RunStore::assemble(const Scenario& sc, const std::vector<SweepPoint>& points, const std::vector<RunSpec>& runs,
                        const std::string& program) const {
  const auto keys = swept_keys(sc);
  const RunMetrics m = read_run_metrics(dir_, points.size(), runs);
  write_file_atomic(dir_ + "/scenario.resolved.yaml", scenario_yaml(sc));
  write_file_atomic(dir_ + "/runs.csv", runs_csv(points, runs, keys, m));
  write_file_atomic(dir_ + "/summary.json", summary_json(sc, points, runs, keys, m, program));
}

SeedStats seed_stats(const std::vector<double>& xs) {
  SeedStats s;
  const double nan = std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  for (double x : xs) {
    if (std::isnan(x)) continue;
    if (s.n == 0 || x < s.min) s.min = x;
    if (s.n == 0 || x > s.max) s.max = x;
    sum += x;
    ++s.n;
  }
  if (s.n == 0) return {nan, nan, nan, nan, 0};
  s.mean = sum / s.n;
  double ss = 0;
  for (double x : xs)
    if (!std::isnan(x)) ss += (x - s.mean) * (x - s.mean);
  s.std = s.n > 1 ? std::sqrt(ss / (s.n - 1)) : 0.0;
  return s;
}

}  // namespace moesim
