#include "torch_backend/data_parallel.hpp"

#include <cstdlib>
#include <string>

#include "common/error.hpp"
#include "common/text.hpp"

#ifdef MOESIM_HAVE_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

namespace moesim::torch_backend {

#ifdef MOESIM_HAVE_GLOO

struct DataParallel::Group {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
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

void DataParallel::average_gradients(const std::vector<torch::Tensor>& params, std::int64_t bucket_floats) {
  const auto P = static_cast<std::int64_t>(params.size());
  auto has = torch::zeros({P}, torch::kFloat);
  for (std::int64_t i = 0; i < P; ++i) has[i] = params[static_cast<std::size_t>(i)].grad().defined() ? 1.0f : 0.0f;
  // Buckets in reverse order, the order backward finishes the gradients in.
  struct Bucket {
    std::vector<std::int64_t> members;
    torch::Tensor flat;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::vector<Bucket> buckets;
  std::int64_t fill = 0;
  for (std::int64_t i = P - 1; i >= 0; --i) {
    const auto n = params[static_cast<std::size_t>(i)].numel();
    if (buckets.empty() || fill + n > bucket_floats) {
      buckets.emplace_back();
      fill = 0;
    }
    buckets.back().members.push_back(i);
    fill += n;
  }
  std::vector<at::Tensor> flags{has};
  auto flags_work = group_->pg->allreduce(flags);
  for (auto& b : buckets) {
    std::vector<torch::Tensor> parts;
    for (auto i : b.members) {
      const auto& p = params[static_cast<std::size_t>(i)];
      parts.push_back(p.grad().defined() ? p.grad().reshape({-1}) : torch::zeros({p.numel()}, torch::kFloat));
    }
    b.flat = torch::cat(parts);
    std::vector<at::Tensor> one{b.flat};
    b.work = group_->pg->allreduce(one);
  }
  flags_work->wait();
  const float* any = has.data_ptr<float>();
  const float inv = 1.0f / static_cast<float>(size_);
  for (auto& b : buckets) {
    b.work->wait();
    b.flat.mul_(inv);
    std::int64_t off = 0;
    for (auto i : b.members) {
      auto p = params[static_cast<std::size_t>(i)];
      const auto n = p.numel();
      if (any[i] > 0)
        p.mutable_grad() = b.flat.narrow(0, off, n).view(p.sizes()).clone();
      else
        p.mutable_grad().reset();
      off += n;
    }
  }
}

void DataParallel::broadcast(const std::vector<torch::Tensor>& ts) {
  torch::NoGradGuard ng;
  for (const auto& t : ts) {
    auto c = t.detach().contiguous();
    std::vector<at::Tensor> one{c};
    group_->pg->broadcast(one)->wait();
    if (!c.is_same(t)) t.detach().copy_(c);
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
void DataParallel::average_gradients(const std::vector<torch::Tensor>&, std::int64_t) {}
void DataParallel::broadcast(const std::vector<torch::Tensor>&) {}
void DataParallel::barrier() {}

#endif

DataParallel::DataParallel(int rank, int size, std::unique_ptr<Group> g) : rank_(rank), size_(size), group_(std::move(g)) {}
DataParallel::~DataParallel() = default;

}  // namespace moesim::torch_backend
