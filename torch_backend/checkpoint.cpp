#include "torch_backend/checkpoint.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>

#include "common/error.hpp"
#include "common/hash.hpp"
#include "common/files.hpp"

namespace moesim::torch_backend {

namespace {

// FNV-1a (common/hash.hpp) over typed values: detects corruption.
class Fnv {
 public:
  void bytes(const void* p, std::size_t n) { h_ = fnv1a_bytes(p, n, h_); }
  void text(const std::string& s) {
    const std::uint64_t n = s.size();
    bytes(&n, sizeof n);  // length first: "ab"+"c" and "a"+"bc" differ
    bytes(s.data(), s.size());
  }
  void tensor(const torch::Tensor& t) {
    if (!t.defined()) return text("undefined");
    const auto c = t.detach().to(torch::kCPU).contiguous();
    text(std::string(c10::toString(c.scalar_type())));
    for (auto d : c.sizes()) bytes(&d, sizeof d);
    bytes(c.data_ptr(), c.nbytes());
  }
  void value(const c10::IValue& v) {
    if (v.isString()) return text("s:" + v.toStringRef());
    if (v.isInt()) return text("i:" + std::to_string(v.toInt()));
    if (v.isTensor()) return text("t:"), tensor(v.toTensor());
    if (v.isIntList()) {
      text("l:");
      for (auto x : v.toIntVector()) bytes(&x, sizeof x);
      return;
    }
    throw Error("checkpoint: metadata of an unsupported type (" + v.tagKind() + ")");
  }
  std::string hex() const {
    char b[17];
    std::snprintf(b, sizeof b, "%016" PRIx64, h_);
    return b;
  }

 private:
  std::uint64_t h_ = kFnvOffset;
};

std::vector<std::pair<std::string, torch::Tensor>> model_tensors(torch::nn::Module& model) {
  std::vector<std::pair<std::string, torch::Tensor>> all;
  for (const auto& p : model.named_parameters(true)) all.emplace_back(p.key(), p.value());
  for (const auto& b : model.named_buffers(true)) all.emplace_back(b.key(), b.value());
  return all;
}

std::string model_digest(torch::nn::Module& model) {
  Fnv h;
  for (const auto& [name, t] : model_tensors(model)) h.text(name), h.tensor(t);
  return h.hex();
}

// AdamW's state tensors per parameter, named after the parameter.
std::vector<std::pair<std::string, torch::Tensor>> optimizer_tensors(torch::optim::AdamW& opt, torch::nn::Module& model,
                                                                     std::vector<std::int64_t>& steps) {
  std::map<const void*, std::string> name_of;
  for (const auto& p : model.named_parameters(true)) name_of[p.value().unsafeGetTensorImpl()] = p.key();
  std::vector<std::pair<std::string, torch::Tensor>> all;
  auto& state = opt.state();
  for (auto& g : opt.param_groups())
    for (auto& p : g.params()) {
      const auto it = state.find(c10::guts::to_string(p.unsafeGetTensorImpl()));
      const std::string name = name_of.count(p.unsafeGetTensorImpl()) ? name_of[p.unsafeGetTensorImpl()] : "?";
      if (it == state.end()) {
        steps.push_back(-1);
        continue;
      }
      auto& s = static_cast<torch::optim::AdamWParamState&>(*it->second);
      steps.push_back(s.step());
      all.emplace_back(name + " (exp_avg)", s.exp_avg());
      all.emplace_back(name + " (exp_avg_sq)", s.exp_avg_sq());
      if (s.max_exp_avg_sq().defined()) all.emplace_back(name + " (max_exp_avg_sq)", s.max_exp_avg_sq());
    }
  return all;
}

std::string optimizer_digest(const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                             const std::vector<std::int64_t>& steps) {
  Fnv h;
  for (auto s : steps) h.bytes(&s, sizeof s);
  for (const auto& [name, t] : tensors) h.text(name), h.tensor(t);
  return h.hex();
}

std::string meta_digest(const std::vector<std::pair<std::string, c10::IValue>>& meta) {
  auto sorted = meta;
  std::sort(sorted.begin(), sorted.end(), [](const auto& a, const auto& b) { return a.first < b.first; });
  Fnv h;
  for (const auto& [k, v] : sorted) h.text(k), h.value(v);
  return h.hex();
}

void check_finite(const std::vector<std::pair<std::string, torch::Tensor>>& tensors, const std::string& path,
                  const char* what) {
  for (const auto& [name, t] : tensors)
    if (t.defined() && t.is_floating_point() && !torch::isfinite(t).all().item<bool>())
      throw Error(path + ": " + what + " '" + name + "' holds NaN or infinite values: the checkpoint is damaged");
}

// AdamW's state in LibTorch's own archive layout (torch/optim/serialize.h), so
// that AdamW::load reads it, but keyed by position ("g0p12") where LibTorch keys
// each parameter by its TensorImpl's address and writes the state in hash-map
// order: the same run then writes the same bytes. load() matches a saved key to
// a parameter by its index in the group, so any consistent keys load alike.
void save_optimizer(torch::serialize::OutputArchive& archive, torch::optim::AdamW& opt) {
  archive.write("pytorch_version", c10::IValue("1.5.0"));
  torch::serialize::OutputArchive state(archive.compilation_unit()), groups(archive.compilation_unit());
  const auto& groups_list = opt.param_groups();
  groups.write("param_groups/size", torch::tensor(static_cast<std::int64_t>(groups_list.size())));
  for (std::size_t g = 0; g < groups_list.size(); ++g) {
    torch::serialize::OutputArchive group(archive.compilation_unit()), options(archive.compilation_unit());
    const auto& params = groups_list[g].params();
    group.write("params/size", torch::tensor(static_cast<std::int64_t>(params.size())));
    for (std::size_t i = 0; i < params.size(); ++i) {
      char key[48], slot[32];  // snprintf: GCC 12 warns falsely on chained std::string concatenation here
      std::snprintf(key, sizeof key, "g%zup%zu", g, i);
      std::snprintf(slot, sizeof slot, "params/%zu", i);
      group.write(slot, c10::IValue(std::string(key)));
      const auto it = opt.state().find(c10::guts::to_string(params[i].unsafeGetTensorImpl()));
      if (it == opt.state().end()) continue;
      torch::serialize::OutputArchive one(archive.compilation_unit());
      static_cast<const torch::optim::AdamWParamState&>(*it->second).serialize(one);
      state.write(key, one);
    }
    static_cast<const torch::optim::AdamWOptions&>(groups_list[g].options()).serialize(options);
    group.write("options", options);
    char name[40];
    std::snprintf(name, sizeof name, "param_groups/%zu", g);
    groups.write(name, group);
  }
  archive.write("state", state);
  archive.write("param_groups", groups);
}

std::string brief(const c10::Error& e) { return std::string(e.what_without_backtrace()).substr(0, 200); }

}  // namespace

void write_checkpoint(const std::string& path, torch::nn::Module& model, torch::optim::AdamW& opt,
                      const CheckpointMeta& meta) {
  torch::serialize::OutputArchive ar, m, o;
  model.save(m);
  save_optimizer(o, opt);
  ar.write("format", c10::IValue(std::string(kCheckpointFormat)));
  ar.write("model", m);
  ar.write("optimizer", o);
  std::vector<std::string> keys;
  for (const auto& [k, v] : meta) {
    ar.write(k, v);
    keys.push_back(k);
  }
  std::string key_list;
  for (const auto& k : keys) key_list += k + "\n";
  auto all = meta;
  all.emplace_back("meta_keys", c10::IValue(key_list));
  ar.write("meta_keys", c10::IValue(key_list));
  ar.write("digest_meta", c10::IValue(meta_digest(all)));
  ar.write("digest_model", c10::IValue(model_digest(model)));
  std::vector<std::int64_t> steps;
  const auto ot = optimizer_tensors(opt, model, steps);
  ar.write("digest_optimizer", c10::IValue(optimizer_digest(ot, steps)));
  const std::string tmp = path + ".tmp";
  try {
    ar.save_to(tmp);
  } catch (const c10::Error& e) {
    throw Error(path + ": cannot write checkpoint: " + brief(e));
  }
  commit_file(tmp, path);
}

CheckpointReader::CheckpointReader(std::string path) : path_(std::move(path)) {
  if (!std::filesystem::exists(path_)) throw Error(path_ + ": no such checkpoint");
  try {
    ar_.load_from(path_);
  } catch (const c10::Error& e) {
    throw Error(path_ + ": not a readable checkpoint (" + brief(e) + ")");
  }
  c10::IValue f;
  if (!ar_.try_read("format", f) || !f.isString())
    throw Error(path_ + ": not a moesim checkpoint (format tag missing)");
  if (f.toStringRef() != kCheckpointFormat)
    throw Error(path_ + ": checkpoint format '" + f.toStringRef() + "', this build reads '" + kCheckpointFormat + "'");
  c10::IValue keys, digest;
  if (!ar_.try_read("meta_keys", keys) || !keys.isString() || !ar_.try_read("digest_meta", digest) || !digest.isString())
    throw Error(path_ + ": checkpoint has no metadata digest");
  std::string list = keys.toStringRef();
  for (std::size_t a = 0, b; a < list.size(); a = b + 1) {
    b = list.find('\n', a);
    if (b == std::string::npos) b = list.size();
    const std::string k = list.substr(a, b - a);
    c10::IValue v;
    if (!ar_.try_read(k, v)) throw Error(path_ + ": checkpoint has no '" + k + "' entry");
    meta_.emplace_back(k, v);
  }
  auto all = meta_;
  all.emplace_back("meta_keys", keys);
  if (meta_digest(all) != digest.toStringRef())
    throw Error(path_ + ": checkpoint metadata does not match its digest: the file was altered or damaged");
}

const c10::IValue& CheckpointReader::get(const std::string& key) const {
  for (const auto& [k, v] : meta_)
    if (k == key) return v;
  throw Error(path_ + ": checkpoint has no '" + key + "' entry");
}

void CheckpointReader::load_model(torch::nn::Module& model) {
  torch::serialize::InputArchive m;
  if (!ar_.try_read("model", m)) throw Error(path_ + ": checkpoint has no model");
  try {
    model.load(m);
  } catch (const c10::Error& e) {
    throw Error(path_ + ": model weights do not fit this model (" + brief(e) + ")");
  }
  check_finite(model_tensors(model), path_, "tensor");
  c10::IValue d;
  if (!ar_.try_read("digest_model", d) || !d.isString() || d.toStringRef() != model_digest(model))
    throw Error(path_ + ": model weights do not match their digest: the file was altered or damaged");
}

void CheckpointReader::load_optimizer(torch::optim::AdamW& opt, torch::nn::Module& model) {
  torch::serialize::InputArchive o;
  if (!ar_.try_read("optimizer", o)) throw Error(path_ + ": checkpoint has no optimizer state");
  try {
    opt.load(o);
  } catch (const c10::Error& e) {
    throw Error(path_ + ": optimizer state does not fit (" + brief(e) + ")");
  }
  std::vector<std::int64_t> steps;
  const auto ot = optimizer_tensors(opt, model, steps);
  check_finite(ot, path_, "optimizer state");
  c10::IValue d;
  if (!ar_.try_read("digest_optimizer", d) || !d.isString() || d.toStringRef() != optimizer_digest(ot, steps))
    throw Error(path_ + ": optimizer state does not match its digest: the file was altered or damaged");
}

}  // namespace moesim::torch_backend
