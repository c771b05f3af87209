#pragma once
// gnuplot as a program: each plot is a script NAME.gp with its data files under
// data/, kept next to NAME.png and NAME.svg so that any plot can be re-made or
// restyled by hand (`gnuplot NAME.gp` inside the plots folder). Images render to
// temporary names and are renamed into place; file names inside the scripts are
// quoted, so a run folder with a quote in its name cannot break a script.
#include <cstddef>
#include <string>
#include <vector>

namespace moesim {

class Plotter {
 public:
  // dir: the plots folder, created when plots are on (Error naming it when it cannot
  // be, e.g. a file of that name). Without gnuplot's PNG terminal nothing is drawn
  // and a warning says why.
  Plotter(std::string dir, bool enabled, std::string program, std::vector<std::string>& warnings);
  bool enabled() const { return enabled_; }
  int count() const { return count_; }
  // Writes plots/data/NAME (atomically).
  void data(const std::string& name, const std::string& content);
  // Renders NAME.png and NAME.svg from a script body; false (and a warning) when gnuplot fails.
  bool plot(const std::string& name, int width, int height, const std::string& body);

 private:
  std::string dir_, program_, png_;
  std::vector<std::string>& warnings_;
  bool enabled_;
  int count_ = 0;
};

// A gnuplot single-quoted string: '' stands for one quote.
std::string gq(const std::string& s);
// A data file of the plots folder as a quoted gnuplot file name: 'data/NAME'.
std::string data_file(const std::string& name);
// Rows and columns for n panels in one image.
void panel_layout(std::size_t n, int& rows, int& cols);
// Items per image when n items are split evenly into images of at most `most`.
std::size_t per_image(std::size_t n, std::size_t most);
// Line style of the i-th line of a plot: 8 colours, then dash patterns.
std::string line_style(std::size_t i);

}  // namespace moesim
