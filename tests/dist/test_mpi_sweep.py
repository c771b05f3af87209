#!/usr/bin/env python3
"""moesim sweep under mpirun, two or three local processes over loopback:

1. byte identity: the output folder of `mpirun -np 2 moesim sweep` (1 thread each)
   and of `mpirun -np 3` (2 threads each) equals a one-process, one-thread sweep's,
   file for file, byte for byte;
2. a rank killed mid-sweep loses only its unfinished runs: the job stops with runs
   finished and runs missing, the same command resumes (keeping the finished runs)
   and the folder again equals the one-process sweep's.

usage: test_mpi_sweep.py MOESIM MPIRUN SOURCE_DIR
"""
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

MOESIM, MPIRUN, SRC = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
SCENARIO = str(SRC / "scenarios" / "matthew.yaml")

ENV = dict(os.environ)
ENV.update({
    # Root in containers and CI; two or three ranks on a 2-core machine; loopback only.
    "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1",
    "OMPI_MCA_rmaps_base_oversubscribe": "1",
    "OMPI_MCA_btl": "self,tcp", "OMPI_MCA_btl_tcp_if_include": "lo", "OMPI_MCA_oob_tcp_if_include": "lo",
})


def sweep_args(out, extra, quiet=True):
    return [MOESIM, "sweep", SCENARIO, "--out", str(out)] + (["--quiet"] if quiet else []) + extra


def folder_bytes(root):
    """Every file under root (but the lock) as {relative path: bytes}."""
    files = {}
    for p in sorted(pathlib.Path(root).rglob("*")):
        if p.is_file() and p.name != ".lock":
            files[str(p.relative_to(root))] = p.read_bytes()
    return files


def same_folders(a, b, what):
    fa, fb = folder_bytes(a), folder_bytes(b)
    assert sorted(fa) == sorted(fb), f"{what}: file lists differ: {sorted(set(fa) ^ set(fb))[:5]}"
    differ = [k for k in fa if fa[k] != fb[k]]
    assert not differ, f"{what}: files differ: {differ[:5]}"
    print(f"ok: {what}: {len(fa)} files byte-identical")


def run(cmd, **kw):
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


def main():
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="moesim_mpi_"))
    try:
        small = ["steps=60", "seeds=[1,2]", "metrics.window=20"]
        run(sweep_args(tmp / "one", small + ["--threads", "1"]))
        run([MPIRUN, "-np", "2"] + sweep_args(tmp / "np2", small + ["--threads", "1"]))
        same_folders(tmp / "one", tmp / "np2", "mpirun -np 2 x 1 thread vs 1 process")
        run([MPIRUN, "-np", "3"] + sweep_args(tmp / "np3", small + ["--threads", "2"]))
        same_folders(tmp / "one", tmp / "np3", "mpirun -np 3 x 2 threads vs 1 process")

        # Long enough runs that the sweep is surely mid-way when a rank is killed.
        big = ["steps=400", "seeds=[1]", "metrics.window=100"]
        run(sweep_args(tmp / "ref", big + ["--threads", "2"]))
        out = tmp / "killed"
        cmd = [MPIRUN, "-np", "2"] + sweep_args(out, big + ["--threads", "1"])
        job = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while len(list(out.glob("runs/*/metrics.csv"))) < 2:
            assert job.poll() is None, "the sweep ended before a rank could be killed"
            assert time.time() < deadline, "no run finished within 120 s"
            time.sleep(0.05)
        # The rank-1 process: the moesim whose parent is mpirun's daemon and whose
        # environment says rank 1.
        victim = None
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                env = pathlib.Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"moesim") and str(out).encode() in argv and b"OMPI_COMM_WORLD_RANK=1" in env:
                victim = int(pid)
        assert victim is not None, "rank 1 not found"
        os.kill(victim, signal.SIGKILL)
        job.communicate(timeout=120)
        assert job.returncode != 0, "the job with a killed rank exited 0"
        done = len(list(out.glob("runs/*/metrics.csv")))
        assert not (out / "runs.csv").exists(), "runs.csv written although a rank died"
        total = len(list((tmp / "ref").glob("runs/*/metrics.csv")))
        assert 0 < done < total, f"{done} of {total} runs finished: the kill did not land mid-sweep"
        print(f"ok: rank 1 killed with {done}/{total} runs finished; the job exited {job.returncode}")
        log = run([MPIRUN, "-np", "2"] + sweep_args(out, big + ["--threads", "1"], quiet=False))
        m = re.search(r"\((\d+) kept from an earlier attempt\)", log)
        assert m and int(m.group(1)) == done, f"resume should keep the {done} finished runs:\n{log}"
        same_folders(tmp / "ref", out, "killed and resumed vs uninterrupted")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
