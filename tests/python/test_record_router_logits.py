"""The README's forward-hook recorder on a small random PyTorch MoE, replayed by moesim.

usage: test_record_router_logits.py MOESIM_BINARY SOURCE_DIR
Checks that the recorded arrays are the gate's logits, and that moesim's replay of
them through top-k gives the per-step loads numpy computes from the same logits.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
import pandas as pd
import torch

moesim, source = sys.argv[1], sys.argv[2]
sys.path.insert(0, os.path.join(source, "scripts"))
from record_router_logits import RouterRecorder  # noqa: E402

E, D, K = 8, 16, 2


class Moe(torch.nn.Module):  # Mixtral-style: gate -> top-k -> experts
    def __init__(self):
        super().__init__()
        self.gate = torch.nn.Linear(D, E, bias=False)
        self.experts = torch.nn.ModuleList(torch.nn.Linear(D, D) for _ in range(E))

    def forward(self, x):
        flat = x.reshape(-1, D)
        w, idx = torch.topk(torch.softmax(self.gate(flat), -1), K, dim=-1)
        out = torch.zeros_like(flat)
        for j in range(K):
            for e in range(E):
                m = idx[:, j] == e
                out[m] += w[m, j, None] * self.experts[e](flat[m])
        return x + out.reshape(x.shape)


class Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = torch.nn.Embedding(100, D)
        self.layers = torch.nn.ModuleList([Moe(), Moe()])

    def forward(self, ids):
        h = self.emb(ids)
        for layer in self.layers:
            h = layer(h)
        return h


torch.manual_seed(0)
model = Model()
rec = RouterRecorder([layer.gate for layer in model.layers])
batches = [torch.randint(0, 100, (2, 24)) for _ in range(5)]
with torch.no_grad():
    for ids in batches:
        rec.record_tokens(ids)
        model(ids)
rec.close()
with tempfile.TemporaryDirectory() as out:
    rec.save(out)
    z = np.load(os.path.join(out, "layer1.npy"))
    assert z.shape == (5, 48, E) and z.dtype == np.float32, z.shape
    # The recorded logits are the gate's: recompute layer 0's on the first batch.
    with torch.no_grad():
        z0 = model.layers[0].gate(model.emb(batches[0]).reshape(-1, D)).numpy()
    assert np.allclose(np.load(os.path.join(out, "layer0.npy"))[0], z0, atol=1e-6)
    assert np.array_equal(np.load(os.path.join(out, "tokens.npy"))[3], batches[3].reshape(-1).numpy())

    scenario = os.path.join(out, "replay.yaml")
    with open(scenario, "w") as f:
        f.write("name: hook\nstream: {kind: replay}\nlog_every: 1\nmetrics: {window: 2, dead_window: 2}\n"
                "policy: {name: topk, knobs: {dropless: true}}\n")
    run = subprocess.run([moesim, "run", scenario, "stream.trace=" + os.path.join(out, "layer1.npy"),
                          "stream.trace_tokens=" + os.path.join(out, "tokens.npy"), "--out", os.path.join(out, "r"),
                          "--quiet"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    runs = os.listdir(os.path.join(out, "r", "runs"))
    ts = pd.read_csv(os.path.join(out, "r", "runs", runs[0], "timeseries.csv"))
    assert len(ts) == 5
    # numpy's top-2 of each step (ties cannot occur with random float logits).
    top = np.argsort(-z, axis=-1, kind="stable")[:, :, :K]
    for s in range(5):
        loads = np.bincount(top[s].reshape(-1), minlength=E).astype(float)
        maxvio = (loads.max() - loads.mean()) / loads.mean()
        shares = loads / loads.sum()
        assert abs(ts["maxvio"][s] - maxvio) < 1e-7, (s, ts["maxvio"][s], maxvio)
        assert np.allclose(ts[[f"share_{e}" for e in range(E)]].iloc[s].to_numpy(), shares, atol=1e-8)
print("hook recorder: 2 layers x 5 steps recorded, replayed through top-k, loads equal numpy's")
