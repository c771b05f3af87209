#!/usr/bin/python3
"""Where a training step's time goes, by category, from `moesim bench train --profile` traces.

    scripts/profile_breakdown.py TRACE.json [TRACE2.json ...] [--labels a,b] [--tokens N] [--csv OUT]

Reads Chrome traces (LibTorch's RecordProfile format: complete "X" events with
ts/dur in microseconds, one list per thread), nests each thread's events by
their intervals and gives every event's self time (its duration minus its
children's) to one category:

1. GEMM: the event or an enclosing one is a matrix product (moesim::gemm,
   aten::mm/addmm/bmm/matmul/linear); operand casts inside a GEMM scope count
   as GEMM.
2. A strong scope encloses it: moesim::optimizer, moesim::route (the policy),
   moesim::attention, moesim::head (the loss head), the token embedding and
   its backward node: everything inside that is not a GEMM belongs to it.
3. The innermost event with a category of its own decides: elementwise ops and
   the fused RMSNorm/SwiGLU kernels and their backward nodes (norms &
   elementwise), index_select/index_add and their backward nodes (MoE
   dispatch/combine), dtype casts and copies (casts & copies), backward nodes
   of attention's softmax and rotary (attention) and of the loss head (head).
4. A weak scope encloses it: moesim::moe (dispatch/combine), moesim::ffn
   (norms & elementwise).
5. Otherwise "framework & other": the autograd engine's bookkeeping, views,
   zero fills, gradient accumulation.

Backward nodes run outside the forward scopes, so rule 3 places them by name.
Totals are per step: the step count is the number of moesim::optimizer events.
Prints a Markdown table (one column per trace, ms per step and share, and the
ratio first/last when there are two or more); --csv writes the same numbers
(category, label, ms_per_step, share) for pandas.
"""
import argparse
import csv
import json
import os
import sys

CATEGORIES = ["GEMM", "attention", "MoE dispatch/combine", "routing", "norms & elementwise",
              "casts & copies", "embedding", "head (loss)", "optimizer", "framework & other"]

GEMM_NAMES = {"moesim::gemm", "aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear",
              "aten::baddbmm", "aten::mkldnn_linear", "aten::_mkldnn_matmul"}
STRONG_SCOPES = {"moesim::optimizer": "optimizer", "moesim::route": "routing",
                 "moesim::attention": "attention", "moesim::head": "head (loss)",
                 "aten::embedding": "embedding", "EmbeddingBackward0": "embedding"}
WEAK_SCOPES = {"moesim::moe": "MoE dispatch/combine", "moesim::ffn": "norms & elementwise"}

ELEMENTWISE_OPS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "neg", "pow", "rsqrt", "sqrt",
                   "mean", "silu", "silu_backward", "sigmoid", "exp", "addcmul_", "addcdiv_", "lerp_", "where",
                   "native_layer_norm", "rms_norm", "cat", "stack", "chunk", "split"}
DISPATCH_OPS = {"index_select", "index_add_", "index_add", "index_copy_", "gather", "scatter_add_",
                "index_select_backward", "index_put_", "scatter_"}
CAST_OPS = {"to", "_to_copy", "copy_", "contiguous", "clone"}
# Backward node and fused-kernel names (LibTorch's CppNode<...Fn> and NameBackward0).
NODE_RULES = [("RmsNorm", "norms & elementwise"), ("SiluMul", "norms & elementwise"), ("Swiglu", "norms & elementwise"),
              ("moesim::rmsnorm", "norms & elementwise"), ("moesim::silu_mul", "norms & elementwise"),
              ("CausalSoftmax", "attention"), ("QkvRope", "attention"), ("SoftmaxBackward", "attention"),
              ("LinearCrossEntropy", "head (loss)"), ("LogSoftmaxBackward", "head (loss)"),
              ("NllLoss", "head (loss)"), ("IndexSelectBackward", "MoE dispatch/combine"),
              ("IndexAddBackward", "MoE dispatch/combine"), ("ToCopyBackward", "casts & copies")]
ELEMENTWISE_NODES = ("MulBackward", "AddBackward", "SubBackward", "DivBackward", "PowBackward", "RsqrtBackward",
                     "MeanBackward", "SiluBackward", "SigmoidBackward", "NegBackward", "CatBackward")


def own_category(name):
    """The category an event's name gives it by itself (rule 3), or None."""
    for key, cat in NODE_RULES:
        if key in name:
            return cat
    if any(key in name for key in ELEMENTWISE_NODES):
        return "norms & elementwise"
    if name.startswith("aten::"):
        op = name[len("aten::"):]
        if op in ELEMENTWISE_OPS:
            return "norms & elementwise"
        if op in DISPATCH_OPS:
            return "MoE dispatch/combine"
        if op in CAST_OPS:
            return "casts & copies"
    return None


def category(chain):
    """The category of the self time of chain[-1], chain being its enclosing events outermost first."""
    if any(n in GEMM_NAMES for n in chain):
        return "GEMM"
    for n in chain:
        if n in STRONG_SCOPES:
            return STRONG_SCOPES[n]
    for n in reversed(chain):
        cat = own_category(n)
        if cat is not None:
            return cat
    for n in reversed(chain):
        if n in WEAK_SCOPES:
            return WEAK_SCOPES[n]
    return "framework & other"


def self_times(events):
    """Yields (chain of names outermost first, self time in us) for each complete event, per thread."""
    by_thread = {}
    for e in events:
        if e.get("ph") == "X":
            by_thread.setdefault((e.get("pid"), e.get("tid")), []).append(e)
    for evs in by_thread.values():
        # Parents first: earlier start, and the longer of two that start together.
        evs.sort(key=lambda e: (float(e["ts"]), -float(e["dur"])))
        stack = []  # [name, end, duration, children's total]

        def close(item, chain):
            return [n for n, _, _, _ in chain] + [item[0]], item[2] - item[3]

        for e in evs:
            ts, dur = float(e["ts"]), float(e["dur"])
            while stack and ts >= stack[-1][1]:
                item = stack.pop()
                yield close(item, stack)
            if stack:
                stack[-1][3] += dur
            stack.append([e["name"], ts + dur, dur, 0.0])
        while stack:
            item = stack.pop()
            yield close(item, stack)


def breakdown(path):
    """({category: ms per step}, steps) of one trace file."""
    try:
        with open(path) as f:
            events = json.load(f)
    except (OSError, ValueError) as err:
        sys.exit(f"{path}: cannot read a Chrome trace: {err}")
    if isinstance(events, dict):
        events = events.get("traceEvents", [])
    steps = sum(1 for e in events if e.get("name") == "moesim::optimizer")
    if steps == 0:
        sys.exit(f"{path}: no moesim::optimizer event; is it a 'moesim bench train --profile' trace?")
    totals = dict.fromkeys(CATEGORIES, 0.0)
    for chain, us in self_times(events):
        totals[category(chain)] += us
    return {c: v / 1000.0 / steps for c, v in totals.items()}, steps


def table(labels, results, tokens):
    cols = " | ".join(f"{l} ms/step | share" for l in labels)
    lines = [f"| category | {cols} |" + (" first/last |" if len(labels) > 1 else ""),
             "|---|" + "---:|---:|" * len(labels) + ("---:|" if len(labels) > 1 else "")]

    def row(name, values):
        sums = [sum(r.values()) for r in results]
        cells = " | ".join(f"{v:.1f} | {100.0 * v / s:.1f} %" for v, s in zip(values, sums))
        ratio = f" {values[0] / values[-1]:.2f}× |" if len(values) > 1 and values[-1] > 0 else (
            " – |" if len(values) > 1 else "")
        return f"| {name} | {cells} |" + ratio

    for c in CATEGORIES:
        lines.append(row(c, [r[c] for r in results]))
    lines.append(row("**total**", [sum(r.values()) for r in results]))
    lines.append(row("total outside GEMM", [sum(r.values()) - r["GEMM"] for r in results]))
    if tokens:
        lines.append("")
        lines.append("per token outside GEMM: " + ", ".join(
            f"{l} {1000.0 * (sum(r.values()) - r['GEMM']) / tokens:.1f} us" for l, r in zip(labels, results)))
    return "\n".join(lines)


def write_csv(path, labels, results):
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["category", "label", "ms_per_step", "share"])
        for l, r in zip(labels, results):
            s = sum(r.values())
            for c in CATEGORIES:
                w.writerow([c, l, f"{r[c]:.4f}", f"{r[c] / s:.6f}"])
    os.replace(tmp, path)


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("traces", nargs="+", help="Chrome trace JSON files from moesim bench train --profile")
    ap.add_argument("--labels", help="comma-separated column labels (default: the file names)")
    ap.add_argument("--tokens", type=int, default=0, help="tokens per step, for the per-token line")
    ap.add_argument("--csv", help="also write the numbers as CSV here")
    args = ap.parse_args(argv)
    labels = args.labels.split(",") if args.labels else [os.path.basename(t) for t in args.traces]
    if len(labels) != len(args.traces):
        sys.exit(f"--labels: {len(labels)} labels for {len(args.traces)} traces")
    results, steps = zip(*(breakdown(t) for t in args.traces))
    print(f"steps per trace: {', '.join(str(s) for s in steps)}")
    print(table(labels, results, args.tokens))
    if args.csv:
        write_csv(args.csv, labels, results)


if __name__ == "__main__":
    main(sys.argv[1:])
