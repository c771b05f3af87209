#pragma once
// The figures of a sweep report, one function each. Each writes its data and
// gnuplot script through the Plotter and appends its Markdown (image and
// caption) to `sections` when it rendered.
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "reports/plotter.hpp"
#include "reports/sweep_data.hpp"

namespace moesim {

struct Figures {
  const SweepData& sweep;
  const std::vector<Series>& mean_ts;   // per point: mean over seeds and layers
  const std::vector<Series>& first_ts;  // per point: its first run, layer 0
  Plotter& plot;
  std::vector<std::string>& sections;

  // 1. Load share per expert over time: stacked areas, one panel per point.
  void load_shares();
  // 2. Gini, MaxVio and load CV over time, one line per point.
  void timeseries();
  // 3. Reputation trajectories of every expert (points whose policy has a reputation).
  void reputation();
  // 4. Heatmaps over every grid with two numeric key axes.
  void heatmaps();
  // 5. Headline final metrics per point: bar = mean over seeds, error bar = min..max.
  void final_metrics();

 private:
  // An image of panels: its name (NAME, or NAME_1, NAME_2 ... when split), the
  // multiplot title, the commands before the panels, the caption, the size of a panel.
  struct PanelImage {
    std::string name, title, preamble, caption;
    int width, height;
  };
  // One image per at most `most` items (split evenly); panel(item) writes its data and returns its commands.
  void panel_images(const std::vector<std::size_t>& items, std::size_t most, const PanelImage& spec,
                    const std::function<std::string(std::size_t)>& panel);
  void image(const std::string& name, const std::string& caption);
};

}  // namespace moesim
