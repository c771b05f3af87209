#pragma once
// The small text rules of moesim's Markdown reports.
#include <string>

namespace moesim {

// Escapes Markdown's table and emphasis characters; line breaks and tabs become
// spaces, so a label cannot break a table row.
std::string md_escape(const std::string& s);
// A number for a table: 3 decimals in [0.001, 10000), else 3 significant digits; NaN as n/a.
std::string fmt_value(double v);
// "mean ± std" with one precision for both (n > 1), so the spread reads against the mean.
std::string mean_std(double mean, double std, int n);

}  // namespace moesim
