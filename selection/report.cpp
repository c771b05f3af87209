#include "selection/report.hpp"

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "common/args.hpp"
#include "common/csv.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "selection/manifest.hpp"

namespace moesim::selection {

namespace fs = std::filesystem;

const std::vector<std::string>& report_metrics() {
  static const std::vector<std::string> m = {"rejection_precision", "rejection_recall", "clean_share_selected",
                                             "train_tokens",        "val_ppl",          "heldout_ppl",
                                             "base_val_ppl",        "base_heldout_ppl"};
  return m;
}

namespace {

std::string arm_of(const JsonValue& v, const std::string& src) {
  auto str = [&](const char* k) {
    const auto* x = v.find(k);
    if (!x || !x->is(JsonValue::Type::String)) throw Error(src + ": no \"" + k + "\"");
    return x->text;
  };
  auto num = [&](const char* k) {
    const auto* x = v.find(k);
    if (!x || !x->is(JsonValue::Type::Number)) throw Error(src + ": no \"" + k + "\"");
    return x->text;
  };
  std::string arm = str("method");
  if (arm == "router") {
    for (const std::string& part : {std::string(" "), str("aggregate"), std::string(", trash "), num("trash_expert_ratio"),
                                    std::string(", epoch "), num("warmup_epoch")})
      arm += part;
  }
  for (const std::string& part : {std::string("; keep "), num("selection_percentage"), std::string("; "), str("mode")}) arm += part;
  return arm;
}

}  // namespace

std::vector<ArmRow> collect_arms(const std::vector<std::string>& out_dirs) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<std::vector<double>>> values;  // arm -> per seed -> metrics
  for (const auto& d : out_dirs) {
    const auto path = (fs::path(d) / "eval" / "eval.json").string();
    if (!fs::exists(path)) throw Error(path + ": missing (run `moesim select eval` for " + d + ")");
    const auto v = parse_json(read_file(path), path);
    const auto arm = arm_of(v, path);
    // The tokens the target trained on: the train stage's own summary.
    const auto summary_path = (fs::path(d) / "train" / "summary.json").string();
    require_output((fs::path(d) / "train").string(), "train", summary_path);
    const auto summary = parse_json(read_file(summary_path), summary_path);
    std::vector<double> row;
    for (const auto& m : report_metrics()) {
      const auto* x = m == "train_tokens" ? summary.find("tokens") : v.find(m);
      if (!x) throw Error((m == "train_tokens" ? summary_path : path) + ": no \"" + (m == "train_tokens" ? "tokens" : m) + "\"");
      row.push_back(x->is(JsonValue::Type::Number) ? x->number : std::nan(""));
    }
    if (!values.count(arm)) order.push_back(arm);
    values[arm].push_back(row);
  }
  std::vector<ArmRow> rows;
  for (const auto& arm : order) {
    const auto& seeds = values[arm];
    ArmRow r;
    r.arm = arm;
    r.seeds = static_cast<int>(seeds.size());
    for (std::size_t m = 0; m < report_metrics().size(); ++m) {
      // Over the seeds that have the metric (eval.base=false leaves the base's out).
      double s = 0, ss = 0;
      int n = 0;
      for (const auto& x : seeds)
        if (!std::isnan(x[m])) s += x[m], ++n;
      const double mean = n ? s / n : std::nan("");
      for (const auto& x : seeds)
        if (!std::isnan(x[m])) ss += (x[m] - mean) * (x[m] - mean);
      r.mean.push_back(mean);
      r.sd.push_back(n > 1 ? std::sqrt(ss / (n - 1)) : std::nan(""));
    }
    rows.push_back(std::move(r));
  }
  return rows;
}

void write_report(const std::vector<ArmRow>& rows, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw Error(dir + ": cannot create the folder: " + ec.message());
  std::ostringstream csv, md;
  csv << "arm,seeds";
  md << "| arm | seeds |";
  for (const auto& m : report_metrics()) {
    csv << ',' << m << "_mean," << m << "_sd";
    md << ' ' << m << " |";
  }
  csv << "\n";
  md << "\n|---|---|";
  for (std::size_t i = 0; i < report_metrics().size(); ++i) md << "---|";
  md << "\n";
  for (const auto& r : rows) {
    csv << csv_escape(r.arm) << ',' << r.seeds;
    md << "| " << r.arm << " | " << r.seeds << " |";
    for (std::size_t m = 0; m < r.mean.size(); ++m) {
      csv << ',' << format_number(r.mean[m]) << ',' << format_number(r.sd[m]);
      char buf[64];
      if (std::isnan(r.sd[m])) std::snprintf(buf, sizeof buf, " %.3f |", r.mean[m]);
      else std::snprintf(buf, sizeof buf, " %.3f ± %.3f |", r.mean[m], r.sd[m]);
      md << buf;
    }
    csv << "\n";
    md << "\n";
  }
  write_file_atomic((fs::path(dir) / "select_report.csv").string(), csv.str());
  write_file_atomic((fs::path(dir) / "select_report.md").string(), md.str());
}

int select_report_command(const std::vector<std::string>& args) {
  ArgSpec spec;
  spec.options = {"--out"};
  spec.switches = {"--help"};
  spec.max_positional = 1 << 16;
  const auto a = parse_args(args, spec, "select report");
  if (a.has("--help") || a.positional.empty() || !a.has("--out")) {
    std::printf("usage: moesim select report OUT_DIR... --out DIR\n");
    return a.has("--help") ? 0 : 2;
  }
  if (!a.overrides.empty()) throw Error("select report: takes no key=value overrides");
  const auto rows = collect_arms(a.positional);
  write_report(rows, a.get("--out"));
  std::printf("select report: %zu arms from %zu runs: %s/select_report.md\n", rows.size(), a.positional.size(), a.get("--out").c_str());
  return 0;
}

}  // namespace moesim::selection
