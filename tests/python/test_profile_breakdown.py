"""scripts/profile_breakdown.py on a hand-built trace whose per-category self times are worked out below.

usage: test_profile_breakdown.py SOURCE_DIR
"""
import csv
import json
import os
import subprocess
import sys
import tempfile

SCRIPT = os.path.join(sys.argv[1], "scripts", "profile_breakdown.py")
RMS_NODE = "torch::autograd::CppNode<moesim::torch_backend::(anonymous namespace)::RmsNormFn>"


def ev(name, ts, dur, tid=1):
    return {"name": name, "ph": "X", "ts": ts, "dur": dur, "tid": tid, "pid": "CPU Functions", "args": {}}


# (event, microseconds it adds to its category)
EVENTS = [
    ev("moesim::optimizer", 0, 100), ev("aten::mul_", 10, 20),   # optimizer 80 + 20: a strong scope wins
    ev("moesim::gemm", 200, 60), ev("aten::copy_", 210, 10),     # GEMM 50 + 10: a cast inside a GEMM is GEMM
    ev("moesim::moe", 300, 100),                                 # dispatch: 100 - 20 - 10 - 10 - 30 = 30
    ev("aten::index_select", 310, 20),                           # dispatch 20
    ev("aten::silu", 330, 10),                                   # elementwise 10 (innermost op before weak scope)
    ev("moesim::route", 340, 10),                                # routing 10
    ev("moesim::gemm", 350, 30),                                 # GEMM 30
    ev("autograd::engine::evaluate_function: " + RMS_NODE, 500, 40), ev(RMS_NODE, 501, 38),  # elementwise 40
    ev("aten::empty", 600, 5),                                   # framework 5
    ev("aten::add", 0, 50, tid=2),                               # elementwise 50: another thread, not nested
    ev("moesim::optimizer", 700, 10),                            # optimizer 10; second step
    ev("aten::_softmax", 800, 20), ev("moesim::attention", 800, 50),  # attention 50: same start, longer is parent
    ev("aten::embedding", 900, 8), ev("aten::index_select", 901, 6),  # embedding 8: its gather is not dispatch
]
EXPECTED_US = {"optimizer": 110, "GEMM": 90, "MoE dispatch/combine": 50, "norms & elementwise": 100,
               "routing": 10, "framework & other": 5, "attention": 50, "embedding": 8}
STEPS = 2


def run(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True)


def main():
    with tempfile.TemporaryDirectory() as d:
        trace = os.path.join(d, "t.json")
        with open(trace, "w") as f:
            json.dump(EVENTS, f)
        out = os.path.join(d, "b.csv")
        r = run(trace, trace, "--labels", "a,b", "--csv", out)
        assert r.returncode == 0, r.stderr
        assert "steps per trace: 2, 2" in r.stdout, r.stdout
        with open(out) as f:
            rows = list(csv.DictReader(f))
        total = sum(EXPECTED_US.values())
        for row in rows:
            want = EXPECTED_US.get(row["category"], 0) / 1000.0 / STEPS
            assert abs(float(row["ms_per_step"]) - want) < 1e-9, (row, want)
            assert abs(float(row["share"]) - EXPECTED_US.get(row["category"], 0) / total) < 1e-6, row
        assert {r["label"] for r in rows} == {"a", "b"}
        assert "| **total** | 0.2 |" in r.stdout and "1.00× |" in r.stdout, r.stdout

        # Bad input: a clear one-line error naming the file, nothing written.
        bad = os.path.join(d, "bad.json")
        with open(bad, "w") as f:
            f.write("[{")
        r = run(bad, "--csv", os.path.join(d, "x.csv"))
        assert r.returncode != 0 and bad in r.stderr, r.stderr
        assert not os.path.exists(os.path.join(d, "x.csv"))
        no_steps = os.path.join(d, "nosteps.json")
        with open(no_steps, "w") as f:
            json.dump([ev("aten::add", 0, 1)], f)
        r = run(no_steps)
        assert r.returncode != 0 and "no moesim::optimizer event" in r.stderr, r.stderr
    print("profile_breakdown: ok")


if __name__ == "__main__":
    main()
