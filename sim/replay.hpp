#pragma once
// Replay: a recorded stream instead of a synthetic one (stream.kind = replay).
// Each recorded step's logits go, in order, through the configured policy, one
// policy (with its own state and seeded rng, as in a synthetic run) per
// replayed layer; there is no gate, world or token stream:
//   logits        the recorded ones, exactly (every policy replays the same bytes)
//   token ids     the recorded ones (hash routing); a plain .npy without them
//                 uses the token's position in its step
//   performance   a served slot on expert e observes the recording's mean
//                 performance of e at that step (trace kind expert_perf); an
//                 expert the recording saw serve nothing gets
//                 stream.unserved_perf: layer_mean (mean over the experts that
//                 served, that step), zero (GT-MoE's perf = 0 for idle experts),
//                 or last (its latest recorded value, layer_mean until it has
//                 one). A plain .npy records no performance: a slot then
//                 observes its router probability softmax(z)_e.
//   metrics       the same LayerMetrics as a synthetic run, one cluster (no
//                 specialisation), steps numbered 0.. over the recorded steps
//                 (metrics.window counts recorded steps); skill_mean and
//                 baseline are NaN.
// experts, batch and layers are the trace's; steps is capped at the recorded
// steps (resolve_replay writes them into the config, so what a run folder's
// config says is what ran). The gate.*, world.* and synthetic stream.* keys do
// not apply.
#include "sim/config.hpp"

namespace moesim {

// For stream.kind = replay: opens the trace (checking it, Error naming the
// file) and sets experts, batch, layers and steps from it. No-op otherwise.
// Traces are opened once per (trace, tokens, layers) per process.
void resolve_replay(SimConfig& cfg);

// The recorded layer numbers stream.layers selects ("all" = empty).
std::vector<int> replay_layers(const SimConfig& cfg);

}  // namespace moesim
