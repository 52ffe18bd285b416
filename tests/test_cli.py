"""The command line: generate, inspect, demo; user errors exit 2 with a message, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT

from lstmgen.cli import main

KWS = os.path.join(ROOT, "examples", "kws.json")


def test_generate_and_inspect(tmp_path, capsys):
    assert main(["generate", KWS, "--weights", os.path.join(ROOT, "examples", "kws.npz"), "--out", str(tmp_path), "--prefix", "kws"]) == 0
    assert {"kws.h", "kws.c", "kws_weights.c"} <= set(os.listdir(tmp_path))
    assert main(["inspect", KWS]) == 0
    text = capsys.readouterr().out
    assert "InputProjection" in text and "Recurrence" in text
    assert main(["inspect", KWS, "--dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph")


def test_generate_without_weights_writes_api_only(tmp_path):
    assert main(["generate", KWS, "--out", str(tmp_path), "--time-loop", "unrolled", "--seq-len", "4"]) == 0
    assert sorted(os.listdir(tmp_path)) == ["lstm.c", "lstm.h"]


def test_user_errors_exit_2(tmp_path, capsys):
    assert main(["generate", KWS, "--out", str(tmp_path), "--prefix", "bad prefix"]) == 2
    assert "prefix" in capsys.readouterr().err
    assert main(["inspect", str(tmp_path / "missing.json")]) == 2
    assert "missing.json" in capsys.readouterr().err
    assert main(["generate", KWS, "--out", str(tmp_path), "--time-loop", "unrolled"]) == 2
    assert "seq_len" in capsys.readouterr().err
    wrong = tmp_path / "w.npz"
    import numpy as np

    np.savez(wrong, weight_ih_l0=np.zeros((3, 3), np.float32))
    assert main(["generate", KWS, "--weights", str(wrong), "--out", str(tmp_path)]) == 2
    assert "weight" in capsys.readouterr().err


def test_demo_runs_end_to_end(tmp_path):
    r = subprocess.run([sys.executable, "-m", "lstmgen.cli", "demo", "--out", str(tmp_path / "d")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "max abs error" in r.stdout and os.path.exists(tmp_path / "d" / "demo.c")
