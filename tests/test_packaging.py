"""A non-editable `pip install .` into a fresh venv ships the templates: `lstmgen generate` works."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT


def test_pip_install_then_generate(tmp_path):
    venv = tmp_path / "venv"
    # System site packages provide numpy/jinja2/cffi when present, so the test needs no download.
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    py = venv / "bin" / "python"
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", ROOT],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    # a fresh install is quiet: no setuptools warnings about the license table or package data
    assert "BuildBackendWarning" not in r.stderr and "SetuptoolsDeprecationWarning" not in r.stderr, r.stderr
    out = tmp_path / "out"
    r = subprocess.run([str(venv / "bin" / "lstmgen"), "generate", os.path.join(ROOT, "examples", "kws.json"), "--out", str(out), "--prefix", "kws"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (out / "kws.c").exists()
    # the installed package, not the checkout, did it
    r = subprocess.run([str(py), "-c", "import lstmgen, os; print(os.path.dirname(lstmgen.__file__))"], capture_output=True, text=True, cwd=tmp_path)
    assert "site-packages" in r.stdout
