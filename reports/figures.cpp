#include "reports/figures.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <sstream>

#include "common/text.hpp"
#include "reports/markdown.hpp"
#include "metrics/load_metrics.hpp"

namespace moesim {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::size_t kMaxLines = 16;      // more lines than this are unreadable in one legend
constexpr std::size_t kMaxPanels = 16;     // load-share panels per image
constexpr std::size_t kMaxRepPanels = 6;

std::string seed_text(const std::vector<std::uint64_t>& seeds) {
  std::string s;
  for (auto x : seeds) s += (s.empty() ? "" : ", ") + std::to_string(x);
  return s;
}

std::string chunk_name(const std::string& base, std::size_t chunk, bool split) {
  return split ? base + "_" + std::to_string(chunk + 1) : base;
}

// The columns prefix_0, prefix_1, ... of a series, in order.
std::vector<int> numbered_columns(const Series& s, const std::string& prefix) {
  std::vector<int> cols;
  for (int e = 0;; ++e) {
    const int c = s.column(prefix + std::to_string(e));
    if (c < 0) break;
    cols.push_back(c);
  }
  return cols;
}

const char* const kPalette =
    "set palette defined (0 '#440154', 0.25 '#3b528b', 0.5 '#21918c', 0.75 '#5ec962', 1 '#fde725')\nunset colorbox\n";

}  // namespace

void Figures::image(const std::string& name, const std::string& caption) {
  sections.push_back("![" + caption + "](plots/" + name + ".png)\n\n" + caption + " ([SVG](plots/" + name +
                     ".svg), [gnuplot script](plots/" + name + ".gp))\n");
}

void Figures::panel_images(const std::vector<std::size_t>& items, std::size_t most, const PanelImage& spec,
                           const std::function<std::string(std::size_t)>& panel) {
  const std::size_t per = per_image(items.size(), most);
  for (std::size_t chunk = 0; chunk * per < items.size(); ++chunk) {
    const std::size_t lo = chunk * per, hi = std::min(items.size(), lo + per);
    int rows = 0, cols = 0;
    panel_layout(hi - lo, rows, cols);
    std::ostringstream body;
    body << "set multiplot layout " << rows << "," << cols << " title " << gq(spec.title) << "\n" << spec.preamble;
    for (std::size_t j = lo; j < hi; ++j) body << panel(items[j]);
    body << "unset multiplot\n";
    const std::string name = chunk_name(spec.name, chunk, items.size() > per);
    if (plot.plot(name, spec.width * cols, spec.height * rows + 40, body.str())) image(name, spec.caption);
  }
}

// Step, then one column per value of `cols` (cumulative sums when stacked).
static std::string series_table(const Series& s, const std::vector<int>& cols, bool stacked, const std::string& comment) {
  std::ostringstream d;
  d << "# " << comment << "\n";
  for (std::size_t r = 0; r < s.step.size(); ++r) {
    d << format_number(s.step[r]) << (stacked ? " 0" : "");
    double cum = 0;
    for (int c : cols) {
      const double v = s.values[static_cast<std::size_t>(c)][r];
      d << " " << format_number(stacked ? (cum += v) : v);
    }
    d << "\n";
  }
  return d.str();
}

void Figures::load_shares() {
  const auto& points = sweep.points;
  const std::string seed = std::to_string(sweep.seeds.front());
  std::vector<std::size_t> all(points.size());
  for (std::size_t i = 0; i < all.size(); ++i) all[i] = i;
  const PanelImage spec{"load_shares", "Load share per expert over time (stacked; seed " + seed + ", layer 0)",
                        "set yrange [0:1]\nset xrange [*:*] noextend\nset xlabel 'step'\nset ylabel 'share of served "
                        "slots'\n" + std::string(kPalette) + "set style fill solid 0.95 noborder\n",
                        "Load share of each expert over time, one panel per point (stacked areas; seed " + seed +
                            ", layer 0; colours are experts)",
                        420, 300};
  panel_images(all, kMaxPanels, spec, [&](std::size_t i) {
    const auto cols = numbered_columns(first_ts[i], "share_");
    const std::size_t E = cols.size();
    const std::string file = "shares_p" + std::to_string(points[i].index) + ".dat";
    plot.data(file, series_table(first_ts[i], cols, true, "step, then the cumulative share of experts 0..e (first column 0)"));
    // Neighbouring bands get far-apart colours: expert e at palette position (e * 7 mod E) / E.
    std::ostringstream p;
    p << "set title " << gq(points[i].label) << "\nplot for [e=1:" << E << "] " << data_file(file)
      << " using 1:(column(e+1)):(column(e+2)) with filledcurves fillcolor palette frac (((e-1)*7)%" << E << ")/"
      << std::max<std::size_t>(E, 2) - 1 << ".0 notitle\n";
    return p.str();
  });
}

void Figures::timeseries() {
  const auto& points = sweep.points;
  std::ostringstream d;
  d << "# one block per point (gnuplot index = point): step gini maxvio load_cv entropy dead mean_perf drop_rate\n";
  const char* ts_cols[] = {"gini", "maxvio", "load_cv", "entropy", "dead", "mean_perf", "drop_rate"};
  for (std::size_t i = 0; i < points.size(); ++i) {
    d << "# point " << points[i].index << ": " << md_escape(points[i].label) << "\n";
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
  const std::size_t per = per_image(points.size(), kMaxLines);
  for (const auto& L : lines)
    for (std::size_t chunk = 0; chunk * per < points.size(); ++chunk) {
      const std::size_t lo = chunk * per, hi = std::min(points.size(), lo + per);
      std::ostringstream body;
      body << "set title " << gq(std::string(L.title) + " (mean over seeds " + seed_text(sweep.seeds) + " and layers)")
           << "\nset xlabel 'step'\nset ylabel " << gq(L.ylabel)
           << "\nset key outside right top\nset grid\nset xrange [*:*] noextend\nplot ";
      for (std::size_t i = lo; i < hi; ++i)
        body << (i > lo ? ", \\\n  " : "") << data_file("timeseries_mean.dat") << " index " << i << " using 1:" << L.col
             << " with lines " << line_style(i) << " title " << gq(points[i].label);
      body << "\n";
      const std::string name = chunk_name(L.name, chunk, points.size() > per);
      if (plot.plot(name, 1100, 520, body.str())) image(name, std::string(L.caption) + " (mean over seeds and layers)");
    }
}

void Figures::reputation() {
  const auto& points = sweep.points;
  const std::string seed = std::to_string(sweep.seeds.front());
  std::vector<std::size_t> rep_points;
  for (std::size_t i = 0; i < points.size(); ++i)
    if (first_ts[i].column("rep_0") >= 0) rep_points.push_back(i);
  const PanelImage spec{"reputation", "Reputation R_i of each expert over time (seed " + seed + ", layer 0)",
                        "set xlabel 'step'\nset ylabel 'reputation R_i'\nset grid\nset xrange [*:*] noextend\n" +
                            std::string(kPalette),
                        "Reputation trajectories of every expert, one panel per point with a reputation (seed " + seed +
                            ", layer 0; colours are experts)",
                        460, 320};
  panel_images(rep_points, kMaxRepPanels, spec, [&](std::size_t i) {
    const auto cols = numbered_columns(first_ts[i], "rep_");
    const std::string file = "reputation_p" + std::to_string(points[i].index) + ".dat";
    plot.data(file, series_table(first_ts[i], cols, false, "step rep_0 .. rep_" + std::to_string(cols.size() - 1)));
    std::ostringstream p;
    p << "set title " << gq(points[i].label) << "\nplot for [e=1:" << cols.size() << "] " << data_file(file)
      << " using 1:(column(e+1)) with lines lw 1.5 lc palette frac (e-1)/" << std::max<std::size_t>(cols.size(), 2) - 1
      << ".0 notitle\n";
    return p.str();
  });
}

void Figures::heatmaps() {
  const auto& points = sweep.points;
  const char* hm_metrics[][2] = {{"late_gini", "Gini (late window)"},
                                 {"maxvio_batch", "MaxVio (mean per batch)"},
                                 {"rgr_slope", "rich-get-richer slope"},
                                 {"mean_perf", "mean performance"}};
  for (std::size_t g = 0; g < sweep.grids.size(); ++g) {
    const auto& axes = sweep.grids[g];
    // x = the first numeric key axis, y = the second; one image per combination of the others.
    std::vector<std::size_t> numeric;
    for (std::size_t a = 0; a < axes.size(); ++a) {
      if (axes[a].section || axes[a].labels.size() < 2) continue;
      bool all = true;
      for (const auto& l : axes[a].labels) {
        double x = 0;
        all = all && parse_real(l, x);
      }
      if (all) numeric.push_back(a);
    }
    if (numeric.size() < 2) continue;
    const std::size_t ax = numeric[0], ay = numeric[1];
    std::map<std::string, std::vector<std::size_t>> groups;
    std::vector<std::string> group_order;
    for (std::size_t i = 0; i < points.size(); ++i) {
      if (points[i].grid != static_cast<int>(g)) continue;
      std::string key;
      for (std::size_t a = 0; a < axes.size(); ++a)
        if (a != ax && a != ay) {
          const auto& l = axes[a].labels[static_cast<std::size_t>(points[i].items[a])];
          key += (key.empty() ? "" : " ") + (axes[a].section ? l : axes[a].key + "=" + l);
        }
      if (!groups.count(key)) group_order.push_back(key);
      groups[key].push_back(i);
    }
    for (std::size_t gi = 0; gi < group_order.size(); ++gi) {
      const auto& members = groups[group_order[gi]];
      std::ostringstream dd;
      dd << "# x_index y_index then mean over seeds of: late_gini maxvio_batch rgr_slope mean_perf\n";
      for (std::size_t yi = 0; yi < axes[ay].labels.size(); ++yi) {
        for (std::size_t xi = 0; xi < axes[ax].labels.size(); ++xi) {
          dd << xi << " " << yi;
          const PointInfo* hit = nullptr;
          for (auto i : members)
            if (points[i].items[ax] == static_cast<int>(xi) && points[i].items[ay] == static_cast<int>(yi)) hit = &points[i];
          for (const auto& m : hm_metrics) {
            double v = kNaN;
            if (hit) {
              const auto it = hit->stats.find(m[0]);
              if (it != hit->stats.end()) v = it->second.mean;
            }
            dd << " " << format_number(v);
          }
          dd << "\n";
        }
        dd << "\n";
      }
      const std::string file = "heatmap_g" + std::to_string(g) + "_" + std::to_string(gi + 1) + ".dat";
      plot.data(file, dd.str());
      auto tics = [](const AxisInfo& axis) {
        std::string t = "(";
        for (std::size_t k = 0; k < axis.labels.size(); ++k) t += (k ? ", " : "") + gq(axis.labels[k]) + " " + std::to_string(k);
        return t + ")";
      };
      std::ostringstream body;
      const std::string what = group_order[gi].empty() ? "" : " [" + group_order[gi] + "]";
      body << "set multiplot layout 2,2 title "
           << gq("Sweep " + axes[ax].key + " x " + axes[ay].key + what + ", mean over seeds " + seed_text(sweep.seeds))
           << "\nset xtics " << tics(axes[ax]) << "\nset ytics " << tics(axes[ay]) << "\nset xlabel " << gq(axes[ax].key)
           << "\nset ylabel " << gq(axes[ay].key) << "\nset xrange [-0.5:" << axes[ax].labels.size() - 0.5
           << "]\nset yrange [-0.5:" << axes[ay].labels.size() - 0.5
           << "]\nset palette defined (0 '#ffffd9', 0.35 '#c7e9b4', 0.65 '#41b6c4', 1 '#2c7fb8')\nset tics out\n";
      for (std::size_t m = 0; m < 4; ++m)
        body << "set title " << gq(std::string(hm_metrics[m][1]) + " (" + hm_metrics[m][0] + ")") << "\nplot "
             << data_file(file) << " using 1:2:" << m + 3 << " with image notitle, '' using 1:2:(sprintf('%.3g', $"
             << m + 3 << ")) with labels tc rgb 'black' font ',9' notitle\n";
      body << "unset multiplot\n";
      const std::string name = chunk_name("heatmap_g" + std::to_string(g), gi, group_order.size() > 1);
      if (plot.plot(name, 1100, 850, body.str()))
        image(name, "Heatmaps over " + axes[ax].key + " x " + axes[ay].key + md_escape(what) +
                        ": late Gini, MaxVio per batch, rich-get-richer slope, mean performance (mean over seeds)");
    }
  }
}

void Figures::final_metrics() {
  const auto& points = sweep.points;
  const auto metrics = headline_metrics();
  const bool names = points.size() <= 16;
  std::ostringstream dd;
  dd << "# index<TAB>label, then per metric: mean min max over seeds";
  for (const auto& m : metrics) dd << "\t" << m.name;
  dd << "\n";
  for (std::size_t i = 0; i < points.size(); ++i) {
    std::string label = points[i].label;
    if (!names) label = '#', label += std::to_string(points[i].index);
    std::replace_if(label.begin(), label.end(), [](char c) { return c == '\t' || c == '\n' || c == '\r'; }, ' ');
    dd << i << "\t" << label;
    for (const auto& m : metrics) {
      const auto it = points[i].stats.find(m.name);
      const SeedStats s = it != points[i].stats.end() ? it->second : SeedStats{kNaN, kNaN, kNaN, kNaN, 0};
      dd << "\t" << format_number(s.mean) << "\t" << format_number(s.min) << "\t" << format_number(s.max);
    }
    dd << "\n";
  }
  plot.data("final_metrics.dat", dd.str());
  std::ostringstream body;
  int rows = 0, cols = 0;
  panel_layout(metrics.size(), rows, cols);
  body << "set datafile separator '\\t'\nset multiplot layout " << rows << "," << cols << " title "
       << gq("Final metrics per point: bar = mean over seeds " + seed_text(sweep.seeds) + ", error bar = min..max") << "\n"
       << "set style fill solid 0.6 border -1\nset boxwidth 0.7\nset grid ytics\nset xrange [-0.6:" << points.size() - 0.4
       << "]\nset xtics rotate by 45 right font ',8'\nset bmargin " << (names ? 9 : 3) << "\n";
  for (std::size_t k = 0; k < metrics.size(); ++k) {
    const std::size_t c = 3 + 3 * k;
    body << "set title " << gq(std::string(metrics[k].heading) + " (" + metrics[k].name + ")") << "\nplot "
         << data_file("final_metrics.dat") << " using 1:" << c << ":xtic(2) with boxes lc rgb '#3b6ea8' notitle, '' using 1:"
         << c << ":" << c + 1 << ":" << c + 2 << " with yerrorbars lc rgb 'black' pt 0 notitle\n";
  }
  body << "unset multiplot\n";
  if (plot.plot("final_metrics", 480 * cols, (names ? 380 : 300) * rows + 40, body.str()))
    image("final_metrics", "Final metrics per point with their spread over seeds (bar: mean; error bar: min to max)");
}

}  // namespace moesim
