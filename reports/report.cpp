#include "reports/report.hpp"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <limits>
#include <map>
#include <sstream>

#include "policies/knobs.hpp"
#include "policies/types.hpp"
#include "common/csv.hpp"
#include "common/files.hpp"
#include "sim/scenario.hpp"
#include "sim/sweep.hpp"

namespace fs = std::filesystem;

namespace moesim {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::size_t kMaxLines = 16;   // more lines than this are unreadable in one legend
constexpr std::size_t kMaxPanels = 16;  // load-share panels per image
constexpr std::size_t kMaxRepPanels = 6;

// Items per image when n items are split into as few images of at most `most` as possible, evenly.
std::size_t per_image(std::size_t n, std::size_t most) {
  const std::size_t images = (n + most - 1) / most;
  return images ? (n + images - 1) / images : most;
}

double to_double(const std::string& s) {
  if (s.empty() || s == "nan") return kNaN;
  char* end = nullptr;
  const double v = std::strtod(s.c_str(), &end);
  return end && *end == '\0' ? v : kNaN;
}

std::string fmt(double v) {
  if (std::isnan(v)) return "n/a";
  char b[32];
  const double a = std::fabs(v);
  if (a != 0 && (a < 0.001 || a >= 10000))
    std::snprintf(b, sizeof b, "%.3g", v);
  else
    std::snprintf(b, sizeof b, "%.3f", v);
  return b;
}

// "mean ± std" with one precision for both, so the spread reads against the mean.
std::string mean_std(double mean, double std, int n) {
  if (std::isnan(mean)) return "n/a";
  char b[64];
  const double a = std::max(std::fabs(mean), std::fabs(std));
  const bool fixed = a == 0 || (a >= 0.001 && a < 10000);
  if (n > 1)
    std::snprintf(b, sizeof b, fixed ? "%.3f ± %.3f" : "%.3g ± %.2g", mean, std);
  else
    std::snprintf(b, sizeof b, fixed ? "%.3f" : "%.3g", mean);
  return b;
}

// A gnuplot single-quoted string: '' stands for one quote.
std::string gq(const std::string& s) {
  std::string o = "'";
  for (char c : s) o += c == '\'' ? std::string("''") : std::string(1, c);
  return o + "'";
}

std::string md_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '|' || c == '*' || c == '_' || c == '`' || c == '<' || c == '>' || c == '[' || c == ']') o += '\\';
    o += c;
  }
  return o;
}

std::string seed_text(const std::vector<std::uint64_t>& seeds) {
  std::string s;
  for (auto x : seeds) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

// Runs a program (no shell) in cwd with stdout and stderr to log; the exit status, 127 when it cannot start.
int run_program(const std::vector<std::string>& args, const std::string& cwd, const std::string& log) {
  std::fflush(nullptr);
  const pid_t pid = ::fork();
  if (pid < 0) return 127;
  if (pid == 0) {
    // The log path is relative to the caller's folder: open it before changing folder.
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      ::close(fd);
    }
    if (::chdir(cwd.c_str()) != 0) ::_exit(126);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    ::_exit(127);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) return 127;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

class Plotter {
 public:
  Plotter(std::string dir, const ReportOptions& o, std::vector<std::string>& warnings)
      : dir_(std::move(dir)), prog_(o.gnuplot), warnings_(warnings), enabled_(o.plots) {
    if (!enabled_) return;
    fs::create_directories(dir_ + "/data");
    const std::string log = dir_ + "/data/probe.log";
    if (run_program({prog_, "-e", "set terminal pngcairo"}, dir_, log) == 0) {
      png_ = "pngcairo";
    } else if (run_program({prog_, "-e", "set terminal png"}, dir_, log) == 0) {
      png_ = "png";
    } else {
      warnings_.push_back("cannot run '" + prog_ + "' with a PNG terminal (install gnuplot-nox): plots skipped");
      enabled_ = false;
    }
    fs::remove(log);
  }

  bool enabled() const { return enabled_; }
  int count() const { return count_; }

  void data(const std::string& name, const std::string& content) {
    if (enabled_) write_file_atomic(dir_ + "/data/" + name, content);
  }

  // Renders NAME.png and NAME.svg from body; false (with a warning) when gnuplot fails.
  bool plot(const std::string& name, int w, int h, const std::string& body) {
    if (!enabled_) return false;
    const std::string size = std::to_string(w) + "," + std::to_string(h);
    std::ostringstream s;
    s << "# moesim report: " << name << ".png and " << name << ".svg. Re-make inside this folder: gnuplot "
      << name << ".gp\n"
      << "if (!exists('suffix')) suffix = ''\n"
      << "set terminal " << png_ << " size " << size << (png_ == "pngcairo" ? " font ',10'" : "") << " noenhanced\n"
      << "set output '" << name << ".png'.suffix\nreset\n"
      << body << "\nunset output\n"
      << "set terminal svg size " << size << " font 'sans,10' noenhanced background rgb 'white'\n"
      << "set output '" << name << ".svg'.suffix\nreset\n"
      << body << "\nunset output\n";
    write_file_atomic(dir_ + "/" + name + ".gp", s.str());
    const std::string log = dir_ + "/data/" + name + ".log";
    const int rc = run_program({prog_, "-e", "suffix='.tmp'", name + ".gp"}, dir_, log);
    std::error_code ec;
    if (rc != 0 || !fs::exists(dir_ + "/" + name + ".png.tmp", ec) || !fs::exists(dir_ + "/" + name + ".svg.tmp", ec)) {
      std::string first;
      try {
        std::istringstream in(read_file(log));
        std::string line;
        while (std::getline(in, line))
          if (!line.empty()) first += (first.empty() ? "" : " / ") + line;
      } catch (const Error&) {
      }
      if (first.size() > 300) first = first.substr(0, 300) + "...";
      warnings_.push_back("gnuplot failed on " + dir_ + "/" + name + ".gp (exit " + std::to_string(rc) + "): " + first);
      fs::remove(dir_ + "/" + name + ".png.tmp", ec);
      fs::remove(dir_ + "/" + name + ".svg.tmp", ec);
      return false;
    }
    fs::remove(log, ec);
    commit_file(dir_ + "/" + name + ".png.tmp", dir_ + "/" + name + ".png");
    commit_file(dir_ + "/" + name + ".svg.tmp", dir_ + "/" + name + ".svg");
    ++count_;
    return true;
  }

 private:
  std::string dir_, prog_, png_;
  std::vector<std::string>& warnings_;
  bool enabled_;
  int count_ = 0;
};

// One run's time series, averaged over layers: step -> column values.
struct Series {
  std::vector<std::string> columns;
  std::vector<double> step;
  std::vector<std::vector<double>> values;  // [column][row]
  int column(const std::string& name) const {
    for (std::size_t i = 0; i < columns.size(); ++i)
      if (columns[i] == name) return static_cast<int>(i);
    return -1;
  }
};

Series read_series(const std::string& path, int only_layer = -1) {
  const CsvTable t = read_csv(path);
  Series s;
  const int cs = t.column("step"), cl = t.column("layer");
  if (cs < 0 || cl < 0) throw Error(path + ": no step/layer columns");
  for (std::size_t c = 0; c < t.header.size(); ++c)
    if (static_cast<int>(c) != cs && static_cast<int>(c) != cl) s.columns.push_back(t.header[c]);
  s.values.assign(s.columns.size(), {});
  std::vector<int> layers_in_row;
  for (const auto& row : t.rows) {
    const double step = to_double(row[static_cast<std::size_t>(cs)]);
    const int layer = static_cast<int>(to_double(row[static_cast<std::size_t>(cl)]));
    if (only_layer >= 0 && layer != only_layer) continue;
    if (s.step.empty() || s.step.back() != step) {
      s.step.push_back(step);
      layers_in_row.push_back(0);
      for (auto& v : s.values) v.push_back(0.0);
    }
    ++layers_in_row.back();
    std::size_t k = 0;
    for (std::size_t c = 0; c < row.size(); ++c) {
      if (static_cast<int>(c) == cs || static_cast<int>(c) == cl) continue;
      s.values[k++].back() += to_double(row[c]);
    }
  }
  for (auto& v : s.values)
    for (std::size_t r = 0; r < v.size(); ++r) v[r] /= layers_in_row[r];
  return s;
}

// Element-wise mean of series with the same columns (over seeds); the shortest length wins.
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

// Mean load share of each expert over the logged rows of the late window (layers averaged).
std::vector<double> late_shares(const Series& s, const SimConfig& cfg) {
  const double from = static_cast<double>(cfg.steps - std::min(cfg.metrics.window, cfg.steps));
  std::vector<double> shares;
  for (int e = 0;; ++e) {
    const int c = s.column("share_" + std::to_string(e));
    if (c < 0) break;
    double sum = 0;
    int n = 0;
    for (std::size_t r = 0; r < s.step.size(); ++r)
      if (s.step[r] >= from) sum += s.values[static_cast<std::size_t>(c)][r], ++n;
    shares.push_back(n ? sum / n : kNaN);
  }
  return shares;
}

struct PointData {
  const SweepPoint* point = nullptr;
  std::vector<std::string> run_ids;
  std::vector<std::uint64_t> seeds;
  std::map<std::string, SeedStats> stats;  // runs.csv metric -> over seeds
};

void layout(std::size_t n, int& rows, int& cols) {
  cols = n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : 4;
  rows = static_cast<int>((n + static_cast<std::size_t>(cols) - 1) / static_cast<std::size_t>(cols));
}

std::string line_style(std::size_t i) {
  return "lw 2 lc " + std::to_string(i % 8 + 1) + " dt " + std::to_string(i / 8 % 5 + 1);
}

}  // namespace

std::vector<double> late_load_shares(const std::string& timeseries_csv, const SimConfig& cfg) {
  return late_shares(read_series(timeseries_csv), cfg);
}

int starved_experts(const std::vector<double>& shares) {
  int n = 0;
  for (double x : shares)
    if (x < 0.1 / static_cast<double>(shares.size())) ++n;
  return n;
}

const std::vector<std::pair<std::string, std::string>>& report_metrics() {
  static const std::vector<std::pair<std::string, std::string>> m = {
      {"late_gini", "Gini (late)"},
      {"maxvio_batch", "MaxVio batch"},
      {"maxvio_global", "MaxVio global"},
      {"late_load_cv", "load CV (late)"},
      {"dead", "dead experts"},
      {"starved", "starved experts"},
      {"drop_rate", "drop %"},
      {"spec_mi_bits", "spec. MI (bits)"},
      {"rgr_slope", "RGR slope"},
      {"mean_perf", "mean perf"},
  };
  return m;
}

ReportResult write_report(const std::string& out_dir, const ReportOptions& options) {
  ReportResult res;
  const std::string resolved = out_dir + "/scenario.resolved.yaml";
  if (!fs::exists(resolved)) throw Error(out_dir + ": no scenario.resolved.yaml: not a folder written by moesim sweep or run");
  if (!fs::exists(out_dir + "/runs.csv"))
    throw Error(out_dir + ": no runs.csv: the sweep has not finished (run the same `moesim sweep` again to resume it)");
  const Scenario sc = load_scenario(resolved);
  const auto points = expand_sweep(sc);
  const CsvTable runs = read_csv(out_dir + "/runs.csv");
  const int c_id = runs.column("run_id"), c_point = runs.column("point"), c_seed = runs.column("seed");
  if (c_id < 0 || c_point < 0 || c_seed < 0) throw Error(out_dir + "/runs.csv: missing run_id/point/seed columns");

  std::vector<PointData> pd(points.size());
  for (std::size_t i = 0; i < points.size(); ++i) pd[i].point = &points[i];
  std::map<std::string, std::vector<std::vector<double>>> per_point;  // metric -> [point] values
  for (const auto& row : runs.rows) {
    const double pi = to_double(row[static_cast<std::size_t>(c_point)]);
    if (!(pi >= 0) || pi >= static_cast<double>(points.size()))
      throw Error(out_dir + "/runs.csv: run " + row[static_cast<std::size_t>(c_id)] + " names point " +
                  row[static_cast<std::size_t>(c_point)] + ", not in scenario.resolved.yaml");
    auto& p = pd[static_cast<std::size_t>(pi)];
    p.run_ids.push_back(row[static_cast<std::size_t>(c_id)]);
    p.seeds.push_back(std::strtoull(row[static_cast<std::size_t>(c_seed)].c_str(), nullptr, 10));
  }
  for (auto& p : pd) {
    if (p.run_ids.empty()) throw Error(out_dir + "/runs.csv: no runs of point " + std::to_string(p.point->index));
    for (const auto& [m, heading] : report_metrics()) {
      const int c = runs.column(m);
      std::vector<double> xs;
      if (c >= 0)
        for (const auto& row : runs.rows)
          if (to_double(row[static_cast<std::size_t>(c_point)]) == p.point->index)
            xs.push_back(to_double(row[static_cast<std::size_t>(c)]));
      p.stats[m] = seed_stats(xs);
    }
  }

  const std::string plots_dir = out_dir + "/plots";
  if (options.plots) fs::create_directories(plots_dir);
  Plotter plot(plots_dir, options, res.warnings);
  const auto seeds = sc.run_seeds();
  const std::string first_seed = std::to_string(seeds.front());
  const std::string seeds_str = seed_text(seeds);
  std::vector<std::string> sections;  // markdown snippets for the plot section

  auto image = [&](const std::string& name, const std::string& caption) {
    sections.push_back("![" + caption + "](plots/" + name + ".png)\n\n" + caption + " ([SVG](plots/" + name + ".svg), [gnuplot script](plots/" + name + ".gp))\n");
  };

  // Time series: per point, mean over seeds and layers; first seed, layer 0 for shares and reputations.
  std::vector<Series> mean_ts(points.size()), first_ts(points.size());
  const std::size_t kPanelsPerPlot = per_image(points.size(), kMaxPanels);
  const std::size_t kLinesPerPlot = per_image(points.size(), kMaxLines);
  for (std::size_t i = 0; i < pd.size(); ++i) {
    std::vector<Series> all;
    std::vector<double> starved;
    for (const auto& id : pd[i].run_ids) {
      all.push_back(read_series(out_dir + "/runs/" + id + "/timeseries.csv"));
      starved.push_back(starved_experts(late_shares(all.back(), points[i].config)));
    }
    pd[i].stats["starved"] = seed_stats(starved);
    mean_ts[i] = mean_series(all);
    first_ts[i] = read_series(out_dir + "/runs/" + pd[i].run_ids.front() + "/timeseries.csv", 0);
  }

  if (plot.enabled()) {
    // 1. Load share per expert over time: one stacked-area panel per point.
    for (std::size_t chunk = 0; chunk * kPanelsPerPlot < points.size(); ++chunk) {
      const std::size_t lo = chunk * kPanelsPerPlot, hi = std::min(points.size(), lo + kPanelsPerPlot);
      int rows = 0, cols = 0;
      layout(hi - lo, rows, cols);
      std::ostringstream body;
      body << "set multiplot layout " << rows << "," << cols << " title "
           << gq("Load share per expert over time (stacked; seed " + first_seed + ", layer 0)") << "\n"
           << "set yrange [0:1]\nset xrange [*:*] noextend\nset xlabel 'step'\nset ylabel 'share of served slots'\n"
           << "set palette defined (0 '#440154', 0.25 '#3b528b', 0.5 '#21918c', 0.75 '#5ec962', 1 '#fde725')\n"
           << "unset colorbox\nset style fill solid 0.95 noborder\n";
      for (std::size_t i = lo; i < hi; ++i) {
        const Series& s = first_ts[i];
        std::vector<int> share_cols;
        for (int e = 0;; ++e) {
          const int c = s.column("share_" + std::to_string(e));
          if (c < 0) break;
          share_cols.push_back(c);
        }
        const std::size_t E = share_cols.size();
        std::ostringstream d;
        d << "# step, then the cumulative share of experts 0..e (first column 0)\n";
        for (std::size_t r = 0; r < s.step.size(); ++r) {
          d << format_number(s.step[r]) << " 0";
          double cum = 0;
          for (int c : share_cols) d << " " << format_number(cum += s.values[static_cast<std::size_t>(c)][r]);
          d << "\n";
        }
        const std::string file = "shares_p" + std::to_string(points[i].index) + ".dat";
        plot.data(file, d.str());
        // Neighbouring bands get far-apart colours: expert e at palette position (e * 7 mod E) / E.
        body << "set title " << gq(points[i].label) << "\nplot for [e=1:" << E << "] 'data/" << file
             << "' using 1:(column(e+1)):(column(e+2)) with filledcurves fillcolor palette frac (((e-1)*7)%" << E
             << ")/" << std::max<std::size_t>(E, 2) - 1 << ".0 notitle\n";
      }
      body << "unset multiplot\n";
      const std::string name = "load_shares" + (points.size() > kPanelsPerPlot ? "_" + std::to_string(chunk + 1) : "");
      if (plot.plot(name, 420 * cols, 300 * rows + 40, body.str()))
        image(name, "Load share of each expert over time, one panel per point (stacked areas; seed " + first_seed +
                        ", layer 0; colours are experts)");
    }

    // 2. Gini and MaxVio (and load CV) over time, one line per point, mean over seeds and layers.
    std::ostringstream d;
    d << "# one block per point (gnuplot index = point): step gini maxvio load_cv entropy dead mean_perf drop_rate\n";
    const char* ts_cols[] = {"gini", "maxvio", "load_cv", "entropy", "dead", "mean_perf", "drop_rate"};
    for (std::size_t i = 0; i < points.size(); ++i) {
      d << "# point " << points[i].index << ": " << points[i].label << "\n";
      const Series& s = mean_ts[i];
      for (std::size_t r = 0; r < s.step.size(); ++r) {
        d << format_number(s.step[r]);
        for (const char* c : ts_cols) {
          const int k = s.column(c);
          d << " " << format_number(k >= 0 ? s.values[static_cast<std::size_t>(k)][r] : kNaN);
        }
        d << "\n";
      }
      d << "\n\n";
    }
    plot.data("timeseries_mean.dat", d.str());
    struct Line {
      const char* name;
      int col;
      const char* title;
      const char* ylabel;
      const char* caption;
    };
    const Line lines[] = {
        {"gini", 2, "Gini of the per-batch expert load", "Gini (0 = even, 1 = one expert)",
         "Gini coefficient of each batch's expert load over time, one line per point"},
        {"maxvio", 3, "MaxVio of the per-batch expert load", "MaxVio = (max load - mean) / mean",
         "MaxVio of each batch over time, one line per point"},
        {"load_cv", 4, "Coefficient of variation of the per-batch expert load", "load CV",
         "Load CV of each batch over time, one line per point"},
    };
    for (const auto& L : lines)
      for (std::size_t chunk = 0; chunk * kLinesPerPlot < points.size(); ++chunk) {
        const std::size_t lo = chunk * kLinesPerPlot, hi = std::min(points.size(), lo + kLinesPerPlot);
        std::ostringstream body;
        body << "set title " << gq(std::string(L.title) + " (mean over seeds " + seeds_str + " and layers)")
             << "\nset xlabel 'step'\nset ylabel " << gq(L.ylabel)
             << "\nset key outside right top\nset grid\nset xrange [*:*] noextend\nplot ";
        for (std::size_t i = lo; i < hi; ++i)
          body << (i > lo ? ", \\\n  " : "") << "'data/timeseries_mean.dat' index " << i << " using 1:" << L.col
               << " with lines " << line_style(i) << " title " << gq(points[i].label);
        body << "\n";
        const std::string name = std::string(L.name) + (points.size() > kLinesPerPlot ? "_" + std::to_string(chunk + 1) : "");
        if (plot.plot(name, 1100, 520, body.str())) image(name, std::string(L.caption) + " (mean over seeds and layers)");
      }

    // 3. Reputation trajectories (RD-ESI and any policy with a reputation state).
    std::vector<std::size_t> rep_points;
    for (std::size_t i = 0; i < points.size(); ++i)
      if (first_ts[i].column("rep_0") >= 0) rep_points.push_back(i);
    const std::size_t kRepPanelsPerPlot = per_image(rep_points.size(), kMaxRepPanels);
    for (std::size_t chunk = 0; chunk * kRepPanelsPerPlot < rep_points.size(); ++chunk) {
      const std::size_t lo = chunk * kRepPanelsPerPlot, hi = std::min(rep_points.size(), lo + kRepPanelsPerPlot);
      int rows = 0, cols = 0;
      layout(hi - lo, rows, cols);
      std::ostringstream body;
      body << "set multiplot layout " << rows << "," << cols << " title "
           << gq("Reputation R_i of each expert over time (seed " + first_seed + ", layer 0)") << "\n"
           << "set xlabel 'step'\nset ylabel 'reputation R_i'\nset grid\nset xrange [*:*] noextend\n"
           << "set palette defined (0 '#440154', 0.25 '#3b528b', 0.5 '#21918c', 0.75 '#5ec962', 1 '#fde725')\n"
           << "unset colorbox\n";
      for (std::size_t j = lo; j < hi; ++j) {
        const std::size_t i = rep_points[j];
        const Series& s = first_ts[i];
        std::vector<int> rc;
        for (int e = 0;; ++e) {
          const int c = s.column("rep_" + std::to_string(e));
          if (c < 0) break;
          rc.push_back(c);
        }
        std::ostringstream dd;
        dd << "# step rep_0 .. rep_" << rc.size() - 1 << "\n";
        for (std::size_t r = 0; r < s.step.size(); ++r) {
          dd << format_number(s.step[r]);
          for (int c : rc) dd << " " << format_number(s.values[static_cast<std::size_t>(c)][r]);
          dd << "\n";
        }
        const std::string file = "reputation_p" + std::to_string(points[i].index) + ".dat";
        plot.data(file, dd.str());
        body << "set title " << gq(points[i].label) << "\nplot for [e=1:" << rc.size() << "] 'data/" << file
             << "' using 1:(column(e+1)) with lines lw 1.5 lc palette frac (e-1)/" << std::max<std::size_t>(rc.size(), 2) - 1
             << ".0 notitle\n";
      }
      body << "unset multiplot\n";
      const std::string name = "reputation" + (rep_points.size() > kRepPanelsPerPlot ? "_" + std::to_string(chunk + 1) : "");
      if (plot.plot(name, 460 * cols, 320 * rows + 40, body.str()))
        image(name, "Reputation trajectories of every expert, one panel per point with a reputation (seed " +
                        first_seed + ", layer 0; colours are experts)");
    }

    // 4. Heatmaps for every grid with two numeric key axes (x = first, y = second; one image per
    //    combination of the grid's other axes).
    for (std::size_t g = 0; g < sc.grids.size(); ++g) {
      const auto& grid = sc.grids[g];
      std::vector<std::size_t> numeric;
      for (std::size_t a = 0; a < grid.size(); ++a) {
        if (grid[a].section) continue;
        bool all = true;
        for (const auto& it : grid[a].items) {
          double x = 0;
          all = all && parse_real(it.label, x);
        }
        if (all && grid[a].items.size() >= 2) numeric.push_back(a);
      }
      if (numeric.size() < 2) continue;
      const std::size_t ax = numeric[0], ay = numeric[1];
      // Group the grid's points by the items of the other axes.
      std::map<std::string, std::vector<std::size_t>> groups;
      std::vector<std::string> group_order;
      for (std::size_t i = 0; i < points.size(); ++i) {
        if (points[i].grid != static_cast<int>(g)) continue;
        std::string key;
        for (std::size_t a = 0; a < grid.size(); ++a)
          if (a != ax && a != ay)
            key += (key.empty() ? "" : " ") +
                   (grid[a].section ? points[i].items[a]->label : grid[a].key + "=" + points[i].items[a]->label);
        if (!groups.count(key)) group_order.push_back(key);
        groups[key].push_back(i);
      }
      const char* hm_metrics[][2] = {{"late_gini", "Gini (late window)"},
                                     {"maxvio_batch", "MaxVio (mean per batch)"},
                                     {"rgr_slope", "rich-get-richer slope"},
                                     {"mean_perf", "mean performance"}};
      for (std::size_t gi = 0; gi < group_order.size(); ++gi) {
        const auto& members = groups[group_order[gi]];
        std::ostringstream dd;
        dd << "# x_index y_index then mean over seeds of: late_gini maxvio_batch rgr_slope mean_perf\n";
        for (std::size_t yi = 0; yi < grid[ay].items.size(); ++yi) {
          for (std::size_t xi = 0; xi < grid[ax].items.size(); ++xi) {
            dd << xi << " " << yi;
            const PointData* hit = nullptr;
            for (auto i : members)
              if (points[i].items[ax] == &grid[ax].items[xi] && points[i].items[ay] == &grid[ay].items[yi]) hit = &pd[i];
            for (const auto& m : hm_metrics) dd << " " << format_number(hit ? hit->stats.at(m[0]).mean : kNaN);
            dd << "\n";
          }
          dd << "\n";
        }
        const std::string file = "heatmap_g" + std::to_string(g) + "_" + std::to_string(gi + 1) + ".dat";
        plot.data(file, dd.str());
        auto tics = [&](const SweepAxis& axis) {
          std::string t = "(";
          for (std::size_t k = 0; k < axis.items.size(); ++k)
            t += (k ? ", " : "") + gq(axis.items[k].label) + " " + std::to_string(k);
          return t + ")";
        };
        std::ostringstream body;
        const std::string what = group_order[gi].empty() ? "" : " [" + group_order[gi] + "]";
        body << "set multiplot layout 2,2 title " << gq("Sweep " + grid[ax].key + " x " + grid[ay].key + what +
                                                        ", mean over seeds " + seeds_str)
             << "\nset xtics " << tics(grid[ax]) << "\nset ytics " << tics(grid[ay]) << "\nset xlabel "
             << gq(grid[ax].key) << "\nset ylabel " << gq(grid[ay].key)
             << "\nset xrange [-0.5:" << grid[ax].items.size() - 0.5 << "]\nset yrange [-0.5:"
             << grid[ay].items.size() - 0.5
             << "]\nset palette defined (0 '#ffffd9', 0.35 '#c7e9b4', 0.65 '#41b6c4', 1 '#2c7fb8')\nset tics out\n";
        for (std::size_t m = 0; m < 4; ++m)
          body << "set title " << gq(std::string(hm_metrics[m][1]) + " (" + hm_metrics[m][0] + ")")
               << "\nplot 'data/" << file << "' using 1:2:" << m + 3 << " with image notitle, '' using 1:2:(sprintf('%.3g', $"
               << m + 3 << ")) with labels tc rgb 'black' font ',9' notitle\n";
        body << "unset multiplot\n";
        const std::string name = "heatmap_g" + std::to_string(g) + (group_order.size() > 1 ? "_" + std::to_string(gi + 1) : "");
        if (plot.plot(name, 1100, 850, body.str()))
          image(name, "Heatmaps over " + grid[ax].key + " x " + grid[ay].key + md_escape(what) +
                          ": late Gini, MaxVio per batch, rich-get-richer slope, mean performance (mean over seeds)");
      }
    }

    // 5. Final metrics per point: bars = mean over seeds, error bars = min..max over seeds.
    {
      const bool names = points.size() <= 16;
      std::ostringstream dd;
      dd << "# index<TAB>label, then per metric: mean min max over seeds";
      for (const auto& [m, h] : report_metrics()) dd << "\t" << m;
      dd << "\n";
      for (std::size_t i = 0; i < points.size(); ++i) {
        std::string label = names ? points[i].label : "#" + std::to_string(points[i].index);
        std::replace(label.begin(), label.end(), '\t', ' ');
        dd << i << "\t" << label;
        for (const auto& [m, h] : report_metrics()) {
          const auto& s = pd[i].stats.at(m);
          dd << "\t" << format_number(s.mean) << "\t" << format_number(s.min) << "\t" << format_number(s.max);
        }
        dd << "\n";
      }
      plot.data("final_metrics.dat", dd.str());
      std::ostringstream body;
      const std::size_t nm = report_metrics().size();
      int rows = 0, cols = 0;
      layout(nm, rows, cols);
      body << "set datafile separator '\\t'\nset multiplot layout " << rows << "," << cols << " title "
           << gq("Final metrics per point: bar = mean over seeds " + seeds_str + ", error bar = min..max") << "\n"
           << "set style fill solid 0.6 border -1\nset boxwidth 0.7\nset grid ytics\nset xrange [-0.6:"
           << points.size() - 0.4 << "]\nset xtics rotate by 45 right font ',8'\nset bmargin " << (names ? 9 : 3)
           << "\n";
      std::size_t k = 0;
      for (const auto& [m, h] : report_metrics()) {
        const std::size_t c = 3 + 3 * k++;
        body << "set title " << gq(h + " (" + m + ")") << "\nplot 'data/final_metrics.dat' using 1:" << c
             << ":xtic(2) with boxes lc rgb '#3b6ea8' notitle, '' using 1:" << c << ":" << c + 1 << ":" << c + 2
             << " with yerrorbars lc rgb 'black' pt 0 notitle\n";
      }
      body << "unset multiplot\n";
      if (plot.plot("final_metrics", 480 * cols, (names ? 380 : 300) * rows + 40, body.str()))
        image("final_metrics", "Final metrics per point with their spread over seeds (bar: mean; error bar: min to max)");
    }
  }
  res.plots = plot.count();

  // report.md
  const auto& base = sc.base;
  std::ostringstream md;
  md << "# Report: " << md_escape(sc.name) << "\n\n";
  if (!sc.description.empty()) md << md_escape(sc.description) << "\n\n";
  // The report sits next to scenario.resolved.yaml; an absolute path would go stale when the folder moves.
  md << "Scenario [scenario.resolved.yaml](scenario.resolved.yaml): " << points.size() << " point" << (points.size() == 1 ? "" : "s") << " x "
     << seeds.size() << " seed" << (seeds.size() == 1 ? "" : "s") << " (" << seeds_str << ") = " << runs.rows.size()
     << " runs. Base config: E = " << base.experts << " experts, k = " << base.k << ", T = " << base.batch
     << " tokens per batch, " << base.steps << " steps, " << base.layers << " layer" << (base.layers == 1 ? "" : "s")
     << ", " << base.stream.clusters << " clusters; skill growth " << format_real(base.world.skill_growth)
     << ", idle decay " << format_real(base.world.idle_decay) << ", gate lr " << format_real(base.gate.lr)
     << ". Files: [runs.csv](runs.csv) (one row per run, every final metric), [summary.json](summary.json), "
        "[scenario.resolved.yaml](scenario.resolved.yaml), `runs/<run_id>/timeseries.csv`.\n\n";

  md << "## Key final metrics (mean ± std over seeds)\n\n| # | point | policy |";
  for (const auto& [m, h] : report_metrics()) md << " " << h << " |";
  md << "\n|---:|---|---|";
  for (std::size_t i = 0; i < report_metrics().size(); ++i) md << "---:|";
  md << "\n";
  for (const auto& p : pd) {
    md << "| " << p.point->index << " | " << md_escape(p.point->label) << " | " << md_escape(p.point->config.policy.name)
       << " |";
    for (const auto& [m, h] : report_metrics()) {
      const auto& s = p.stats.at(m);
      md << " " << mean_std(m == "drop_rate" ? 100 * s.mean : s.mean, m == "drop_rate" ? 100 * s.std : s.std, s.n)
         << " |";
    }
    md << "\n";
  }
  md << "\nColumns (see `sim/metrics.hpp` for exact definitions): **Gini (late)**, **load CV (late)**: of each "
        "expert's load summed over the late window (the last `metrics.window` steps); **MaxVio batch**: "
        "(max load − mean load) / mean load per batch, averaged over the run; **MaxVio global**: the same on the "
        "load summed over the run; **dead experts**: experts with no load over the last `metrics.dead_window` "
        "steps; **starved experts**: experts whose mean load share over the late window is below a tenth of "
        "the fair share 1/E (computed by the report from the time series); **drop %**: percentage of requested token-expert slots refused by capacity; **spec. MI**: mutual "
        "information (bits) between a token's cluster and its expert; **RGR slope**: rich-get-richer slope, "
        "late load share regressed on early share minus 1 (> 0: the rich get richer, −1: shares equalise); "
        "**mean perf**: mean performance of the served slots.\n\n";

  // Highlights: best and worst point on the headline metrics.
  if (points.size() > 1) {
    md << "### Highlights\n\n";
    const std::pair<const char*, bool> hl[] = {{"late_gini", true},  {"maxvio_batch", true}, {"starved", true},
                                               {"drop_rate", true},  {"rgr_slope", true},    {"mean_perf", false}};
    for (const auto& [m, lower_better] : hl) {
      const PointData *best = nullptr, *worst = nullptr;
      for (const auto& p : pd) {
        const double v = p.stats.at(m).mean;
        if (std::isnan(v)) continue;
        auto better = [&](double a, double b) { return lower_better ? a < b : a > b; };
        if (!best || better(v, best->stats.at(m).mean)) best = &p;
        if (!worst || better(worst->stats.at(m).mean, v)) worst = &p;
      }
      if (!best || best->stats.at(m).mean == worst->stats.at(m).mean) continue;
      std::string heading = m;
      for (const auto& [k, h] : report_metrics())
        if (k == m) heading = h;
      const double scale = std::string(m) == "drop_rate" ? 100.0 : 1.0;
      md << "- " << heading << ": best **" << md_escape(best->point->label) << "** ("
         << fmt(scale * best->stats.at(m).mean) << "), worst **" << md_escape(worst->point->label) << "** ("
         << fmt(scale * worst->stats.at(m).mean) << ")\n";
    }
    md << "\n";
  }

  md << "## Plots\n\n";
  if (sections.empty())
    md << "No plots" << (options.plots ? " (see the warnings of `moesim report`)" : " (--no-plots)") << ".\n\n";
  for (const auto& s : sections) md << s << "\n";

  md << "## Replay\n\nEach point's first run, exactly (any listed seed works in `seed=`):\n\n";
  for (const auto& p : points)
    md << "- " << md_escape(p.label) << ": `" << replay_command(sc, p, seeds.front(), "moesim", "") << "`\n";
  if (!res.warnings.empty()) {
    md << "\n## Warnings\n\n";
    for (const auto& w : res.warnings) md << "- " << md_escape(w) << "\n";
  }
  res.markdown = out_dir + "/report.md";
  write_file_atomic(res.markdown, md.str());
  return res;
}

namespace {

double num(const std::string& s) {
  double v = std::numeric_limits<double>::quiet_NaN();
  parse_real(s, v);
  return v;
}

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
    const double v = num(t.rows[i][static_cast<std::size_t>(c)]);
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
  // One run folder, or a folder of run folders (compared side by side, by name).
  std::vector<std::pair<std::string, std::string>> runs;  // (name, folder)
  if (fs::exists(dir + "/train_log.csv")) {
    runs.emplace_back(fs::path(dir).filename().string(), dir);
  } else {
    for (const auto& e : fs::directory_iterator(dir))
      if (e.is_directory() && fs::exists(e.path() / "train_log.csv"))
        runs.emplace_back(e.path().filename().string(), e.path().string());
    std::sort(runs.begin(), runs.end());
  }
  if (runs.empty()) throw Error(dir + ": no train_log.csv here or in a sub-folder: not a training run folder");

  ReportResult res;
  Plotter plot(dir + "/plots", options, res.warnings);
  std::ostringstream md;
  md << "# Training report: " << md_escape(fs::path(dir).filename().string()) << "\n\n"
     << "Runs: " << runs.size() << " (" << md_escape(dir) << "/<run>/train_log.csv, eval_log.csv). "
     << "Load columns are per MoE layer; MaxVio, Gini and drop rate are means over the last 100 logged steps.\n\n"
     << "| run | steps | tokens | final val ppl | train CE (last 100) | MaxVio per layer | Gini per layer | drop rate per layer |\n"
     << "|---|---:|---:|---:|---:|---|---|---|\n";
  std::ostringstream loss_plot, val_plot;
  std::vector<std::string> load_panels;
  int max_layers = 1;
  for (std::size_t r = 0; r < runs.size(); ++r) {
    const auto& [name, folder] = runs[r];
    const CsvTable t = read_csv(folder + "/train_log.csv");
    const int c_step = t.column("step"), c_tok = t.column("tokens"), c_ce = t.column("ce");
    if (c_step < 0 || c_ce < 0) throw Error(folder + "/train_log.csv: missing step/ce columns");
    int experts = 0;
    const auto layers = moe_layers_of(t, experts);
    max_layers = std::max<int>(max_layers, static_cast<int>(layers.size()));
    std::string val = "–";
    std::ostringstream vd;
    if (fs::exists(folder + "/eval_log.csv")) {
      const CsvTable ev = read_csv(folder + "/eval_log.csv");
      const int c_vs = ev.column("step"), c_vp = ev.column("val_ppl");
      if (c_vs >= 0 && c_vp >= 0 && !ev.rows.empty()) {
        val = fmt_num(num(ev.rows.back()[static_cast<std::size_t>(c_vp)]), "%.1f");
        for (const auto& row : ev.rows) vd << row[static_cast<std::size_t>(c_vs)] << ' ' << row[static_cast<std::size_t>(c_vp)] << '\n';
      }
    }
    std::string mv, gi, dr;
    for (int l : layers) {
      // Built by appends: "L" + to_string(l) trips GCC 12's false -Wrestrict (PR105651).
      std::string L = "L";
      L += std::to_string(l);
      L += '_';
      auto add = [](std::string& cell, const std::string& v) {
        if (!cell.empty()) cell += " / ";
        cell += v;
      };
      add(mv, fmt_num(tail_mean(t, t.column(L + "maxvio"), 100), "%.2f"));
      add(gi, fmt_num(tail_mean(t, t.column(L + "gini"), 100), "%.3f"));
      add(dr, fmt_num(100.0 * tail_mean(t, t.column(L + "drop"), 100), "%.2f%%"));
    }
    const auto& last = t.rows.back();
    md << "| " << md_escape(name) << " | " << last[static_cast<std::size_t>(c_step)] << " | "
       << (c_tok >= 0 ? last[static_cast<std::size_t>(c_tok)] : "–") << " | " << val << " | "
       << fmt_num(tail_mean(t, c_ce, 100)) << " | " << mv << " | " << gi << " | " << dr << " |\n";

    std::ostringstream d;
    for (const auto& row : t.rows) d << row[static_cast<std::size_t>(c_step)] << ' ' << row[static_cast<std::size_t>(c_ce)] << '\n';
    plot.data("ce_" + name + ".dat", d.str());
    loss_plot << (r ? ", " : "plot ") << "'data/ce_" << name << ".dat' using 1:2 with lines lw 1.5 title " << gq(name);
    if (!vd.str().empty()) {
      plot.data("val_" + name + ".dat", vd.str());
      val_plot << (val_plot.str().empty() ? "plot " : ", ") << "'data/val_" << name
               << ".dat' using 1:2 with linespoints lw 1.5 pt 7 title " << gq(name);
    }
    // Load share per expert over training, one panel per (run, layer): stacked areas.
    for (int l : layers) {
      std::string L = "L";
      L += std::to_string(l);
      L += "_load";
      std::vector<int> cols;
      for (int e = 0; e < experts; ++e) cols.push_back(t.column(L + std::to_string(e)));
      std::ostringstream ld;
      for (const auto& row : t.rows) {
        double total = 0;
        for (int c : cols) total += c >= 0 ? num(row[static_cast<std::size_t>(c)]) : 0.0;
        ld << row[static_cast<std::size_t>(c_step)];
        double cum = 0;
        for (int c : cols) {
          cum += total > 0 && c >= 0 ? num(row[static_cast<std::size_t>(c)]) / total : 0.0;
          ld << ' ' << cum;
        }
        ld << '\n';
      }
      const std::string file = "load_" + name + "_L" + std::to_string(l) + ".dat";
      plot.data(file, ld.str());
      std::ostringstream panel;
      panel << "set title " << gq(name + ", MoE layer " + std::to_string(l)) << "\nset xlabel 'step'\n"
            << "set ylabel 'share of served slots'\nset yrange [0:1]\nunset key\nplot ";
      for (int e = experts - 1; e >= 0; --e)
        panel << (e == experts - 1 ? "" : ", ") << "'data/" << file << "' using 1:" << (e + 2)
              << " with filledcurves x1 lc palette frac " << (experts > 1 ? static_cast<double>(e) / (experts - 1) : 0.0);
      load_panels.push_back(panel.str());
    }
  }
  md << "\n";
  auto image = [&](const std::string& name, const std::string& caption) {
    md << "![" << caption << "](plots/" << name << ".png)\n\n" << caption << " ([SVG](plots/" << name << ".svg))\n\n";
  };
  if (plot.plot("train_loss", 900, 450,
                "set title 'Training cross-entropy'\nset xlabel 'step'\nset ylabel 'cross-entropy (nats)'\n"
                "set grid\nset key top right\n" + loss_plot.str()))
    image("train_loss", "Training cross-entropy per logged step, one line per run");
  if (!val_plot.str().empty() &&
      plot.plot("val_ppl", 900, 450,
                "set title 'Validation perplexity'\nset xlabel 'step'\nset ylabel 'perplexity'\nset logscale y\n"
                "set grid\nset key top right\n" + val_plot.str()))
    image("val_ppl", "Validation perplexity at each evaluation, one line per run");
  if (!load_panels.empty()) {
    const int cols = max_layers, rows = static_cast<int>((load_panels.size() + cols - 1) / cols);
    std::ostringstream body;
    body << "set palette defined (0 '#440154', 0.5 '#21918c', 1 '#fde725')\nunset colorbox\n"
         << "set multiplot layout " << rows << "," << cols << " title 'Load share per expert over training (stacked)'\n";
    for (const auto& p : load_panels) body << p << "\n";
    body << "unset multiplot\n";
    if (plot.plot("train_load_shares", 520 * cols, 320 * rows + 40, body.str()))
      image("train_load_shares", "Load share of each expert over training, one panel per run and MoE layer");
  }
  res.plots = plot.count();
  res.markdown = dir + "/report.md";
  write_file_atomic(res.markdown, md.str());
  return res;
}

}  // namespace moesim
