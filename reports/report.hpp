#pragma once
// `moesim report OUTDIR`: plots and a Markdown summary of a sweep's (or a run's)
// output folder. Reads only the files the sweep wrote (summary.json, runs.csv,
// runs/<run_id>/timeseries.csv; sim/run_store.hpp), so a report can be re-made at
// any time; nothing is re-expanded from the scenario or re-computed.
//
// Writes OUTDIR/report.md and OUTDIR/plots/: for each plot NAME, NAME.png and
// NAME.svg, the gnuplot script NAME.gp and its data under plots/data/ (run
// `gnuplot NAME.gp` inside plots/ to re-make or restyle one).
#include <string>
#include <vector>

namespace moesim {

struct ReportOptions {
  bool plots = true;                // false: tables only, gnuplot not needed
  std::string gnuplot = "gnuplot";  // the program
};

struct ReportResult {
  std::string markdown;               // path of report.md
  int plots = 0;                      // images rendered (PNG + SVG pairs)
  std::vector<std::string> warnings;  // e.g. gnuplot missing: the tables are still written
};

ReportResult write_report(const std::string& out_dir, const ReportOptions& options = {});

// A training run folder (train_log.csv, eval_log.csv from `moesim train`), or a
// folder of them: loss and validation-perplexity curves, load share per expert
// over training per MoE layer, and a side-by-side table. Same files as above.
bool is_training_folder(const std::string& dir);
ReportResult write_training_report(const std::string& dir, const ReportOptions& options = {});

}  // namespace moesim
