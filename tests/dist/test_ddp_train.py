#!/usr/bin/env python3
"""moesim train data-parallel on c10d/Gloo, two local processes over loopback,
on a C4-shaped corpus this test writes itself:

1. a 2-process run (`--nproc 2`) gives the loss curve of a 1-process run of the
   same global batch up to floating-point reduction order (relative 1e-5 on every
   loss, aux loss, gradient norm and validation loss), the same per-expert loads
   (the global batch's routing; at most 2 slots moved per step by a rounding
   flip) and the same policy state columns (relative 1e-4), for loss_free
   (bias update from the global counts), rdesi (reputation from the global
   performance), noisy_topk with capacity (noise and capacity over the global
   batch) and rdesi with two micro-batches per step;
2. every rank holds the same parameters, policy states and routing streams: the
   trainer compares their digests over the ranks at every checkpoint and at the
   end and fails otherwise; its log line says so;
3. a checkpoint written by 2 processes resumes on 1 and one written by 1 resumes
   on 2, continuing the uninterrupted curve;
4. a global batch that does not divide by the process count is refused;
5. `mpirun -np 2 moesim train` (OpenMPI's variables, rendezvous at MASTER_ADDR and
   MASTER_PORT) gives the same curve as --nproc 2.

usage: test_ddp_train.py MOESIM SOURCE_DIR [MPIRUN]
"""
import csv
import gzip
import json
import os
import pathlib
import random
import shutil
import socket
import subprocess
import sys
import tempfile

MOESIM, SRC = sys.argv[1], pathlib.Path(sys.argv[2])
MPIRUN = sys.argv[3] if len(sys.argv) > 3 else ""
CONFIG = str(SRC / "torch_backend" / "configs" / "tiny.yaml")
WORDS = ("the cat sat on a mat and dog ran to house with red door big small tree in garden "
         "bird sang every morning near river").split()


def write_corpus(d):
    """C4's layout: c4-train.*.json.gz and c4-validation.*.json.gz, one JSON document a line."""
    d.mkdir()
    rng = random.Random(5)

    def doc():
        return " ".join(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 9))).capitalize() + "."
                        for _ in range(rng.randint(3, 8)))
    for name, n in (("c4-train.00000-of-00001.json.gz", 240), ("c4-validation.00000-of-00001.json.gz", 30)):
        with gzip.open(d / name, "wt") as f:
            for _ in range(n):
                f.write(json.dumps({"text": doc(), "url": "x", "timestamp": "t"}) + "\n")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def train(out, extra, nproc=1, mpirun=False):
    cmd = [MOESIM, "train", "--config", CONFIG, f"train.out_dir={out}"] + extra
    env = dict(os.environ)
    if mpirun:
        env.update({"OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
                    "OMPI_MCA_rmaps_base_oversubscribe": "1", "OMPI_MCA_btl": "self,tcp",
                    "OMPI_MCA_btl_tcp_if_include": "lo", "OMPI_MCA_oob_tcp_if_include": "lo",
                    "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())})
        cmd = [MPIRUN, "-np", str(nproc), "-x", "MASTER_ADDR", "-x", "MASTER_PORT"] + cmd
    elif nproc > 1:
        cmd += ["--nproc", str(nproc)]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr[-3000:]}"
    return r.stderr


def log(out):
    with open(pathlib.Path(out) / "train_log.csv") as f:
        return list(csv.DictReader(f))


def close(x, y, rel):
    return abs(x - y) <= rel * max(abs(x), abs(y), 1e-6)


def same_curve(a, b, what, state_rel=1e-4):
    ra, rb = log(a), log(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb], f"{what}: different steps"
    for x, y in zip(ra, rb):
        for k in x:
            if k in ("tokens_per_s",):
                continue
            u, v = float(x[k]), float(y[k])
            if "_load" in k:
                assert abs(u - v) <= 2, f"{what}: step {x['step']} {k}: {u} vs {v}"
            elif k in ("step", "tokens") or k.endswith(("_routed", "_dropped", "_dropped_tokens", "_routed_tokens")):
                assert abs(u - v) <= 2, f"{what}: step {x['step']} {k}: {u} vs {v}"
            elif k.endswith(("_mean", "_min", "_max")):
                assert close(u, v, state_rel) or abs(u - v) < 1e-6, f"{what}: step {x['step']} {k}: {u} vs {v}"
            elif k in ("loss", "ce", "aux_lb", "aux_z", "aux_seq", "aux_entropy", "grad_norm", "lr"):
                assert close(u, v, 1e-5), f"{what}: step {x['step']} {k}: {u} vs {v}"
    va = [float(r["val_loss"]) for r in csv.DictReader(open(pathlib.Path(a) / "eval_log.csv"))]
    vb = [float(r["val_loss"]) for r in csv.DictReader(open(pathlib.Path(b) / "eval_log.csv"))]
    assert len(va) == len(vb) and all(close(u, v, 1e-5) for u, v in zip(va, vb)), f"{what}: val {va} vs {vb}"
    print(f"ok: {what}: {len(ra)} steps agree")


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="moesim_ddp_"))
    try:
        write_corpus(tmp / "c4")
        base = [f"data.dir={tmp / 'c4'}", f"data.cache_dir={tmp / 'cache'}", "train.steps=8", "train.threads=1",
                "train.eval_every=4", "train.ckpt_every=4", "train.log_every=100", "tokenizer.vocab=200"]
        policies = {
            "loss_free": ["policy.name=loss_free"],
            "rdesi": ["policy.name=rdesi"],
            "noisy_topk": ["policy.name=noisy_topk", "policy.knobs.capacity_factor=1.0"],
            # Two micro-batches: only the last backward starts the all-reduce.
            "rdesi_accum2": ["policy.name=rdesi", "train.accum=2", "train.batch=2"],
        }
        for name, knobs in policies.items():
            one, two = tmp / f"{name}_1", tmp / f"{name}_2"
            train(one, base + knobs)
            err = train(two, base + knobs, nproc=2)
            assert "identical on 2 ranks" in err, f"{name}: no replica check in the log:\n{err[-2000:]}"
            same_curve(one, two, f"{name}: 2 processes vs 1 of the same global batch")

        # A global batch the processes cannot share is refused, naming the key.
        r = subprocess.run([MOESIM, "train", "--config", CONFIG, f"train.out_dir={tmp / 'bad'}", "--nproc", "3"] + base,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode != 0 and "train.batch=4 (the global batch) is not divisible by the 3" in r.stderr, r.stderr[-2000:]
        print("ok: train.batch=4 on 3 processes is refused")

        # Resume across process counts: 4 steps on 2 then 4 more on 1, and the reverse.
        knobs = policies["loss_free"]
        half = base + ["train.exit_interval=4"]
        for first, second in ((2, 1), (1, 2)):
            out = tmp / f"resume_{first}_{second}"
            train(out, half + knobs, nproc=first)
            train(out, base + knobs, nproc=second)
            same_curve(tmp / "loss_free_1", out, f"resume: 4 steps on {first} process(es), 4 on {second}")

        if MPIRUN:
            out = tmp / "mpirun"
            err = train(out, base + knobs, nproc=2, mpirun=True)
            assert "identical on 2 ranks" in err, err[-2000:]
            same_curve(tmp / "loss_free_1", out, "mpirun -np 2 vs 1 process")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
