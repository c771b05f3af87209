#include "sim/config.hpp"

#include <cmath>
#include <functional>

#include "config/key_table.hpp"
#include "config/policy_config.hpp"
#include "policies/registry.hpp"
#include "policies/types.hpp"

namespace moesim {

namespace {

using Field = config::Field<SimConfig>;
using F = config::FieldsOf<SimConfig>;
using config::bad;

constexpr long kBig = 1L << 50;

const std::vector<Field>& fields() {
  static const std::vector<Field> all = [] {
    std::vector<Field> f;
    f.push_back(F::seed_field("seed", "master seed; every random stream derives its own from it by name",
                              [](SimConfig& c) -> std::uint64_t& { return c.seed; }));
    f.push_back(F::int_field<std::int64_t>("steps", "batches simulated",
                                        [](SimConfig& c) -> std::int64_t& { return c.steps; }, 1, kBig));
    f.push_back(F::int_field<int>("batch", "tokens T per batch", [](SimConfig& c) -> int& { return c.batch; }, 1,
                               1L << 24));
    f.push_back(F::int_field<int>("experts", "experts E per layer",
                               [](SimConfig& c) -> int& { return c.experts; }, 1, 1L << 16));
    f.push_back(F::int_field<int>("k", "experts per token (token-choice policies), in [1, experts]",
                               [](SimConfig& c) -> int& { return c.k; }, 1, 1L << 16));
    f.push_back(F::int_field<int>("layers", "independent MoE layers fed by the same token stream",
                               [](SimConfig& c) -> int& { return c.layers; }, 1, 1024));
    f.push_back(F::int_field<std::int64_t>("log_every", "time-series row every this many steps (and at the last)",
                                        [](SimConfig& c) -> std::int64_t& { return c.log_every; }, 1, kBig));

    f.push_back(F::string_field("stream.kind",
                             "synthetic: the stream below; replay: recorded gate logits (stream.trace); experts, "
                             "batch and layers then come from the trace, and steps caps its recorded steps",
                             [](SimConfig& c) -> std::string& { return c.stream.kind; }, {"synthetic", "replay"}));
    f.push_back(F::string_field("stream.trace",
                             "replay: a trace folder (moesim train's traces/, with manifest.json) or a float .npy "
                             "of logits, (tokens, E) or (steps, tokens, E)",
                             [](SimConfig& c) -> std::string& { return c.stream.trace; }));
    f.push_back(F::string_field("stream.trace_tokens",
                             "replay of a .npy: optional integer token ids, (tokens) or (steps, tokens); "
                             "without them a token's id is its position",
                             [](SimConfig& c) -> std::string& { return c.stream.trace_tokens; }));
    f.push_back(F::string_field("stream.layers", "replay: recorded layers to replay, all or a list such as 1,3",
                             [](SimConfig& c) -> std::string& { return c.stream.layers; }, {}, true));
    f.push_back(F::string_field("stream.unserved_perf",
                             "replay: the performance a policy observes on an expert that served nothing in the "
                             "recording: layer_mean (mean of the experts that did, that step), zero, or last "
                             "(its latest recorded value; layer_mean before it has one)",
                             [](SimConfig& c) -> std::string& { return c.stream.unserved_perf; },
                             {"layer_mean", "zero", "last"}));
    f.push_back(F::int_field<int>("stream.clusters", "topics; each has its own vocabulary and centroid",
                               [](SimConfig& c) -> int& { return c.stream.clusters; }, 1, 1L << 16));
    f.push_back(F::int_field<int>("stream.vocab", "token ids per cluster",
                               [](SimConfig& c) -> int& { return c.stream.vocab; }, 1, 1L << 30));
    f.push_back(F::real_field("stream.zipf_s", "Zipf exponent of token frequencies inside a cluster (0 = uniform)",
                           [](SimConfig& c) -> double& { return c.stream.zipf_s; }, 0.0, 1e300));
    f.push_back(F::real_field("stream.mixture_zipf_s", "Zipf exponent of the base cluster mixture (0 = uniform)",
                           [](SimConfig& c) -> double& { return c.stream.mixture_zipf_s; }, 0.0, 1e300));
    f.push_back(F::int_field<int>("stream.dim", "embedding dimension d (the gate input)",
                               [](SimConfig& c) -> int& { return c.stream.dim; }, 1, 1L << 16));
    f.push_back(F::real_field("stream.centroid_scale", "std of each cluster centroid coordinate",
                           [](SimConfig& c) -> double& { return c.stream.centroid_scale; }, 0.0, 1e300));
    f.push_back(F::real_field("stream.token_scale", "std of each token's fixed offset from its centroid",
                           [](SimConfig& c) -> double& { return c.stream.token_scale; }, 0.0, 1e300));
    f.push_back(F::real_field("stream.noise", "std of fresh per-occurrence noise on every embedding coordinate",
                           [](SimConfig& c) -> double& { return c.stream.noise; }, 0.0, 1e300));
    f.push_back(F::real_field("stream.drift", "std per step of the random walk of the mixture log-weights",
                           [](SimConfig& c) -> double& { return c.stream.drift; }, 0.0, 1e300));
    f.push_back(F::real_field("stream.drift_revert", "pull of the log-weights back to the base mixture per step",
                           [](SimConfig& c) -> double& { return c.stream.drift_revert; }, 0.0, 1.0));
    f.push_back(F::real_field("stream.burst_prob", "chance per step (while no burst runs) that a burst starts",
                           [](SimConfig& c) -> double& { return c.stream.burst_prob; }, 0.0, 1.0));
    f.push_back(F::int_field<int>("stream.burst_len", "steps a burst lasts",
                               [](SimConfig& c) -> int& { return c.stream.burst_len; }, 1, 1L << 30));
    f.push_back(F::real_field("stream.burst_share", "share of tokens from the burst cluster during a burst",
                           [](SimConfig& c) -> double& { return c.stream.burst_share; }, 0.0, 1.0));
    f.push_back(F::real_field("stream.hot_fraction", "share of tokens replaced by one repeated adversarial token",
                           [](SimConfig& c) -> double& { return c.stream.hot_fraction; }, 0.0, 1.0));
    f.push_back(F::int_field<std::int64_t>("stream.hot_token", "global id of the hot token, in [0, clusters*vocab)",
                                        [](SimConfig& c) -> std::int64_t& { return c.stream.hot_token; }, 0,
                                        kBig));

    f.push_back(F::real_field("world.skill_init", "initial skill of every expert on every cluster",
                           [](SimConfig& c) -> double& { return c.world.skill_init; }, -1e300, 1e300));
    f.push_back(F::real_field("world.skill_spread", "initial skills get + spread*U(-1,1) (breaks symmetry)",
                           [](SimConfig& c) -> double& { return c.world.skill_spread; }, 0.0, 1e300));
    f.push_back(F::real_field("world.skill_max", "ceiling that learning by doing approaches",
                           [](SimConfig& c) -> double& { return c.world.skill_max; }, -1e300, 1e300));
    f.push_back(F::real_field("world.skill_floor", "level that idle decay approaches",
                           [](SimConfig& c) -> double& { return c.world.skill_floor; }, -1e300, 1e300));
    f.push_back(F::real_field("world.skill_growth",
                           "eta: log-fraction of the gap to skill_max closed per step at fair-share load",
                           [](SimConfig& c) -> double& { return c.world.skill_growth; }, 0.0, 1e300));
    f.push_back(F::real_field("world.idle_decay", "delta: fraction of the gap to skill_floor lost per idle step",
                           [](SimConfig& c) -> double& { return c.world.idle_decay; }, 0.0, 1.0));
    f.push_back(F::string_field("world.decay_scope",
                             "pair: an expert forgets a cluster it did not serve; expert: only idle experts forget",
                             [](SimConfig& c) -> std::string& { return c.world.decay_scope; }, {"pair", "expert"}));
    f.push_back(F::real_field("world.perf_noise", "std of the Gaussian noise on each served slot's performance",
                           [](SimConfig& c) -> double& { return c.world.perf_noise; }, 0.0, 1e300));
    f.push_back(F::real_field("world.perf_scale_spread",
                           "sigma: each expert's performance is multiplied by a fixed exp(sigma*N(0,1)) (0 = off)",
                           [](SimConfig& c) -> double& { return c.world.perf_scale_spread; }, 0.0, 10.0));

    f.push_back(F::real_field("gate.init_scale", "W entries ~ N(0, init_scale^2/d)",
                           [](SimConfig& c) -> double& { return c.gate.init_scale; }, 0.0, 1e300));
    f.push_back(F::real_field("gate.lr", "learning rate of the online reward update (0 = frozen gate)",
                           [](SimConfig& c) -> double& { return c.gate.lr; }, 0.0, 1e300));
    f.push_back(F::real_field("gate.l2", "weight decay: W <- (1 - lr*l2) W each step",
                           [](SimConfig& c) -> double& { return c.gate.l2; }, 0.0, 1e300));
    f.push_back(F::real_field("gate.baseline_rate", "EMA rate of the reward baseline (1 = this batch's mean)",
                           [](SimConfig& c) -> double& { return c.gate.baseline_rate; }, 0.0, 1.0, true));
    f.push_back(F::real_field("gate.noise", "std of Gaussian noise added to the logits the policy sees",
                           [](SimConfig& c) -> double& { return c.gate.noise; }, 0.0, 1e300));
    f.push_back(F::real_field("gate.aux_loss", "coefficient of the Switch load-balancing loss the gate descends",
                           [](SimConfig& c) -> double& { return c.gate.aux_loss; }, 0.0, 1e300));
    f.push_back(F::real_field("gate.z_loss", "coefficient of the router z-loss the gate descends",
                           [](SimConfig& c) -> double& { return c.gate.z_loss; }, 0.0, 1e300));
    f.push_back(F::real_field("gate.jitter_eps",
                           "multiplicative input jitter x*U(1-eps, 1+eps) before the gate (Switch, Megatron-Core)",
                           [](SimConfig& c) -> double& { return c.gate.jitter_eps; }, 0.0, 0.999999));
    f.push_back(F::bool_field("gate.force_balance",
                           "the policy sees N(0,1) logits instead of the gate's (Megatron-Core force load balancing)",
                           [](SimConfig& c) -> bool& { return c.gate.force_balance; }));
    f.push_back(F::string_field("gate.router_dtype",
                             "precision of the logits the policy sees: fp32, or bf16 (rounded to nearest even, as "
                             "a router computing in the model dtype)",
                             [](SimConfig& c) -> std::string& { return c.gate.router_dtype; }, {"fp32", "bf16"}));

    f.push_back(F::string_field("policy.name", "routing policy, a registry name (`moesim policies` lists them)",
                             [](SimConfig& c) -> std::string& { return c.policy.name; }, {}, true));

    f.push_back(F::int_field<std::int64_t>("metrics.window", "steps in the early window and in the late window",
                                        [](SimConfig& c) -> std::int64_t& { return c.metrics.window; }, 1, kBig));
    f.push_back(F::int_field<std::int64_t>("metrics.dead_window",
                                        "an expert with zero load over this many trailing steps is dead",
                                        [](SimConfig& c) -> std::int64_t& { return c.metrics.dead_window; }, 1,
                                        kBig));
    return f;
  }();
  return all;
}

}  // namespace

const std::vector<ConfigKey>& config_keys() {
  static const std::vector<ConfigKey> keys = config::keys_of(fields());
  return keys;
}

std::vector<std::pair<std::string, std::string>> config_fields(const SimConfig& cfg) {
  return config::values_of(fields(), cfg);
}

void set_field(SimConfig& cfg, std::string_view key, std::string_view value) {
  config::set_in(fields(), cfg, key, value);
}

void validate(const SimConfig& c) {
  // set_field range-checks text; a config built in code gets the same checks on its values.
  config::check_all(fields(), c);
  if (c.k > c.experts)
    throw KeyError("k", "config key 'k' = " + std::to_string(c.k) + ": must not exceed experts = " +
                std::to_string(c.experts));
  const auto vocab_total = static_cast<std::int64_t>(c.stream.clusters) * c.stream.vocab;
  if (c.stream.hot_token >= vocab_total)
    throw KeyError("stream.hot_token", "config key 'stream.hot_token' = " + std::to_string(c.stream.hot_token) +
                ": must be below clusters*vocab = " + std::to_string(vocab_total));
  // The embedding table holds clusters*vocab*dim floats.
  constexpr std::int64_t kMaxTable = std::int64_t{1} << 27;
  if (vocab_total > kMaxTable / c.stream.dim)
    throw KeyError("stream.vocab", "config key 'stream.vocab' = " + std::to_string(c.stream.vocab) +
                ": clusters*vocab*dim exceeds the embedding table limit of 2^27 floats");
  if (c.world.skill_floor > c.world.skill_max)
    throw KeyError("world.skill_floor", "config key 'world.skill_floor' = " + format_real(c.world.skill_floor) +
                ": must not exceed world.skill_max = " + format_real(c.world.skill_max));
  try {
    policy_info(c.policy.name);
  } catch (const Error& e) {
    throw KeyError("policy.name", std::string("config key 'policy.name': ") + e.what());
  }
  check_policy(c.policy, c.experts, c.k, "k");
}

std::vector<std::string> config_warnings(const SimConfig& c) {
  std::vector<std::string> w;
  if (2 * c.metrics.window > c.steps)
    w.push_back("steps = " + std::to_string(c.steps) + " < 2 * metrics.window = " +
                std::to_string(2 * c.metrics.window) +
                ": the early and late windows overlap, so rank_persistence, rgr_slope and rgr_corr are undefined (NaN)");
  return w;
}

}  // namespace moesim
