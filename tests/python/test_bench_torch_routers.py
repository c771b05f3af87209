#!/usr/bin/python3
"""scripts/bench_torch_routers.py at a small size: it runs, checks its routers'
outputs, writes one CSV row per router with a positive rate, and refuses bad
sizes and a --csv folder that does not exist with one line and a non-zero exit.

    test_bench_torch_routers.py PROJECT_DIR
"""
import csv
import os
import subprocess
import sys
import tempfile


def main():
    script = os.path.join(sys.argv[1], "scripts", "bench_torch_routers.py")
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "rows.csv")
        r = subprocess.run(["/usr/bin/python3", script, "--tokens", "300", "--experts", "16", "--k", "3",
                            "--reps", "2", "--csv", out], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "threads 1" in r.stdout, r.stdout
        with open(out) as f:
            rows = list(csv.DictReader(f))
        assert [x["name"] for x in rows] == ["rdesi_gtmoe", "rdesi_gtmoe_aux", "topk_softmax"], rows
        for x in rows:
            assert (x["tokens"], x["experts"], x["k"]) == ("300", "16", "3"), x
            assert float(x["tokens_per_s"]) > 0 and float(x["median_s"]) > 0, x
        assert [n for n in os.listdir(d) if n != "rows.csv"] == [], os.listdir(d)  # no temp file left
        bad = subprocess.run(["/usr/bin/python3", script, "--experts", "4", "--k", "5"], capture_output=True,
                             text=True)
        assert bad.returncode != 0
        assert bad.stderr.strip().count("\n") == 0 and "k <= experts" in bad.stderr, bad.stderr
        nodir = subprocess.run(["/usr/bin/python3", script, "--tokens", "10", "--reps", "1", "--csv",
                                os.path.join(d, "missing", "rows.csv")], capture_output=True, text=True)
        assert nodir.returncode != 0
        assert nodir.stderr.strip().count("\n") == 0 and "folder does not exist" in nodir.stderr, nodir.stderr
    print("bench_torch_routers: ok")


if __name__ == "__main__":
    main()
