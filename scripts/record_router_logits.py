"""Record the router logits of any PyTorch MoE model as moesim replay traces.

Forward hooks on the gate modules (the nn.Linear that maps hidden states to one
logit per expert: Mixtral `layer.block_sparse_moe.gate`, OLMoE and Qwen-MoE
`layer.mlp.gate`) collect every forward pass's logits; save() writes, per gate,
OUT/layer<i>.npy of shape (steps, tokens, E) float32, and OUT/tokens.npy of shape
(steps, tokens) int64 when token ids were given. Replay one layer with

    moesim sweep SCENARIO stream.kind=replay stream.trace=OUT/layer0.npy \
        stream.trace_tokens=OUT/tokens.npy

Every step must route the same number of tokens (same batch shape).
"""
import os

import numpy as np


class RouterRecorder:
    def __init__(self, gates):
        self.logits = [[] for _ in gates]
        self.tokens = []
        self.hooks = [g.register_forward_hook(self._hook(i)) for i, g in enumerate(gates)]

    def _hook(self, i):
        def hook(module, inputs, output):
            z = output[0] if isinstance(output, tuple) else output
            self.logits[i].append(z.detach().float().reshape(-1, z.shape[-1]).cpu().numpy())
        return hook

    def record_tokens(self, input_ids):
        self.tokens.append(input_ids.detach().reshape(-1).cpu().numpy().astype(np.int64))

    def save(self, out):
        os.makedirs(out, exist_ok=True)
        for i, steps in enumerate(self.logits):
            np.save(os.path.join(out, f"layer{i}.npy"), np.stack(steps).astype(np.float32))
        if self.tokens:
            np.save(os.path.join(out, "tokens.npy"), np.stack(self.tokens))

    def close(self):
        for h in self.hooks:
            h.remove()
