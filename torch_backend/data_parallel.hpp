#pragma once
// Data-parallel training on LibTorch's c10d with the Gloo backend. N processes
// (launched by mpirun, Slurm/PMI or `moesim train --nproc N`; common/launch.hpp)
// each take their own shard of every global batch: rank r trains rows
// [r*B/N, (r+1)*B/N) of the batch the one-process sampler draws, so the data
// order does not depend on N.
//   rendezvous  c10d::TCPStore at MASTER_ADDR:MASTER_PORT (torchrun's variables;
//               default 127.0.0.1:29500), hosted by rank 0; Gloo's device on
//               GLOO_SOCKET_IFNAME if set, else the loopback for a local master,
//               else the hostname's interface.
//   gradients   averaged over ranks in buckets of at most `bucket_floats` floats,
//               each bucket's all-reduce launched during backward as soon as its
//               gradients are final (attach). A parameter no rank gave a gradient
//               (an expert no token reached) keeps none, as in one process, so
//               AdamW skips it there too.
//   routing     every rank's router logits (and token ids; the gate input where the
//               policy's own jitter reads it) are all-gathered, so each rank routes
//               the whole global batch with the same policy state and random stream
//               and observes the whole batch's performance (moe_layer.hpp): policy
//               states stay identical on every rank and equal a one-process run's
//               of the same global batch, capacity and noise included.
// Built without Gloo (libgloo-dev absent), join() refuses a launch of N > 1.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "common/launch.hpp"

namespace moesim::torch_backend {

class DataParallel {
 public:
  // The process group of a launch of N > 1 processes, or nullptr for one process.
  static std::unique_ptr<DataParallel> join(const LaunchPlace& place);
  // Whether this build has c10d's Gloo backend.
  static bool available();
  ~DataParallel();

  int rank() const { return rank_; }
  int size() const { return size_; }

  // The rows of every rank's `local` (same shape on every rank), concatenated in rank order.
  torch::Tensor all_gather(const torch::Tensor& local);
  // Sum over ranks, in place.
  void all_reduce_sum(torch::Tensor& t);
  // Gradient averaging for `params` (the optimizer's, fixed for the run), in buckets
  // of at most bucket_floats floats in reverse order (the order backward finishes
  // them in). A post-hook on each parameter's gradient accumulator (what c10d's
  // Reducer uses) launches a bucket's all-reduce once backward has finished all of
  // its gradients, buckets strictly in order, so every rank issues the same sequence
  // of collectives and communication overlaps the rest of backward.
  void attach(const std::vector<torch::Tensor>& params, std::int64_t bucket_floats = std::int64_t{1} << 22);
  // The next backward is the step's last (earlier micro-batches only accumulate): its hooks launch buckets.
  void arm();
  // Launches the buckets backward did not complete (a gradient this rank does not
  // have counts as zero), waits for all, and sets each gradient to the mean over
  // ranks; a gradient no rank has stays undefined, as in one process.
  void average_gradients();
  // Rank 0's values into every rank's tensors (in place, no autograd).
  void broadcast(const std::vector<torch::Tensor>& ts);
  void barrier();

 private:
  struct Group;
  DataParallel(int rank, int size, std::unique_ptr<Group> g);
  int rank_ = 0, size_ = 1;
  std::unique_ptr<Group> group_;
};

}  // namespace moesim::torch_backend
