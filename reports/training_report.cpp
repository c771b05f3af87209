#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <limits>
#include <sstream>

#include "common/csv.hpp"
#include "common/error.hpp"
#include "common/files.hpp"
#include "common/text.hpp"
#include "reports/markdown.hpp"
#include "reports/plotter.hpp"
#include "reports/report.hpp"

namespace fs = std::filesystem;

namespace moesim {

namespace {

constexpr std::size_t kTail = 100;  // logged steps the table's means cover

// MoE layers present in a training log: the L<l> of its L<l>_load<e> columns.
std::vector<int> moe_layers_of(const CsvTable& t, int& experts) {
  std::vector<int> layers;
  experts = 0;
  for (const auto& h : t.header) {
    int l = 0, e = 0;
    char tail = 0;
    if (std::sscanf(h.c_str(), "L%d_load%d%c", &l, &e, &tail) == 2) {
      if (std::find(layers.begin(), layers.end(), l) == layers.end()) layers.push_back(l);
      experts = std::max(experts, e + 1);
    }
  }
  std::sort(layers.begin(), layers.end());
  return layers;
}

// Mean of column c over the last n rows (NaNs skipped).
double tail_mean(const CsvTable& t, int c, std::size_t n) {
  if (c < 0) return std::numeric_limits<double>::quiet_NaN();
  double sum = 0;
  int k = 0;
  for (std::size_t i = t.rows.size() > n ? t.rows.size() - n : 0; i < t.rows.size(); ++i) {
    const double v = t.number(i, static_cast<std::size_t>(c));
    if (std::isfinite(v)) sum += v, ++k;
  }
  return k ? sum / k : std::numeric_limits<double>::quiet_NaN();
}

std::string fmt_num(double v, const char* f = "%.3f") {
  if (!std::isfinite(v)) return "–";
  char b[48];
  std::snprintf(b, sizeof b, f, v);
  return b;
}

// "L<l>_<what>", built by appends: "L" + to_string(l) trips GCC 12's false -Wrestrict (PR105651).
std::string layer_column(int l, const char* what) {
  std::string c = "L";
  c += std::to_string(l);
  c += '_';
  c += what;
  return c;
}

// One run folder, or a folder of run folders (compared side by side, by name).
std::vector<std::pair<std::string, std::string>> find_runs(const std::string& dir) {
  std::vector<std::pair<std::string, std::string>> runs;  // (name, folder)
  if (fs::exists(dir + "/train_log.csv")) {
    runs.emplace_back(fs::path(dir).filename().string(), dir);
    return runs;
  }
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_directory() && fs::exists(e.path() / "train_log.csv"))
      runs.emplace_back(e.path().filename().string(), e.path().string());
  std::sort(runs.begin(), runs.end());
  if (runs.empty()) throw Error(dir + ": no train_log.csv here or in a sub-folder: not a training run folder");
  return runs;
}

// The plots and the table row of one run, accumulated over the runs.
struct TrainingFigures {
  Plotter& plot;
  std::string loss, val;             // plot commands of the CE and perplexity figures
  std::vector<std::string> panels;  // load-share panels, one per (run, layer)
  int max_layers = 1;

  void add_run(const std::string& name, const CsvTable& t, std::size_t c_step, std::size_t c_ce,
               const CsvTable* eval);
  void add_load_panel(const std::string& name, const CsvTable& t, std::size_t c_step, int layer, int experts);
  void render(std::ostringstream& md);
};

void TrainingFigures::add_run(const std::string& name, const CsvTable& t, std::size_t c_step, std::size_t c_ce,
                              const CsvTable* eval) {
  std::ostringstream d;
  for (const auto& row : t.rows) d << row[c_step] << ' ' << row[c_ce] << '\n';
  plot.data("ce_" + name + ".dat", d.str());
  loss += (loss.empty() ? "plot " : ", ") + data_file("ce_" + name + ".dat") + " using 1:2 with lines lw 1.5 title " +
          gq(name);
  if (!eval) return;
  std::ostringstream vd;
  const int c_vs = eval->column("step"), c_vp = eval->column("val_ppl");
  if (c_vs < 0 || c_vp < 0 || eval->rows.empty()) return;
  for (const auto& row : eval->rows)
    vd << row[static_cast<std::size_t>(c_vs)] << ' ' << row[static_cast<std::size_t>(c_vp)] << '\n';
  plot.data("val_" + name + ".dat", vd.str());
  val += (val.empty() ? "plot " : ", ") + data_file("val_" + name + ".dat") +
         " using 1:2 with linespoints lw 1.5 pt 7 title " + gq(name);
}

// Load share per expert over training, one panel per (run, layer): stacked areas.
void TrainingFigures::add_load_panel(const std::string& name, const CsvTable& t, std::size_t c_step, int layer,
                                     int experts) {
  std::vector<int> cols;
  for (int e = 0; e < experts; ++e) cols.push_back(t.column(layer_column(layer, "load") + std::to_string(e)));
  std::ostringstream ld;
  for (std::size_t r = 0; r < t.rows.size(); ++r) {
    double total = 0;
    for (int c : cols) total += c >= 0 ? t.number(r, static_cast<std::size_t>(c)) : 0.0;
    ld << t.rows[r][c_step];
    double cum = 0;
    for (int c : cols) {
      cum += total > 0 && c >= 0 ? t.number(r, static_cast<std::size_t>(c)) / total : 0.0;
      ld << ' ' << cum;
    }
    ld << '\n';
  }
  const std::string file = "load_" + name + "_L" + std::to_string(layer) + ".dat";
  plot.data(file, ld.str());
  std::ostringstream panel;
  panel << "set title " << gq(name + ", MoE layer " + std::to_string(layer)) << "\nset xlabel 'step'\n"
        << "set ylabel 'share of served slots'\nset yrange [0:1]\nunset key\nplot ";
  for (int e = experts - 1; e >= 0; --e)
    panel << (e == experts - 1 ? "" : ", ") << data_file(file) << " using 1:" << (e + 2)
          << " with filledcurves x1 lc palette frac " << (experts > 1 ? static_cast<double>(e) / (experts - 1) : 0.0);
  panels.push_back(panel.str());
}

void TrainingFigures::render(std::ostringstream& md) {
  auto image = [&](const std::string& name, const std::string& caption) {
    md << "![" << caption << "](plots/" << name << ".png)\n\n" << caption << " ([SVG](plots/" << name << ".svg))\n\n";
  };
  if (!loss.empty() &&
      plot.plot("train_loss", 900, 450,
                "set title 'Training cross-entropy'\nset xlabel 'step'\nset ylabel 'cross-entropy (nats)'\n"
                "set grid\nset key top right\n" + loss))
    image("train_loss", "Training cross-entropy per logged step, one line per run");
  if (!val.empty() &&
      plot.plot("val_ppl", 900, 450,
                "set title 'Validation perplexity'\nset xlabel 'step'\nset ylabel 'perplexity'\nset logscale y\n"
                "set grid\nset key top right\n" + val))
    image("val_ppl", "Validation perplexity at each evaluation, one line per run");
  if (panels.empty()) return;
  const int cols = max_layers, rows = static_cast<int>((panels.size() + static_cast<std::size_t>(cols) - 1) / static_cast<std::size_t>(cols));
  std::ostringstream body;
  body << "set palette defined (0 '#440154', 0.5 '#21918c', 1 '#fde725')\nunset colorbox\n"
       << "set multiplot layout " << rows << "," << cols << " title 'Load share per expert over training (stacked)'\n";
  for (const auto& p : panels) body << p << "\n";
  body << "unset multiplot\n";
  if (plot.plot("train_load_shares", 520 * cols, 320 * rows + 40, body.str()))
    image("train_load_shares", "Load share of each expert over training, one panel per run and MoE layer");
}

// The table row of one run: steps, tokens, final validation perplexity, late means per layer.
std::string table_row(const std::string& name, const CsvTable& t, std::size_t c_step, std::size_t c_ce,
                      const CsvTable* eval, const std::vector<int>& layers) {
  std::string val = "–";
  if (eval && !eval->rows.empty()) {
    const int c_vp = eval->column("val_ppl");
    if (c_vp >= 0) val = fmt_num(eval->number(eval->rows.size() - 1, static_cast<std::size_t>(c_vp)), "%.1f");
  }
  std::string mv, gi, dr;
  auto add = [](std::string& cell, const std::string& v) { cell += (cell.empty() ? "" : " / ") + v; };
  for (int l : layers) {
    add(mv, fmt_num(tail_mean(t, t.column(layer_column(l, "maxvio")), kTail), "%.2f"));
    add(gi, fmt_num(tail_mean(t, t.column(layer_column(l, "gini")), kTail), "%.3f"));
    add(dr, fmt_num(100.0 * tail_mean(t, t.column(layer_column(l, "drop")), kTail), "%.2f%%"));
  }
  const int c_tok = t.column("tokens");
  const auto& last = t.rows.back();
  return "| " + md_escape(name) + " | " + last[c_step] + " | " +
         (c_tok >= 0 ? last[static_cast<std::size_t>(c_tok)] : std::string("–")) + " | " + val + " | " +
         fmt_num(tail_mean(t, static_cast<int>(c_ce), kTail)) + " | " + mv + " | " + gi + " | " + dr + " |\n";
}

}  // namespace

bool is_training_folder(const std::string& dir) {
  std::error_code ec;
  if (fs::exists(dir + "/train_log.csv", ec)) return true;
  if (!fs::is_directory(dir, ec)) return false;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_directory() && fs::exists(e.path() / "train_log.csv")) return true;
  return false;
}

ReportResult write_training_report(const std::string& dir, const ReportOptions& options) {
  const auto runs = find_runs(dir);
  ReportResult res;
  Plotter plot(dir + "/plots", options.plots, options.gnuplot, res.warnings);
  TrainingFigures fig{plot, "", "", {}, 1};
  std::ostringstream md;
  md << "# Training report: " << md_escape(fs::path(dir).filename().string()) << "\n\n"
     << "Runs: " << runs.size() << " (" << md_escape(dir) << (runs.size() == 1 && runs[0].second == dir ? "" : "/<run>")
     << "/train\\_log.csv, eval\\_log.csv). "
     << "Load columns are per MoE layer; MaxVio, Gini and drop rate are means over the last " << kTail
     << " logged steps.\n\n"
     << "| run | steps | tokens | final val ppl | train CE (last " << kTail
     << ") | MaxVio per layer | Gini per layer | drop rate per layer |\n"
     << "|---|---:|---:|---:|---:|---|---|---|\n";
  for (const auto& [name, folder] : runs) {
    const CsvTable t = read_csv(folder + "/train_log.csv");
    const std::size_t c_step = t.need_column("step"), c_ce = t.need_column("ce");
    if (t.rows.empty()) throw Error(folder + "/train_log.csv: no logged steps");
    CsvTable eval;
    const bool has_eval = fs::exists(folder + "/eval_log.csv");
    if (has_eval) eval = read_csv(folder + "/eval_log.csv");
    int experts = 0;
    const auto layers = moe_layers_of(t, experts);
    fig.max_layers = std::max<int>(fig.max_layers, static_cast<int>(layers.size()));
    md << table_row(name, t, c_step, c_ce, has_eval ? &eval : nullptr, layers);
    if (!plot.enabled()) continue;
    fig.add_run(name, t, c_step, c_ce, has_eval ? &eval : nullptr);
    for (int l : layers) fig.add_load_panel(name, t, c_step, l, experts);
  }
  md << "\n";
  if (plot.enabled()) fig.render(md);
  res.plots = plot.count();
  res.markdown = dir + "/report.md";
  write_file_atomic(res.markdown, md.str());
  return res;
}

}  // namespace moesim
