#include "torch_backend/lora.hpp"

#include <cmath>
#include <algorithm>
#include <map>

#include "common/error.hpp"
#include "common/files.hpp"

namespace moesim::torch_backend {

namespace {
constexpr const char* kPrefix = "lora_";
}

LoraAdapter::LoraAdapter(std::int64_t rows, std::int64_t cols, bool in_rows_, int rank, double alpha)
    : scale(alpha / rank), in_rows(in_rows_) {
  const std::int64_t in = in_rows ? rows : cols, out = in_rows ? cols : rows;
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  a = register_parameter("a", torch::rand({rank, in}) * (2 * bound) - bound);
  b = register_parameter("b", torch::zeros({out, rank}));
}

torch::Tensor LoraAdapter::delta() const {
  // (out, in) = B A; its transpose A^T B^T for an (in, out) weight.
  return in_rows ? torch::mm(a.t(), b.t()) * scale : torch::mm(b, a) * scale;
}

torch::Tensor adapted(const torch::Tensor& w, const std::shared_ptr<LoraAdapter>& lora) {
  return lora ? w + lora->delta() : w;
}

std::shared_ptr<LoraAdapter> add_adapter(torch::nn::Module& owner, const std::string& weight_name, const torch::Tensor& w,
                                         bool in_rows, int rank, double alpha) {
  return owner.register_module(kPrefix + weight_name, std::make_shared<LoraAdapter>(w.size(0), w.size(1), in_rows, rank, alpha));
}

std::vector<std::pair<std::string, std::shared_ptr<LoraAdapter>>> adapters_of(torch::nn::Module& model) {
  std::vector<std::pair<std::string, std::shared_ptr<LoraAdapter>>> out;
  for (const auto& m : model.named_modules("", false)) {
    auto ad = std::dynamic_pointer_cast<LoraAdapter>(m.value());
    if (!ad) continue;
    const std::string& name = m.key();  // ...<owner>.lora_<weight>
    const auto dot = name.rfind('.');
    const std::string owner = dot == std::string::npos ? "" : name.substr(0, dot + 1);
    const std::string leaf = name.substr(owner.size());
    out.emplace_back(owner + leaf.substr(std::string(kPrefix).size()), ad);
  }
  return out;
}

namespace {
bool is_adapter_param(const std::string& name) {
  return name.find(std::string(".") + kPrefix) != std::string::npos || name.rfind(kPrefix, 0) == 0;
}
}  // namespace

void copy_weights(torch::nn::Module& from, torch::nn::Module& to, const std::string& source) {
  torch::NoGradGuard ng;
  auto dst = to.named_parameters(true);
  std::map<std::string, bool> covered;
  for (const auto& p : from.named_parameters(true)) {
    auto* t = dst.find(p.key());
    if (!t) throw Error(source + ": parameter '" + p.key() + "' has no place in this model");
    if (!t->sizes().equals(p.value().sizes()))
      throw Error(source + ": parameter '" + p.key() + "' has another shape than in this model");
    t->copy_(p.value());
    covered[p.key()] = true;
  }
  for (const auto& p : dst)
    if (!is_adapter_param(p.key()) && !covered.count(p.key()))
      throw Error(source + ": has no parameter '" + p.key() + "' of this model");
}

void merge_adapters(torch::nn::Module& adapted_model, torch::nn::Module& plain) {
  torch::NoGradGuard ng;
  auto src = adapted_model.named_parameters(true);
  auto dst = plain.named_parameters(true);
  for (const auto& p : dst) {
    const auto* s = src.find(p.key());
    if (!s) throw Error("merging adapters: the adapted model has no parameter '" + p.key() + "'");
    p.value().copy_(*s);
  }
  for (const auto& [weight, ad] : adapters_of(adapted_model)) {
    auto* w = dst.find(weight);
    if (!w) throw Error("merging adapters: no weight '" + weight + "' for its adapter");
    w->add_(ad->delta());
  }
}

namespace {

constexpr const char* kAdapterFormat = "moesim-lora-1";

torch::serialize::InputArchive open_adapters(const std::string& path) {
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path);
  } catch (const c10::Error& e) {
    throw Error(path + ": not a readable adapter file (" + std::string(e.what_without_backtrace()).substr(0, 160) + ")");
  }
  c10::IValue f;
  if (!ar.try_read("format", f) || !f.isString() || f.toStringRef() != kAdapterFormat)
    throw Error(path + ": not a moesim adapter file (format '" + std::string(kAdapterFormat) + "' expected)");
  return ar;
}

c10::IValue entry(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path) {
  c10::IValue v;
  if (!ar.try_read(key, v)) throw Error(path + ": adapter file has no '" + key + "'");
  return v;
}

}  // namespace

void write_adapters(const std::string& path, torch::nn::Module& model, const AdapterFileInfo& info) {
  const auto ads = adapters_of(model);
  torch::serialize::OutputArchive ar;
  ar.write("format", c10::IValue(std::string(kAdapterFormat)));
  std::string names;
  for (std::size_t i = 0; i < ads.size(); ++i) {
    names += ads[i].first + "\n";
    ar.write("a_" + std::to_string(i), ads[i].second->a.detach());
    ar.write("b_" + std::to_string(i), ads[i].second->b.detach());
  }
  ar.write("names", c10::IValue(names));
  ar.write("rank", c10::IValue(static_cast<std::int64_t>(info.rank)));
  ar.write("alpha", c10::IValue(info.alpha));
  ar.write("targets", c10::IValue(info.targets));
  ar.write("base_digest", c10::IValue(info.base_digest));
  const std::string tmp = path + ".tmp";
  try {
    ar.save_to(tmp);
  } catch (const c10::Error& e) {
    throw Error(path + ": cannot write the adapters (" + std::string(e.what_without_backtrace()).substr(0, 160) + ")");
  }
  commit_file(tmp, path);
}

AdapterFileInfo read_adapter_info(const std::string& path) {
  auto ar = open_adapters(path);
  AdapterFileInfo info;
  info.rank = static_cast<int>(entry(ar, "rank", path).toInt());
  info.alpha = entry(ar, "alpha", path).toDouble();
  info.targets = entry(ar, "targets", path).toStringRef();
  info.base_digest = entry(ar, "base_digest", path).toStringRef();
  const auto names = entry(ar, "names", path).toStringRef();
  info.adapters = static_cast<std::int64_t>(std::count(names.begin(), names.end(), '\n'));
  return info;
}

void read_adapters(const std::string& path, torch::nn::Module& model) {
  auto ar = open_adapters(path);
  const auto names = entry(ar, "names", path).toStringRef();
  std::map<std::string, std::shared_ptr<LoraAdapter>> mine;
  for (const auto& [w, ad] : adapters_of(model)) mine[w] = ad;
  torch::NoGradGuard ng;
  std::size_t i = 0, count = 0;
  for (std::size_t a = 0, b; a < names.size(); a = b + 1, ++i) {
    b = names.find('\n', a);
    const std::string w = names.substr(a, b - a);
    const auto it = mine.find(w);
    if (it == mine.end()) throw Error(path + ": adapter of '" + w + "' has no place in this model (other lora.targets or model)");
    if (b == std::string::npos) throw Error(path + ": adapter list is damaged (no end of line after '" + w + "')");
    const auto ta = entry(ar, "a_" + std::to_string(i), path), tb = entry(ar, "b_" + std::to_string(i), path);
    if (!ta.isTensor() || !tb.isTensor()) throw Error(path + ": adapter of '" + w + "' is not a pair of tensors");
    const auto A = ta.toTensor(), B = tb.toTensor();
    if (!A.sizes().equals(it->second->a.sizes()) || !B.sizes().equals(it->second->b.sizes()))
      throw Error(path + ": adapter of '" + w + "' has another rank or shape than this model's");
    if (!torch::isfinite(A).all().item<bool>() || !torch::isfinite(B).all().item<bool>())
      throw Error(path + ": adapter of '" + w + "' holds NaN or infinite values");
    it->second->a.copy_(A);
    it->second->b.copy_(B);
    ++count;
  }
  if (count != mine.size())
    throw Error(path + ": holds " + std::to_string(count) + " adapters, this model has " + std::to_string(mine.size()));
}

}  // namespace moesim::torch_backend
