#include "torch_backend/bf16_shadow.hpp"

#include <mutex>
#include <unordered_map>

namespace moesim::torch_backend {

namespace {

struct Entry {
  c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl> owner;  // detects a reused address
  std::int64_t version;
  const void* data;
  torch::Tensor copy;
};

std::mutex g_mutex;
std::unordered_map<const c10::TensorImpl*, Entry> g_shadows;

// The entry of a live param with its shape, or nullptr. Caller holds g_mutex.
Entry* find(const torch::Tensor& param) {
  const auto it = g_shadows.find(param.unsafeGetTensorImpl());
  if (it == g_shadows.end()) return nullptr;
  auto owner = it->second.owner.lock();
  if (owner.get() != param.unsafeGetTensorImpl() || it->second.copy.sizes() != param.sizes()) return nullptr;
  return &it->second;
}

}  // namespace

torch::Tensor bf16_shadow_buffer(const torch::Tensor& param) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const Entry* e = find(param);
  return e ? e->copy : torch::Tensor();
}

void set_bf16_shadow(const torch::Tensor& param, const torch::Tensor& copy) {
  TORCH_CHECK(copy.scalar_type() == torch::kBFloat16 && copy.sizes() == param.sizes() && copy.is_contiguous(),
              "set_bf16_shadow: the copy must be a contiguous bf16 tensor of the parameter's shape");
  std::lock_guard<std::mutex> lock(g_mutex);
  // Before a new parameter's entry, drop those of parameters that no longer
  // exist, so that a process building many models (tests, data selection) does
  // not keep their copies; a step that rewrites known copies pays nothing.
  if (g_shadows.find(param.unsafeGetTensorImpl()) == g_shadows.end())
    for (auto it = g_shadows.begin(); it != g_shadows.end();)
      it = it->second.owner.expired() ? g_shadows.erase(it) : std::next(it);
  Entry e{c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>(param.getIntrusivePtr()),
          param._version(), param.data_ptr(), copy};
  g_shadows.insert_or_assign(param.unsafeGetTensorImpl(), std::move(e));
}

torch::Tensor bf16_shadow(const torch::Tensor& param) {
  std::lock_guard<std::mutex> lock(g_mutex);
  const Entry* e = find(param);
  if (!e || e->version != param._version() || e->data != param.data_ptr()) return torch::Tensor();
  return e->copy;
}

void clear_bf16_shadows() {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_shadows.clear();
}

}  // namespace moesim::torch_backend
