// confirm's files: CSVs a pandas user loads as is, summary.json, and the
// Markdown report with its plots (through reports/).
#include <cmath>
#include <filesystem>
#include <sstream>

#include "common/csv.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/json.hpp"
#include "common/text.hpp"
#include "confirm/confirm.hpp"
#include "metrics/load_metrics.hpp"
#include "reports/markdown.hpp"
#include "reports/plotter.hpp"

namespace moesim {

namespace fs = std::filesystem;

namespace {

const char* yes_no(bool b) { return b ? "yes" : "no"; }

double scale_of(const std::string& metric) {
  for (const auto& m : run_metrics())
    if (metric == m.name) return m.scale;
  return 1.0;
}

std::string heading_of(const std::string& metric) {
  for (const auto& m : run_metrics())
    if (metric == m.name) return m.heading;
  return metric;
}

std::string metrics_csv(const ConfirmResult& r) {
  std::ostringstream os;
  CsvWriter csv(os);
  std::vector<std::string> h = {"group", "policy", "runs", "reference", "source"};
  for (const auto& m : confirm_metrics()) h.push_back(m);
  csv.header(h);
  for (const auto& g : r.groups) {
    const std::pair<const char*, const std::vector<double>*> sources[] = {
        {"real", &g.mean.real}, {"replay", &g.mean.replay}, {"sim", &g.mean.sim}, {"real_spread", &g.real_spread}};
    for (const auto& [name, v] : sources) {
      std::vector<std::string> row = {g.label, g.policy, std::to_string(g.runs.size()), g.reference ? "1" : "0", name};
      for (double x : *v) row.push_back(format_number(x));
      csv.text_row(row);
    }
  }
  return os.str();
}

std::string agreement_csv(const ConfirmResult& r) {
  std::ostringstream os;
  CsvWriter csv(os);
  csv.header({"metric", "spearman_sim_real", "spearman_replay_real", "n"});
  for (const auto& a : r.agreement)
    csv.text_row({a.metric, format_number(a.rho_sim), format_number(a.rho_replay), std::to_string(a.n)});
  return os.str();
}

std::string claims_csv(const ConfirmResult& r) {
  std::ostringstream os;
  CsvWriter csv(os);
  csv.header({"claim", "metric", "lower", "higher", "tested", "sim", "replay", "real", "confirmed"});
  for (const auto& c : r.claims)
    csv.text_row({c.text, c.metric, c.lower, c.higher, c.tested ? "1" : "0", c.tested ? (c.sim ? "1" : "0") : "",
                  c.tested ? (c.replay ? "1" : "0") : "", c.tested ? (c.real ? "1" : "0") : "",
                  c.tested ? (c.sim == c.real ? "1" : "0") : ""});
  return os.str();
}

std::string calibration_csv(const ConfirmResult& r) {
  std::ostringstream os;
  CsvWriter csv(os);
  csv.header({"gate_lr", "skill_growth", "clusters", "init_scale", "aux_scale", "loss"});
  for (const auto& p : r.calibration) {
    const double row[] = {p.gate_lr, p.skill_growth, p.clusters, p.init_scale, p.aux_scale, p.loss};
    csv.row(row);
  }
  return os.str();
}

// Per held-out group and metric: sim - real, and relative to |real| (NaN when real is 0).
std::string prediction_csv(const ConfirmResult& r) {
  std::ostringstream os;
  CsvWriter csv(os);
  csv.header({"group", "metric", "real", "sim", "error", "rel_error"});
  for (const auto& g : r.groups) {
    if (g.reference) continue;
    for (std::size_t m = 0; m < confirm_metrics().size(); ++m) {
      const double e = g.mean.sim[m] - g.mean.real[m];
      const double rel = g.mean.real[m] != 0 ? std::fabs(e) / std::fabs(g.mean.real[m]) : NAN;
      csv.text_row({g.label, confirm_metrics()[m], format_number(g.mean.real[m]), format_number(g.mean.sim[m]),
                    format_number(e), format_number(rel)});
    }
  }
  return os.str();
}

std::string summary_json(const ConfirmResult& r) {
  std::ostringstream js;
  int tested = 0, confirmed = 0;
  for (const auto& c : r.claims) tested += c.tested, confirmed += c.tested && c.sim == c.real;
  js << "{\n  \"reference\": " << json_string(r.reference) << ",\n  \"window\": " << r.cfg.window
     << ",\n  \"calibration\": {\"gate_lr\": " << json_number(r.best.gate_lr)
     << ", \"skill_growth\": " << json_number(r.best.skill_growth) << ", \"clusters\": " << json_number(r.best.clusters)
     << ", \"init_scale\": " << json_number(r.best.init_scale) << ", \"aux_scale\": " << json_number(r.best.aux_scale)
     << ", \"loss\": " << json_number(r.best.loss)
     << ", \"perf_level\": " << json_number(r.perf_level)
     << ", \"perf_spread\": " << json_number(r.perf_spread) << ", \"points\": " << r.calibration.size() << "},\n  \"groups\": [";
  for (std::size_t g = 0; g < r.groups.size(); ++g)
    js << (g ? ", " : "") << json_string(r.groups[g].label);
  js << "],\n  \"agreement\": {";
  for (std::size_t i = 0; i < r.agreement.size(); ++i) {
    const auto& a = r.agreement[i];
    js << (i ? ",\n" : "\n") << "    " << json_string(a.metric) << ": {\"spearman_sim_real\": " << json_number(a.rho_sim)
       << ", \"spearman_replay_real\": " << json_number(a.rho_replay) << ", \"n\": " << a.n << "}";
  }
  js << "\n  },\n  \"claims_tested\": " << tested << ",\n  \"claims_confirmed\": " << confirmed << "\n}\n";
  return js.str();
}

void plot_bars(Plotter& plot, const ConfirmResult& r, std::ostringstream& md) {
  const auto& ms = confirm_metrics();
  for (const auto& m : ms) {
    std::ostringstream d;
    d << "# group real replay sim\n";
    const auto i = static_cast<std::size_t>(std::find(ms.begin(), ms.end(), m) - ms.begin());
    const double k = scale_of(m);
    for (const auto& g : r.groups)
      d << '"' << g.label << "\" " << format_number(k * g.mean.real[i]) << ' ' << format_number(k * g.mean.replay[i])
        << ' ' << format_number(k * g.mean.sim[i]) << "\n";
    plot.data("bars_" + m + ".dat", d.str());
  }
  int rows = 0, cols = 0;
  panel_layout(ms.size(), rows, cols);
  std::ostringstream body;
  body << "set multiplot layout " << rows << "," << cols << "\nset style data histogram\n"
       << "set style histogram clustered gap 1\nset style fill solid 0.8 border -1\nset xtics rotate by -35 font ',8'\n"
       << "set key outside top center horizontal font ',8'\nset grid ytics\n";
  for (const auto& m : ms)
    body << "set title " << gq(heading_of(m)) << "\nplot " << data_file("bars_" + m + ".dat")
         << " using 2:xtic(1) title 'real', '' using 3 title 'replay', '' using 4 title 'sim'\n";
  body << "unset multiplot\n";
  if (plot.plot("metric_bars", 420 * cols, 330 * rows + 40, body.str()))
    md << "![Metrics per policy: real training, replay of its logits, calibrated simulator](plots/metric_bars.png)\n\n";
}

void plot_shares(Plotter& plot, const ConfirmResult& r, std::ostringstream& md) {
  std::ostringstream body;
  body << "set multiplot layout " << r.groups.size() << ",2\nset yrange [0:*]\nset key off\nset grid\n";
  for (std::size_t g = 0; g < r.groups.size(); ++g) {
    const auto& G = r.groups[g];
    for (int src = 0; src < 2; ++src) {
      const auto& steps = src ? G.sim_steps : G.real_steps;
      const auto& shares = src ? G.sim_shares : G.real_shares;
      const std::string name = "shares_" + std::to_string(g) + (src ? "_sim.dat" : "_real.dat");
      std::ostringstream d;
      for (std::size_t i = 0; i < steps.size(); ++i) {
        d << steps[i];
        for (double x : shares[i]) d << ' ' << format_number(x);
        d << "\n";
      }
      plot.data(name, d.str());
      const std::size_t E = shares.empty() ? 0 : shares[0].size();
      body << "set title " << gq(G.label + (src ? ": simulator" : ": real")) << " font ',9'\nplot ";
      for (std::size_t e = 0; e < E; ++e)
        body << (e ? ", " : "") << data_file(name) << " using 1:" << e + 2 << " with lines " << line_style(e);
      body << "\n";
    }
  }
  body << "unset multiplot\n";
  if (plot.plot("load_shares", 900, 200 * static_cast<int>(r.groups.size()) + 40, body.str()))
    md << "![Load share of each expert over training (mean over MoE layers): real vs simulator](plots/load_shares.png)\n\n";
}

std::string markdown(const ConfirmResult& r, Plotter& plot) {
  std::ostringstream md;
  md << "# Simulator vs real: confirmation report\n\n"
     << "Metrics over the last " << r.cfg.window << " training steps (replay: the recorded steps inside them), "
     << "mean over MoE layers and over the runs of a group (seeds). *real* = the training log, *replay* = the "
     << "run's recorded logits through its own policy, *sim* = the synthetic simulator matched to the model "
     << "(E, k, T, layers, steps, policy, aux/z loss) with the calibrated parameters.\n\n";
  const auto& ms = confirm_metrics();
  md << "| group | policy | runs |";
  for (const auto& m : ms) md << ' ' << md_escape(heading_of(m)) << " real / replay / sim |";
  md << "\n|---|---|---:|";
  for (std::size_t i = 0; i < ms.size(); ++i) md << "---:|";
  md << "\n";
  for (const auto& g : r.groups) {
    md << "| " << md_escape(g.label) << (g.reference ? " (fitted)" : "") << " | " << md_escape(g.policy) << " | "
       << g.runs.size() << " |";
    for (std::size_t i = 0; i < ms.size(); ++i) {
      const double k = scale_of(ms[i]);
      md << ' ' << fmt_value(k * g.mean.real[i]) << " / " << fmt_value(k * g.mean.replay[i]) << " / "
         << fmt_value(k * g.mean.sim[i]) << (g.runs.size() > 1 ? " (±" + fmt_value(k * g.real_spread[i] / 2) + ")" : "")
         << " |";
    }
    md << "\n";
  }
  md << "\n(±: half the range of the real value over the group's seeds.)\n\n## Rank agreement (Spearman over "
     << r.groups.size() << " groups)\n\n| metric | sim vs real | replay vs real |\n|---|---:|---:|\n";
  for (const auto& a : r.agreement)
    md << "| " << md_escape(heading_of(a.metric)) << " | " << fmt_value(a.rho_sim) << " | " << fmt_value(a.rho_replay)
       << " |\n";
  md << "\n## Claims\n\n| claim | sim | replay | real | confirmed |\n|---|---|---|---|---|\n";
  for (const auto& c : r.claims) {
    if (!c.tested) {
      md << "| " << md_escape(c.text) << " | – | – | – | not tested: " << md_escape(c.why_untested) << " |\n";
      continue;
    }
    md << "| " << md_escape(c.text) << " | " << yes_no(c.sim) << " | " << yes_no(c.replay) << " | " << yes_no(c.real)
       << " | " << (c.sim == c.real ? "**yes**" : "no") << " |\n";
  }
  md << "\n## Calibration\n\nFitted on " << md_escape(r.reference) << " over " << r.calibration.size()
     << " grid points (calibration.csv): gate.lr = " << fmt_value(r.best.gate_lr) << ", world.skill_growth = "
     << fmt_value(r.best.skill_growth) << ", stream.clusters = " << fmt_value(r.best.clusters)
     << ", gate.init_scale = " << fmt_value(r.best.init_scale) << ", aux-loss scale = " << fmt_value(r.best.aux_scale)
     << " (gate.aux_loss = the run's coefficient x scale); recorded performance level " << fmt_value(r.perf_level)
     << (r.cfg.perf_level ? " (used)" : " (not used)") << ", spread of ln(performance) across experts "
     << fmt_value(r.perf_spread) << (r.cfg.perf_spread ? " (used: world.perf_scale_spread)" : " (not used)") << " (loss " << fmt_value(r.best.loss)
     << "). Prediction error of the held-out groups (sim − real; prediction.csv):\n\n| group |";
  for (const auto& m : ms) md << ' ' << md_escape(heading_of(m)) << " |";
  md << "\n|---|";
  for (std::size_t i = 0; i < ms.size(); ++i) md << "---:|";
  md << "\n";
  for (const auto& g : r.groups) {
    if (g.reference) continue;
    md << "| " << md_escape(g.label) << " |";
    for (std::size_t i = 0; i < ms.size(); ++i)
      md << ' ' << fmt_value(scale_of(ms[i]) * (g.mean.sim[i] - g.mean.real[i])) << " |";
    md << "\n";
  }
  md << "\n";
  if (plot.enabled()) {
    plot_bars(plot, r, md);
    plot_shares(plot, r, md);
  }
  return md.str();
}

}  // namespace

void write_confirm(const ConfirmResult& r, const std::string& out, bool plots, const std::string& gnuplot,
                   std::vector<std::string>& warnings) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) throw Error(out + ": cannot create the output folder: " + ec.message());
  auto path = [&](const char* f) { return (fs::path(out) / f).string(); };
  write_file_atomic(path("metrics.csv"), metrics_csv(r));
  write_file_atomic(path("agreement.csv"), agreement_csv(r));
  write_file_atomic(path("claims.csv"), claims_csv(r));
  write_file_atomic(path("calibration.csv"), calibration_csv(r));
  write_file_atomic(path("prediction.csv"), prediction_csv(r));
  write_file_atomic(path("summary.json"), summary_json(r));
  Plotter plot(path("plots"), plots, gnuplot, warnings);
  write_file_atomic(path("confirm.md"), markdown(r, plot));
}

}  // namespace moesim
