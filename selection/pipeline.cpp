// `select run`: every stage in order, the finished ones skipped.
#include "selection/manifest.hpp"
#include "selection/stage_util.hpp"
#include "selection/stages.hpp"

namespace moesim::selection {

void run_pipeline(const SelectConfig& cfg, std::FILE* log) {
  validate(cfg);
  struct Stage {
    StagePlan (*plan)(const SelectConfig&);
    void (*run)(const SelectConfig&, std::FILE*);
  };
  const Stage stages[] = {{plan_mix, run_mix}, {plan_warmup, run_warmup}, {plan_score, run_score}, {plan_train, run_train}, {plan_eval, run_eval}};
  for (const auto& s : stages) {
    const auto p = s.plan(cfg);
    if (stage_current(p.dir, p.config, p.inputs)) {
      if (log) std::fprintf(log, "select run: %s: up to date (%s)\n", p.name.c_str(), manifest_path(p.dir).c_str());
      continue;
    }
    if (log) std::fprintf(log, "select run: %s\n", p.name.c_str());
    s.run(cfg, log);
  }
}

}  // namespace moesim::selection
