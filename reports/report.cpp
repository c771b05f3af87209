#include "reports/report.hpp"

#include <cmath>
#include <sstream>

#include "common/files.hpp"
#include "common/text.hpp"
#include "reports/figures.hpp"
#include "reports/markdown.hpp"
#include "reports/plotter.hpp"
#include "reports/sweep_data.hpp"
#include "metrics/load_metrics.hpp"

namespace moesim {

namespace {

std::string plural(std::size_t n, const char* word) {
  return std::to_string(n) + " " + word + (n == 1 ? "" : "s");
}

std::string seed_list(const std::vector<std::uint64_t>& seeds) {
  std::string s;
  for (auto x : seeds) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

void write_intro(std::ostringstream& md, const SweepData& d) {
  md << "# Report: " << md_escape(d.name) << "\n\n";
  if (!d.description.empty()) md << md_escape(d.description) << "\n\n";
  // The report sits next to scenario.resolved.yaml; an absolute path would go stale when the folder moves.
  md << "Scenario [scenario.resolved.yaml](scenario.resolved.yaml): " << plural(d.points.size(), "point") << " x "
     << plural(d.seeds.size(), "seed") << " (" << seed_list(d.seeds) << ") = " << d.runs
     << " runs. Base config: E = " << d.value("experts") << " experts, k = " << d.value("k")
     << ", T = " << d.value("batch") << " tokens per batch, " << d.value("steps") << " steps, "
     << d.value("layers") << " layer" << (d.value("layers") == "1" ? "" : "s") << ", " << d.value("stream.clusters")
     << " clusters; skill growth " << d.value("world.skill_growth") << ", idle decay " << d.value("world.idle_decay")
     << ", gate lr " << d.value("gate.lr")
     << ". Files: [runs.csv](runs.csv) (one row per run, every final metric), [summary.json](summary.json), "
        "[scenario.resolved.yaml](scenario.resolved.yaml), `runs/<run_id>/timeseries.csv`.\n\n";
}

const SeedStats& stats_of(const PointInfo& p, const char* metric) {
  static const SeedStats none{std::nan(""), std::nan(""), std::nan(""), std::nan(""), 0};
  auto it = p.stats.find(metric);
  return it == p.stats.end() ? none : it->second;
}

void write_table(std::ostringstream& md, const SweepData& d) {
  const auto metrics = headline_metrics();
  md << "## Key final metrics (mean ± std over seeds)\n\n| # | point | policy |";
  for (const auto& m : metrics) md << " " << m.heading << " |";
  md << "\n|---:|---|---|";
  for (std::size_t i = 0; i < metrics.size(); ++i) md << "---:|";
  md << "\n";
  for (const auto& p : d.points) {
    md << "| " << p.index << " | " << md_escape(p.label) << " | " << md_escape(p.policy) << " |";
    for (const auto& m : metrics) {
      const auto& s = stats_of(p, m.name);
      md << " " << mean_std(m.scale * s.mean, m.scale * s.std, s.n) << " |";
    }
    md << "\n";
  }
  md << "\nColumns (see `metrics/load_metrics.hpp` for exact definitions): **Gini (late)**, **load CV (late)**: of each "
        "expert's load summed over the late window (the last `metrics.window` steps); **MaxVio batch**: "
        "(max load − mean load) / mean load per batch, averaged over the run; **MaxVio global**: the same on the "
        "load summed over the run; **dead experts**: experts with no load over the last `metrics.dead_window` "
        "steps; **starved experts**: experts whose share of the late window's load is below a tenth of the fair "
        "share 1/E; **drop %**: percentage of requested token-expert slots refused by capacity; **spec. MI**: "
        "mutual information (bits) between a token's cluster and its expert; **RGR slope**: rich-get-richer "
        "slope, late load share regressed on early share minus 1 (> 0: the rich get richer, −1: shares "
        "equalise; n/a when the windows overlap); **mean perf**: mean performance of the served slots.\n\n";
}

// Best and worst point of each headline metric that has a better direction.
void write_highlights(std::ostringstream& md, const SweepData& d) {
  if (d.points.size() < 2) return;
  md << "### Highlights\n\n";
  for (const auto& m : headline_metrics()) {
    if (m.better == 0) continue;
    const PointInfo *best = nullptr, *worst = nullptr;
    auto better = [&](double a, double b) { return m.better < 0 ? a < b : a > b; };
    for (const auto& p : d.points) {
      const double v = stats_of(p, m.name).mean;
      if (std::isnan(v)) continue;
      if (!best || better(v, stats_of(*best, m.name).mean)) best = &p;
      if (!worst || better(stats_of(*worst, m.name).mean, v)) worst = &p;
    }
    if (!best || stats_of(*best, m.name).mean == stats_of(*worst, m.name).mean) continue;
    md << "- " << m.heading << ": best **" << md_escape(best->label) << "** ("
       << fmt_value(m.scale * stats_of(*best, m.name).mean) << "), worst **" << md_escape(worst->label) << "** ("
       << fmt_value(m.scale * stats_of(*worst, m.name).mean) << ")\n";
  }
  md << "\n";
}

std::vector<std::string> draw_figures(const SweepData& d, const ReportOptions& options, ReportResult& res) {
  Plotter plot(d.dir + "/plots", options.plots, options.gnuplot, res.warnings);
  std::vector<std::string> sections;
  if (!plot.enabled()) return sections;
  // Per point: the mean over seeds and layers, and its first run's layer 0 (shares, reputations).
  std::vector<Series> mean_ts(d.points.size()), first_ts(d.points.size());
  for (std::size_t i = 0; i < d.points.size(); ++i) {
    std::vector<Series> all;
    for (const auto& id : d.points[i].run_ids) all.push_back(read_series(d.dir + "/runs/" + id + "/timeseries.csv"));
    mean_ts[i] = mean_series(all);
    first_ts[i] = read_series(d.dir + "/runs/" + d.points[i].run_ids.front() + "/timeseries.csv", 0);
  }
  Figures f{d, mean_ts, first_ts, plot, sections};
  f.load_shares();
  f.timeseries();
  f.reputation();
  f.heatmaps();
  f.final_metrics();
  res.plots = plot.count();
  return sections;
}

}  // namespace

ReportResult write_report(const std::string& out_dir, const ReportOptions& options) {
  ReportResult res;
  const SweepData d = load_sweep(out_dir);
  const auto sections = draw_figures(d, options, res);

  std::ostringstream md;
  write_intro(md, d);
  write_table(md, d);
  write_highlights(md, d);
  md << "## Plots\n\n";
  if (sections.empty())
    md << "No plots" << (options.plots ? " (see the warnings of `moesim report`)" : " (--no-plots)") << ".\n\n";
  for (const auto& s : sections) md << s << "\n";
  md << "## Replay\n\nEach point's first run, exactly (any listed seed works in `seed=`):\n\n";
  for (const auto& p : d.points) md << "- " << md_escape(p.label) << ": `" << p.replay << "`\n";
  if (!res.warnings.empty()) {
    md << "\n## Warnings\n\n";
    for (const auto& w : res.warnings) md << "- " << md_escape(w) << "\n";
  }
  res.markdown = out_dir + "/report.md";
  write_file_atomic(res.markdown, md.str());
  return res;
}

}  // namespace moesim
