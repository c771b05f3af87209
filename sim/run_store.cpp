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

RunStore::RunStore(std::string out_dir) : dir_(std::move(out_dir)), lock_(created(dir_), "another sweep is writing into this folder") {
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

void RunStore::assemble(const Scenario& sc, const std::vector<SweepPoint>& points, const std::vector<RunSpec>& runs,
                        const std::string& program) const {
  const std::string& out = dir_;
  const auto keys = swept_keys(sc);
  // Metric columns: the union over runs, in first-seen order (points may differ in layers).
  std::vector<std::string> metric_names;
  std::vector<CsvTable> tables;
  tables.reserve(runs.size());
  for (const auto& r : runs) {
    tables.push_back(read_csv(out + "/runs/" + r.id + "/metrics.csv"));
    const auto& t = tables.back();
    if (t.rows.size() != 1 || t.rows[0].size() != t.header.size())
      throw Error(out + "/runs/" + r.id + "/metrics.csv: expected a header and one row");
    for (const auto& n : t.header)
      if (std::find(metric_names.begin(), metric_names.end(), n) == metric_names.end()) metric_names.push_back(n);
  }

  std::ostringstream csv;
  CsvWriter w(csv);
  std::vector<std::string> header = {"run_id", "point", "seed", "label"};
  header.insert(header.end(), keys.begin(), keys.end());
  header.emplace_back("policy");
  header.insert(header.end(), metric_names.begin(), metric_names.end());
  w.header(header);
  // values[point][metric] over the point's seeds
  std::vector<std::vector<std::vector<double>>> values(points.size(),
                                                       std::vector<std::vector<double>>(metric_names.size()));
  for (std::size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    const auto& p = points[static_cast<std::size_t>(r.point)];
    std::vector<std::string> row = {r.id, std::to_string(r.point), std::to_string(r.seed), p.label};
    for (const auto& k : keys) row.push_back(config_value(r.config, k));
    row.push_back(r.config.policy.name);
    for (std::size_t m = 0; m < metric_names.size(); ++m) {
      const int c = tables[i].column(metric_names[m]);
      const std::string v = c >= 0 ? tables[i].rows[0][static_cast<std::size_t>(c)] : "";
      row.push_back(v);
      values[static_cast<std::size_t>(r.point)][m].push_back(c >= 0 ? tables[i].number(0, static_cast<std::size_t>(c))
                                                                     : std::numeric_limits<double>::quiet_NaN());
    }
    w.text_row(row);
  }
  write_file_atomic(out + "/scenario.resolved.yaml", scenario_yaml(sc));
  write_file_atomic(out + "/runs.csv", csv.str());

  // Each point's runs, once (a scan per point is quadratic in a large sweep).
  std::vector<std::vector<std::size_t>> runs_of(points.size());
  for (std::size_t i = 0; i < runs.size(); ++i) runs_of[static_cast<std::size_t>(runs[i].point)].push_back(i);
  std::ostringstream js;
  const auto seeds = sc.run_seeds();
  js << "{\n  \"scenario\": " << json_string(sc.name) << ",\n  \"description\": " << json_string(sc.description)
     << ",\n  \"source\": " << json_string(sc.path) << ",\n  \"overrides\": [";
  for (std::size_t i = 0; i < sc.overrides.size(); ++i) js << (i ? ", " : "") << json_string(sc.overrides[i]);
  js << "],\n  \"seeds\": [";
  for (std::size_t i = 0; i < seeds.size(); ++i) js << (i ? ", " : "") << seeds[i];
  js << "],\n  \"runs\": " << runs.size() << ",\n  \"config\": {";
  const auto fields = config_fields(sc.base);
  for (std::size_t i = 0; i < fields.size(); ++i)
    js << (i ? ",\n" : "\n") << "    " << json_string(fields[i].first) << ": " << json_string(fields[i].second);
  js << "\n  },\n  \"swept_keys\": [";
  for (std::size_t i = 0; i < keys.size(); ++i) js << (i ? ", " : "") << json_string(keys[i]);
  js << "],\n  \"grids\": [";
  // The sweep's structure, for reports: each grid's axes with their value labels.
  for (std::size_t g = 0; g < sc.grids.size(); ++g) {
    js << (g ? ", " : "") << "{\"axes\": [";
    for (std::size_t a = 0; a < sc.grids[g].size(); ++a) {
      const auto& axis = sc.grids[g][a];
      js << (a ? ", " : "") << "{\"key\": " << json_string(axis.key) << ", \"section\": " << (axis.section ? "true" : "false")
         << ", \"labels\": [";
      for (std::size_t i = 0; i < axis.items.size(); ++i) js << (i ? ", " : "") << json_string(axis.items[i].label);
      js << "]}";
    }
    js << "]}";
  }
  js << "],\n  \"stats\": \"mean, std (n-1), min, max over seeds of each final metric; NaNs skipped\",\n"
     << "  \"points\": [";
  for (std::size_t pi = 0; pi < points.size(); ++pi) {
    const auto& p = points[pi];
    js << (pi ? "," : "") << "\n    {\n      \"index\": " << p.index << ",\n      \"grid\": " << p.grid
       << ",\n      \"label\": " << json_string(p.label) << ",\n      \"policy\": " << json_string(p.config.policy.name)
       << ",\n      \"values\": {";
    for (std::size_t k = 0; k < keys.size(); ++k)
      js << (k ? ", " : "") << json_string(keys[k]) << ": " << json_string(config_value(p.config, keys[k]));
    js << "},\n      \"items\": [";
    // Which value of each axis of its grid the point takes.
    for (std::size_t a = 0; a < p.items.size(); ++a) {
      const auto& axis = sc.grids[static_cast<std::size_t>(p.grid)][a];
      js << (a ? ", " : "") << (p.items[a] - axis.items.data());
    }
    js << "],\n      \"runs\": [";
    bool first = true;
    for (std::size_t ri : runs_of[pi]) js << (first ? "" : ", ") << json_string(runs[ri].id), first = false;
    js << "],\n      \"replay\": " << json_string(replay_command(sc, p, seeds.front(), program, ""))
       << ",\n      \"metrics\": {";
    for (std::size_t m = 0; m < metric_names.size(); ++m) {
      const auto s = seed_stats(values[pi][m]);
      js << (m ? "," : "") << "\n        " << json_string(metric_names[m]) << ": {\"mean\": " << json_number(s.mean)
         << ", \"std\": " << json_number(s.std) << ", \"min\": " << json_number(s.min)
         << ", \"max\": " << json_number(s.max) << ", \"n\": " << s.n << "}";
    }
    js << "\n      }\n    }";
  }
  js << "\n  ]\n}\n";
  write_file_atomic(out + "/summary.json", js.str());
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
