#pragma once
// SimConfig: everything one simulation run depends on, as a plain aggregate with
// defaults. The YAML scenario loader and command-line overrides address fields by
// key path through config_fields() / set_field(): a field's key is its path
// (world.skill_growth is WorldConfig::skill_growth). Each key's one-line help and
// range are written once, in the key table of sim/config.cpp, which
// `moesim run --keys` prints.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config/key_table.hpp"
#include "config/policy_config.hpp"
#include "metrics/load_metrics.hpp"
#include "policies/knobs.hpp"

namespace moesim {

// Token source: synthetic (sim/stream.hpp has the model) or a recorded stream
// replayed (sim/replay.hpp: kind = replay, trace, trace_tokens, layers,
// unserved_perf; the synthetic keys then do not apply).
struct StreamConfig {
  std::string kind = "synthetic";
  std::string trace;            // replay: a trace folder (manifest.json) or a logits .npy
  std::string trace_tokens;     // replay of a plain .npy: optional token-id .npy
  std::string layers = "all";   // replay: recorded layers, "all" or e.g. "1,3"
  std::string unserved_perf = "layer_mean";  // replay: perf of an expert the recording saw serve nothing
  int clusters = 8;
  int vocab = 1000;
  double zipf_s = 1.1;
  double mixture_zipf_s = 0.0;
  int dim = 32;
  double centroid_scale = 1.0;
  double token_scale = 1.0;
  double noise = 0.1;
  double drift = 0.0;
  double drift_revert = 0.0;
  double burst_prob = 0.0;
  int burst_len = 50;
  double burst_share = 0.5;
  double hot_fraction = 0.0;
  std::int64_t hot_token = 0;
};

// Latent expert skills (sim/world.hpp has the equations).
struct WorldConfig {
  double skill_init = 0.5;
  double skill_spread = 0.05;
  double skill_max = 1.0;
  double skill_floor = 0.0;
  double skill_growth = 0.05;
  double idle_decay = 0.001;
  std::string decay_scope = "pair";
  double perf_noise = 0.1;
  double perf_scale_spread = 0.0;
};

// The simulator's own linear gate (sim/gate.hpp has the update rule).
struct GateConfig {
  double init_scale = 1.0;
  double lr = 0.1;
  double l2 = 0.0;               // gate.l2: weight decay, W <- (1 - lr*l2) W each step
  double baseline_rate = 1.0;
  double noise = 0.0;
  double aux_loss = 0.0;
  double z_loss = 0.0;
  double jitter_eps = 0.0;
  bool force_balance = false;
  std::string router_dtype = "fp32";
};

struct SimConfig {
  std::uint64_t seed = 1;
  std::int64_t steps = 1000;
  int batch = 4096;
  int experts = 64;
  int k = 2;
  int layers = 1;
  std::int64_t log_every = 10;
  StreamConfig stream;
  WorldConfig world;
  GateConfig gate;
  PolicyConfig policy;
  MetricsConfig metrics;
};


// Every fixed key (policy.knobs.<name> is listed once as "policy.knobs.<knob>").
const std::vector<ConfigKey>& config_keys();

// (key path, value) for every field of cfg, in config_keys() order, followed by
// policy.knobs.<name> for each knob override. Reals print as the shortest text
// that reads back exactly, so set_field over this list rebuilds cfg exactly.
std::vector<std::pair<std::string, std::string>> config_fields(const SimConfig& cfg);

// Parses value into the field named by key. Throws Error naming the key on an
// unknown key, unparsable text or an out-of-range value. policy.knobs.<name>
// stores the text as is; the registry validates it when the policy is built.
void set_field(SimConfig& cfg, std::string_view key, std::string_view value);

// Cross-field checks (k <= experts, hot_token inside the vocabulary, the policy
// name and knobs, table sizes); throws Error naming the key. Simulator calls it.
void validate(const SimConfig& cfg);
// What a valid config will not measure, one line each (e.g. windows that overlap
// leave the early-vs-late metrics NaN); empty when everything is defined.
std::vector<std::string> config_warnings(const SimConfig& cfg);

}  // namespace moesim
