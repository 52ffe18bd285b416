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


def test_bench_weights_dtype_rows(tmp_path):
    """The low-precision rows: one harness per weights_dtype reading its packed weights in their own
    element size (and int8's scales), checked against the Python model of that dtype, with errors vs
    the float64 run of the float32-weight model; torch's quantize_dynamic peers when torch is here."""
    import importlib.util

    out = tmp_path / "r.json"
    dtypes = ("float16", "bfloat16", "int8")
    peers = ["lstmgen_c", "lstmgen_c_step", *(f"lstmgen_c_{d}" for d in dtypes), *(f"lstmgen_c_step_{d}" for d in dtypes)]
    have_torch = importlib.util.find_spec("torch") is not None
    if have_torch:
        peers += ["torch", "torch_qint8", "torch_float16"]
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench.py"), "--quick", "--configs", "kws",
                          "--peers", ",".join(peers), "--out", str(out), "--rounds", "1", "--seconds", "0.05", "--no-swap"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    (r,) = json.loads(out.read_text())["results"]
    forward = {p for p in peers if "step" not in p}
    assert set(r["forward_ms"]) == forward and set(r["step_us"]) == set(peers) - forward
    err = r["max_abs_err_vs_float64"]
    assert set(err) == set(peers)
    assert err["lstmgen_c"] < 1e-6 and err["lstmgen_c_step"] == err["lstmgen_c"]
    # the quantisation's own error on kws (measured: float16 3.0e-5, bfloat16 2.4e-4, int8 5.7e-4)
    assert 0 < err["lstmgen_c_float16"] < 2e-4 and 0 < err["lstmgen_c_bfloat16"] < 2e-3 and 0 < err["lstmgen_c_int8"] < 5e-3
    # the harness's own outputs are its Python model's (max_abs_diff_vs_lstmgen: vs the float32 model)
    assert abs(r["max_abs_diff_vs_lstmgen"]["lstmgen_c_int8"] - err["lstmgen_c_int8"]) < 1e-5
    assert r["weight_bytes"]["int8"] < r["weight_bytes"]["float16"] < r["weight_bytes"]["float32"]
    assert "| kws | int8 |" in res.stdout and "| kws | lstmgen C int8 |" in res.stdout
    if have_torch:
        assert 0 < err["torch_float16"] < 2e-4 and 0 < err["torch_qint8"] < 2e-2
        assert "| kws | float16 | " in res.stdout and "torch qint8 1t" in res.stdout


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


def test_int8_forms_plumbing():
    """benchmarks/int8_forms.py compiles every int8 form this host runs and prints one line per
    config with each form's ratio and error (the error the same in every integer form)."""
    res = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "int8_forms.py"), "--configs", "tiny_stream",
                          "--rounds", "1"], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    (line,) = res.stdout.splitlines()
    assert line.startswith("tiny_stream: float32 ") and " 1.00x " in line
    bad = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "int8_forms.py"), "--configs", "nosuch"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "unknown config(s): nosuch" in bad.stderr
