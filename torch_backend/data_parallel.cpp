#include "torch_backend/data_parallel.hpp"

#include <cstdlib>
#include <string>

#include "common/error.hpp"
#include "common/text.hpp"

#ifdef MOESIM_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/autograd/utils/lambda_post_hook.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <mutex>
#endif

namespace moesim::torch_backend {

#ifdef MOESIM_HAVE_GLOO

struct DataParallel::Group {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  // Gradient buckets (attach); mu guards them against backward's hooks.
  struct Bucket {
    std::vector<std::int64_t> members;  // parameter indices
    int pending = 0;                    // members whose gradient backward has not finished
    torch::Tensor flat;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::mutex mu;
  std::vector<torch::Tensor> params;
  std::vector<int> bucket_of;
  std::vector<char> fired;
  std::vector<Bucket> buckets;
  std::vector<std::shared_ptr<torch::autograd::Node>> accumulators;
  std::size_t next_launch = 0;
  bool armed = false;
  void launch(std::size_t b);  // caller holds mu
  void gradient_ready(std::size_t i);
};

bool DataParallel::available() { return true; }

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

std::shared_ptr<::gloo::transport::Device> gloo_device(const std::string& master) {
  const std::string ifname = env_or("GLOO_SOCKET_IFNAME", "");
  if (!ifname.empty()) return c10d::ProcessGroupGloo::createDeviceForInterface(ifname);
  if (master == "127.0.0.1" || master == "localhost") return c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1");
  return c10d::ProcessGroupGloo::createDefaultDevice();
}

}  // namespace

std::unique_ptr<DataParallel> DataParallel::join(const LaunchPlace& place) {
  if (place.size <= 1) return nullptr;
  const std::string addr = env_or("MASTER_ADDR", "127.0.0.1");
  const std::string port_text = env_or("MASTER_PORT", "29500");
  long port = 0;
  if (!parse_int(port_text, port) || port < 1 || port > 65535)
    throw Error("environment MASTER_PORT='" + port_text + "': not a TCP port");
  auto g = std::make_unique<Group>();
  c10d::TCPStoreOptions so;
  so.port = static_cast<std::uint16_t>(port);
  so.isServer = place.rank == 0;
  so.numWorkers = static_cast<std::size_t>(place.size);
  so.waitWorkers = true;
  so.timeout = std::chrono::minutes(5);
  try {
    g->store = c10::make_intrusive<c10d::TCPStore>(addr, so);
    auto opts = c10d::ProcessGroupGloo::Options::create(std::chrono::minutes(30));
    opts->devices.push_back(gloo_device(addr));
    opts->threads = 1;
    g->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->store, place.rank, place.size, opts);
  } catch (const std::exception& e) {
    throw Error("data-parallel rendezvous at " + addr + ":" + port_text + " (rank " + std::to_string(place.rank) + " of " +
                std::to_string(place.size) + ") failed: " + first_line(e.what()));
  }
  return std::unique_ptr<DataParallel>(new DataParallel(place.rank, place.size, std::move(g)));
}

torch::Tensor DataParallel::all_gather(const torch::Tensor& local) {
  auto in = local.detach().contiguous();
  std::vector<at::Tensor> inputs{in};
  std::vector<std::vector<at::Tensor>> outputs(1);
  for (int r = 0; r < size_; ++r) outputs[0].push_back(torch::empty_like(in));
  group_->pg->allgather(outputs, inputs)->wait();
  return torch::cat(outputs[0], 0);
}

void DataParallel::all_reduce_sum(torch::Tensor& t) {
  std::vector<at::Tensor> ts{t};
  group_->pg->allreduce(ts)->wait();
}

void DataParallel::attach(const std::vector<torch::Tensor>& params, std::int64_t bucket_floats) {
  auto& g = *group_;
  std::lock_guard<std::mutex> lock(g.mu);
  g.params = params;
  g.bucket_of.assign(params.size(), 0);
  g.fired.assign(params.size(), 0);
  g.buckets.clear();
  g.accumulators.clear();
  std::int64_t fill = 0;
  for (std::int64_t i = static_cast<std::int64_t>(params.size()) - 1; i >= 0; --i) {
    const auto n = params[static_cast<std::size_t>(i)].numel();
    if (g.buckets.empty() || fill + n > bucket_floats) {
      g.buckets.emplace_back();
      fill = 0;
    }
    g.buckets.back().members.push_back(i);
    g.bucket_of[static_cast<std::size_t>(i)] = static_cast<int>(g.buckets.size() - 1);
    fill += n;
  }
  for (auto& b : g.buckets) b.pending = static_cast<int>(b.members.size());
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (!params[i].requires_grad()) continue;
    auto acc = torch::autograd::impl::grad_accumulator(params[i]);
    Group* gp = group_.get();
    acc->add_post_hook(std::make_unique<torch::autograd::utils::LambdaPostHook>(
        [gp, i](const torch::autograd::variable_list& outputs, const torch::autograd::variable_list&) {
          gp->gradient_ready(i);
          return outputs;
        }));
    g.accumulators.push_back(std::move(acc));  // the tensor holds its accumulator weakly
  }
}

void DataParallel::arm() {
  std::lock_guard<std::mutex> lock(group_->mu);
  group_->armed = true;
}

void DataParallel::Group::launch(std::size_t b) {
  auto& bk = buckets[b];
  std::vector<torch::Tensor> parts;
  for (auto i : bk.members) {
    const auto& p = params[static_cast<std::size_t>(i)];
    parts.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}, torch::kFloat));
  }
  bk.flat = torch::cat(parts);
  std::vector<at::Tensor> one{bk.flat};
  bk.work = pg->allreduce(one);
}

void DataParallel::Group::gradient_ready(std::size_t i) {
  std::lock_guard<std::mutex> lock(mu);
  if (!armed || fired[i]) return;
  fired[i] = 1;
  --buckets[static_cast<std::size_t>(bucket_of[i])].pending;
  while (next_launch < buckets.size() && buckets[next_launch].pending == 0) launch(next_launch++);
}

void DataParallel::average_gradients() {
  auto& g = *group_;
  std::lock_guard<std::mutex> lock(g.mu);
  while (g.next_launch < g.buckets.size()) g.launch(g.next_launch++);
  const auto P = static_cast<std::int64_t>(g.params.size());
  auto has = torch::zeros({P}, torch::kFloat);
  for (std::int64_t i = 0; i < P; ++i) has[i] = g.params[static_cast<std::size_t>(i)].grad().defined() ? 1.0f : 0.0f;
  std::vector<at::Tensor> flags{has};
  g.pg->allreduce(flags)->wait();
  const float* any = has.data_ptr<float>();
  const float inv = 1.0f / static_cast<float>(size_);
  for (auto& b : g.buckets) {
    b.work->wait();
    b.flat.mul_(inv);
    std::int64_t off = 0;
    for (auto i : b.members) {
      auto p = g.params[static_cast<std::size_t>(i)];
      const auto n = p.numel();
      if (any[i] > 0)
        p.mutable_grad() = b.flat.narrow(0, off, n).view(p.sizes()).clone();
      else
        p.mutable_grad().reset();
      off += n;
    }
    b.work.reset();
    b.flat = torch::Tensor();
    b.pending = static_cast<int>(b.members.size());
  }
  std::fill(g.fired.begin(), g.fired.end(), 0);
  g.next_launch = 0;
  g.armed = false;
}

void DataParallel::broadcast(const std::vector<torch::Tensor>& ts) {
  torch::NoGradGuard ng;
  for (const auto& t : ts) {
    auto c = t.detach().contiguous();
    std::vector<at::Tensor> one{c};
    group_->pg->broadcast(one)->wait();
    if (c.is_alias_of(t))  // Gloo wrote into t's storage by pointer: bump its version as copy_ would
      t.unsafeGetTensorImpl()->bump_version();
    else
      t.detach().copy_(c);
  }
}

void DataParallel::barrier() { group_->pg->barrier()->wait(); }

#else

struct DataParallel::Group {};

bool DataParallel::available() { return false; }

std::unique_ptr<DataParallel> DataParallel::join(const LaunchPlace& place) {
  if (place.size <= 1) return nullptr;
  throw Error("started as one of " + std::to_string(place.size) +
              " processes, but this moesim was built without c10d's Gloo backend (install libgloo-dev and rebuild)");
}
torch::Tensor DataParallel::all_gather(const torch::Tensor& local) { return local; }
void DataParallel::all_reduce_sum(torch::Tensor&) {}
void DataParallel::attach(const std::vector<torch::Tensor>&, std::int64_t) {}
void DataParallel::arm() {}
void DataParallel::average_gradients() {}
void DataParallel::broadcast(const std::vector<torch::Tensor>&) {}
void DataParallel::barrier() {}

#endif

DataParallel::DataParallel(int rank, int size, std::unique_ptr<Group> g) : rank_(rank), size_(size), group_(std::move(g)) {}
DataParallel::~DataParallel() = default;

}  // namespace moesim::torch_backend
