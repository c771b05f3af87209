#!/usr/bin/python3
"""The PyTorch routers moesim's policies are compared with, timed on one CPU thread.

    scripts/bench_torch_routers.py [--tokens T] [--experts E] [--k K] [--reps N] [--csv OUT]

Each row routes the same T x E float32 logits and then updates the router's
state from a performance value per slot, the work `bench_policies`'
route+observe rows time (moesim's RD-ESI row with preset=reference runs the same
equations):

  rdesi_gtmoe      GT-MoE's RDESIRouter (src/rd_esi/router.py, kaiqiancui/GT-MoE),
                   op for op from its given logits (its zero-filled bonus
                   tensor included): forward's selection scores
                   g + beta R - gamma L' + c sqrt(ln(N + 1) / (N_i + 1e-10)),
                   torch.topk, softmax over the k, then update_states (bincount,
                   two scatter_add_, the decayed reputation EMA, the load EMA).
                   Its forward's auxiliary balance loss is left out, as moesim's
                   route computes no loss.
  rdesi_gtmoe_aux  the same plus that loss as router.py computes it (softmax over
                   all E scores, one_hot of the choices, two means).
  topk_softmax     torch.topk on the logits and a softmax over the k: the
                   selection both routers share, with no state.

Knobs are router.py's defaults (beta = gamma = 0.1, alpha = 0.9, c = 0.1,
decay 0.99, load EMA 0.9). Logits are N(0, 1) and performances U(0, 1) from
torch's generator with seed 42. Each row is warmed up once (its output is
checked: k distinct experts a token, weights summing to 1), then timed over
--reps calls; the median call gives tokens/s. Prints the CPU model, the torch
version and the thread count, then one line per row; --csv writes the rows.
"""
import argparse
import csv
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


class GtMoeRdesiState:
    """router.py's registered buffers, with its defaults."""

    def __init__(self, experts, k):
        self.E, self.k = experts, k
        self.beta, self.gamma, self.alpha = 0.1, 0.1, 0.9
        self.c, self.decay_rate, self.load_ema_alpha = 0.1, 0.99, 0.9
        self.reputation = torch.zeros(experts)
        self.loads = torch.zeros(experts)
        self.counts = torch.zeros(experts)
        self.total = torch.tensor(0)

    def route(self, logits, with_aux):
        # forward() from its base logits, current_batch_assignments = None.
        updated_loads = self.load_ema_alpha * self.loads + (1 - self.load_ema_alpha) * self.loads
        bonus = torch.zeros_like(logits)  # router.py allocates it before it knows the bonus is on
        bonus = self.c * torch.sqrt(torch.log(self.total + 1.0) / (self.counts.unsqueeze(0) + 1e-10))
        bonus = bonus.expand_as(logits)
        scores = (logits + self.beta * self.reputation.unsqueeze(0) - self.gamma * updated_loads.unsqueeze(0)
                  + bonus)
        top_scores, top_idx = torch.topk(scores, self.k, dim=-1)
        weights = F.softmax(top_scores, dim=-1)
        aux = None
        if with_aux:
            probs = F.softmax(scores, dim=-1, dtype=torch.float32)
            gate = F.one_hot(top_idx, num_classes=self.E).sum(dim=1)
            aux = (torch.mean(gate.float(), dim=0) * torch.mean(probs, dim=0)).sum() * self.E
        return weights, top_idx, aux

    def update(self, idx, perf):
        # update_states(): counts, N, per-expert mean performance, R and L.
        flat = idx.view(-1)
        self.counts.add_(torch.bincount(flat, minlength=self.E).float())
        self.total.add_(idx.shape[0] * self.k)
        flat_perf = perf.view(-1)
        perf_sum = torch.zeros_like(self.reputation)
        batch_counts = torch.zeros_like(self.reputation)
        perf_sum.scatter_add_(0, flat, flat_perf)
        batch_counts.scatter_add_(0, flat, torch.ones_like(flat_perf))
        used = batch_counts > 0
        mean = torch.zeros_like(self.reputation)
        mean[used] = perf_sum[used] / batch_counts[used]
        self.reputation *= self.decay_rate
        self.reputation = self.alpha * mean + (1 - self.alpha) * self.reputation
        self.loads = self.load_ema_alpha * batch_counts + (1 - self.load_ema_alpha) * self.loads


def check(weights, idx, tokens, experts, k):
    """Every call's output: k distinct experts a token, weights summing to 1."""
    if tuple(idx.shape) != (tokens, k) or int(idx.min()) < 0 or int(idx.max()) >= experts:
        sys.exit("bench_torch_routers: expert indices out of shape or range")
    if k > 1 and bool((idx.sort(dim=-1).values.diff(dim=-1) == 0).any()):
        sys.exit("bench_torch_routers: a token got the same expert twice")
    if not torch.allclose(weights.sum(dim=-1), torch.ones(tokens), atol=1e-5):
        sys.exit("bench_torch_routers: routing weights do not sum to 1")


def time_row(step, reps, tokens, experts, k):
    check(*step(), tokens, experts, k)  # warm-up (allocator, kernel choice), checked
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=16384)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--csv", help="write the rows here (name,tokens,experts,k,median_s,tokens_per_s)")
    a = ap.parse_args()
    if a.tokens < 1 or a.experts < 1 or not 1 <= a.k <= a.experts or a.reps < 1:
        sys.exit("bench_torch_routers: need tokens >= 1, reps >= 1 and 1 <= k <= experts")
    if a.csv and not os.path.isdir(os.path.dirname(os.path.abspath(a.csv))):
        sys.exit(f"bench_torch_routers: --csv {a.csv}: its folder does not exist")
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(42)
    logits = torch.randn(a.tokens, a.experts, generator=gen)
    perf = torch.rand(a.tokens, a.k, generator=gen)

    def rdesi(with_aux):
        st = GtMoeRdesiState(a.experts, a.k)

        def step():
            w, idx, _ = st.route(logits, with_aux)
            st.update(idx, perf)
            return w, idx
        return step

    def topk_softmax():
        def step():
            s, idx = torch.topk(logits, a.k, dim=-1)
            return F.softmax(s, dim=-1), idx
        return step

    rows = []
    print(f"cpu: {cpu_model()} | torch {torch.__version__} | threads {torch.get_num_threads()} | "
          f"T {a.tokens}, E {a.experts}, k {a.k}, median of {a.reps} calls")
    with torch.no_grad():
        for name, step in [("rdesi_gtmoe", rdesi(False)), ("rdesi_gtmoe_aux", rdesi(True)),
                           ("topk_softmax", topk_softmax())]:
            t = time_row(step, a.reps, a.tokens, a.experts, a.k)
            rows.append((name, a.tokens, a.experts, a.k, t, a.tokens / t))
            print(f"{name:16s} {t * 1e3:9.3f} ms  {a.tokens / t / 1e6:8.3f} M tokens/s")
    if a.csv:
        # Temp file, then rename: no half-written CSV on failure.
        d = os.path.dirname(os.path.abspath(a.csv))
        fd, tmp = tempfile.mkstemp(dir=d, prefix=".bench_torch_routers.", suffix=".csv")
        try:
            with os.fdopen(fd, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["name", "tokens", "experts", "k", "median_s", "tokens_per_s"])
                w.writerows(rows)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)
            os.replace(tmp, a.csv)
        except BaseException:
            os.unlink(tmp)
            raise


if __name__ == "__main__":
    main()
