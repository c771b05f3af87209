#pragma once
// SimConfig: everything one simulation run depends on, as a plain aggregate with
// defaults. The YAML scenario loader and command-line overrides address fields by
// key path ("world.skill_growth") through config_fields() / set_field(), so the
// key paths below are the scenario file's keys.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "config/key_table.hpp"
#include "config/policy_config.hpp"
#include "policies/knobs.hpp"

namespace moesim {

// Synthetic token source (sim/stream.hpp has the model).
struct StreamConfig {
  int clusters = 8;              // stream.clusters: topics; each has its own vocabulary and centroid
  int vocab = 1000;              // stream.vocab: token ids per cluster (global id = cluster*vocab + rank)
  double zipf_s = 1.1;           // stream.zipf_s: Zipf exponent of token frequencies inside a cluster (0 = uniform)
  double mixture_zipf_s = 0.0;   // stream.mixture_zipf_s: Zipf exponent of the base cluster mixture (0 = uniform)
  int dim = 32;                  // stream.dim: embedding dimension d (the gate input)
  double centroid_scale = 1.0;   // stream.centroid_scale: std of each centroid coordinate
  double token_scale = 1.0;      // stream.token_scale: std of each token's fixed offset from its centroid
  double noise = 0.1;            // stream.noise: std of fresh per-occurrence noise on every coordinate
  double drift = 0.0;            // stream.drift: std per step of the random walk of the mixture log-weights
  double drift_revert = 0.0;     // stream.drift_revert: pull of the log-weights back to the base mixture per step, in [0, 1]
  double burst_prob = 0.0;       // stream.burst_prob: chance per step (while no burst runs) that a burst starts
  int burst_len = 50;            // stream.burst_len: steps a burst lasts
  double burst_share = 0.5;      // stream.burst_share: share of tokens drawn from the burst cluster during a burst
  double hot_fraction = 0.0;     // stream.hot_fraction: share of tokens replaced by one repeated adversarial token
  std::int64_t hot_token = 0;    // stream.hot_token: global id of that token, in [0, clusters*vocab)
};

// Latent expert skills (sim/world.hpp has the equations).
struct WorldConfig {
  double skill_init = 0.5;       // world.skill_init: initial skill of every expert on every cluster
  double skill_spread = 0.05;    // world.skill_spread: initial skills get + spread*U(-1, 1), breaking symmetry
  double skill_max = 1.0;        // world.skill_max: ceiling learning by doing approaches
  double skill_floor = 0.0;      // world.skill_floor: level idle decay approaches
  double skill_growth = 0.05;    // world.skill_growth: eta, log-fraction of the gap to skill_max closed per step at fair-share load
  double idle_decay = 0.001;     // world.idle_decay: delta, fraction of the gap to skill_floor lost per idle step, in [0, 1]
  std::string decay_scope = "pair";  // world.decay_scope: "pair" (an expert forgets a cluster it did not serve) or "expert" (only fully idle experts forget)
  double perf_noise = 0.1;       // world.perf_noise: std of the Gaussian noise on each served slot's performance
};

// The simulator's own linear gate (sim/gate.hpp has the update rule).
struct GateConfig {
  double init_scale = 1.0;       // gate.init_scale: W entries ~ N(0, init_scale^2 / d), so logits have std ~ init_scale * |x| / sqrt(d)
  double lr = 0.1;               // gate.lr: learning rate of the online reward update (0 = frozen gate)
  double l2 = 0.0;               // gate.l2: weight decay, W <- (1 - lr*l2) W each step
  double baseline_rate = 1.0;    // gate.baseline_rate: EMA rate of the reward baseline, in (0, 1]; 1 = this batch's mean
  double noise = 0.0;            // gate.noise: std of Gaussian noise added to the logits the policy sees
  double aux_loss = 0.0;         // gate.aux_loss: coefficient of the Switch load-balancing loss the gate also descends (0 = off)
  double z_loss = 0.0;           // gate.z_loss: coefficient of the ST-MoE router z-loss the gate also descends (0 = off)
  double jitter_eps = 0.0;       // gate.jitter_eps: multiplicative input jitter x*U(1-eps, 1+eps) before the gate (Switch; Megatron-Core moe_input_jitter_eps)
  bool force_balance = false;    // gate.force_balance: the policy sees N(0,1) logits instead (Megatron-Core moe_router_force_load_balancing)
  std::string router_dtype = "fp32";  // gate.router_dtype: fp32, or bf16: the logits the policy sees rounded to bfloat16 (Megatron-Core routes in the model dtype)
};

struct MetricsConfig {
  std::int64_t window = 100;       // metrics.window: steps in the early window [0, w) and the late window [steps-w, steps)
  std::int64_t dead_window = 100;  // metrics.dead_window: an expert with zero load over this many trailing steps is dead
};

struct SimConfig {
  std::uint64_t seed = 1;        // seed: master seed; every random stream derives its own from it by name
  std::int64_t steps = 1000;     // steps: batches simulated
  int batch = 4096;              // batch: tokens T per batch
  int experts = 64;              // experts: E per layer
  int k = 2;                     // k: experts per token for token-choice policies
  int layers = 1;                // layers: independent MoE layers fed by the same token stream
  std::int64_t log_every = 10;   // log_every: time-series row every this many steps (and at the last step)
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
