#include "sim/replay.hpp"

#include <filesystem>
#include <map>
#include <mutex>
#include <tuple>

#include "common/error.hpp"
#include "common/text.hpp"
#include "trace/trace_reader.hpp"

namespace moesim {

std::vector<int> replay_layers(const SimConfig& cfg) {
  std::vector<int> out;
  std::string_view v = cfg.stream.layers;
  if (v == "all") return out;
  if (v.size() >= 2 && v.front() == '[' && v.back() == ']') v = v.substr(1, v.size() - 2);
  std::size_t pos = 0;
  while (pos <= v.size()) {
    const std::size_t comma = std::min(v.find(',', pos), v.size());
    std::string_view item = v.substr(pos, comma - pos);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    long x = 0;
    if (!parse_int(item, x) || x < 0 || x > (1 << 20))
      throw KeyError("stream.layers", "config key 'stream.layers' = '" + cfg.stream.layers +
                                          "': expected all or a list of layer numbers such as 1,3");
    out.push_back(static_cast<int>(x));
    pos = comma + 1;
  }
  return out;
}

void resolve_replay(SimConfig& cfg) {
  if (cfg.stream.kind != "replay") return;
  if (cfg.stream.trace.empty())
    throw KeyError("stream.trace", "config key 'stream.trace': stream.kind = replay needs a trace folder or .npy");
  struct Shape {
    int experts, tokens, layers;
    std::int64_t steps;
  };
  static std::mutex mu;
  // Keyed by the manifest's (or plain file's) size and time too: a trace
  // recorded anew at the same path is opened anew.
  static std::map<std::tuple<std::string, std::string, std::string, std::uintmax_t, std::int64_t>, Shape> cache;
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path index = fs::is_directory(cfg.stream.trace, ec) ? fs::path(cfg.stream.trace) / "manifest.json"
                                                                 : fs::path(cfg.stream.trace);
  const auto size = fs::file_size(index, ec);
  const auto time = fs::last_write_time(index, ec).time_since_epoch().count();
  const auto key = std::make_tuple(cfg.stream.trace, cfg.stream.trace_tokens, cfg.stream.layers,
                                   ec ? std::uintmax_t{0} : size, ec ? std::int64_t{0} : static_cast<std::int64_t>(time));
  Shape s{};
  {
    std::lock_guard<std::mutex> lock(mu);
    auto it = cache.find(key);
    if (it == cache.end()) {
      const auto layers = replay_layers(cfg);
      try {
        const TraceReader r(cfg.stream.trace, cfg.stream.trace_tokens, layers);
        it = cache.emplace(key, Shape{r.experts(), r.tokens(), r.layers(), r.steps()}).first;
      } catch (const KeyError&) {
        throw;
      } catch (const Error& e) {
        throw KeyError("stream.trace", std::string("config key 'stream.trace': ") + e.what());
      }
    }
    s = it->second;
  }
  cfg.experts = s.experts;
  cfg.batch = s.tokens;
  cfg.layers = s.layers;
  cfg.steps = std::min(cfg.steps, s.steps);
  if (cfg.k > cfg.experts)
    throw KeyError("k", "config key 'k' = " + std::to_string(cfg.k) + ": exceeds the " + std::to_string(cfg.experts) +
                            " experts of stream.trace " + cfg.stream.trace);
}

}  // namespace moesim
