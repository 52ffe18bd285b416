"""The cffi build cache: reuse without the compiler, concurrent builds of one model both succeed."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

import lstmgen
from lstmgen import build

SPEC = lstmgen.LSTMSpec(input_size=3, hidden_size=6, num_layers=2)


def test_second_compile_reuses_without_compiler(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(tmp_path / "cache"))
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=6, num_layers=2, bias=False)  # unique to this test
    before = build.stats["compiles"]
    lstmgen.compile(spec, lstmgen.random_weights(spec, 1))
    assert build.stats["compiles"] == before + 1
    build._loaded.clear()  # forget the loaded module: the next compile must come from the disk cache
    m = lstmgen.compile(spec, lstmgen.random_weights(spec, 2))
    assert build.stats["compiles"] == before + 1
    assert m(np.zeros((2, 1, 3), np.float32))[0].shape == (2, 1, 6)
    entries = [e for e in os.listdir(tmp_path / "cache") if not e.startswith(".")]
    assert len(entries) == 1 and os.path.exists(tmp_path / "cache" / entries[0] / "MANIFEST")
    assert not [e for e in os.listdir(tmp_path / "cache") if e.startswith(".build-")]


SCRIPT = """
import sys, numpy as np, lstmgen
spec = lstmgen.LSTMSpec(input_size=4, hidden_size=9, num_layers=2, proj_size=3)
m = lstmgen.compile(spec, lstmgen.random_weights(spec, 0))
out, _ = m(np.ones((3, 2, 4), np.float32))
print(repr(float(out.sum())))
"""


def test_two_processes_compile_the_same_model_at_once(tmp_path):
    env = dict(os.environ, LSTMGEN_CACHE_DIR=str(tmp_path / "cache"))
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (_out, err) in zip(procs, results):
        assert p.returncode == 0, err
    assert results[0][0] == results[1][0]
    entries = [e for e in os.listdir(tmp_path / "cache") if not e.startswith(".")]
    assert len(entries) == 1
