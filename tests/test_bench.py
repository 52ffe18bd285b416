"""The benchmark's plumbing (benchmarks/bench.py --quick on the smallest config): it builds the C
timing harness from the generated sources, runs the peers interleaved and writes its JSON.
Nothing here judges a time: tests never time things (`make bench` does)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import ROOT


def test_bench_quick_plumbing(tmp_path):
    out = tmp_path / "r.json"
    peers = "lstmgen_c,lstmgen_py,numpy,lstmgen_c_step,stream_step"
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--quick", "--configs", "tiny_stream",
                          "--peers", peers, "--out", str(out), "--rounds", "1", "--seconds", "0.05"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    data = json.loads(out.read_text())
    (r,) = data["results"]
    assert r["config"]["name"] == "tiny_stream" and data["info"]["peak"]["gflops"] > 0
    assert set(r["forward_ms"]) == {"lstmgen_c", "lstmgen_py", "numpy"}
    assert set(r["step_us"]) == {"lstmgen_c_step", "stream_step"}
    assert all(v > 0 for v in [*r["forward_ms"].values(), *r["step_us"].values()])
    assert max(r["max_abs_diff_vs_lstmgen"].values()) < 1e-4  # the peers compute the same LSTM
    assert "| tiny_stream | lstmgen C |" in res.stdout and "stream.step (py)" in res.stdout
    if data["swap"] is not None:  # torch installed: the drop-in row computes the same outputs
        assert data["swap"]["max_abs_diff"] < 1e-5 and "drop-in swap" in res.stdout


def test_limits_probe_plumbing():
    """benchmarks/limits.py builds limits.c against a generated model and prints its table."""
    import lstmgen

    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "limits.py"), "--hidden", "16"],
                         capture_output=True, text=True, timeout=300)
    if lstmgen.kernels.native_isa() == "portable":
        assert res.returncode == 1 and "no vector ISA" in res.stdout
        return
    assert res.returncode == 0, res.stderr[-3000:]
    row = next(line for line in res.stdout.splitlines() if line.startswith("| 16 |"))
    ns_per_step = float(row.split("|")[4])
    assert ns_per_step > 0 and "FMA latency" in res.stdout


def test_accuracy_corpus_plumbing():
    """benchmarks/accuracy.py runs its peers on one short model and prints the ratio table."""
    from conftest import need_module

    need_module("torch")
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "accuracy.py"), "--models", "h16-f3", "--T", "50"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    row = next(line for line in res.stdout.splitlines() if line.startswith("| h16-f3 | 0 | 50 |"))
    errs = [float(v) for v in row.split("|")[5:8]]
    assert all(0 < e < 1e-4 for e in errs)  # every peer computes the same LSTM
