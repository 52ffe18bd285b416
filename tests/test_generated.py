"""generated/ is current; generated C compiles warning-free under gcc and clang and runs without Python."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, need_tool

import lstmgen
from lstmgen import reference

sys.path.insert(0, os.path.join(ROOT, "examples"))
import make_generated  # noqa: E402

STRICT = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Wdouble-promotion", "-Wconversion", "-Wshadow", "-Werror"]
MAIN = os.path.join(ROOT, "tests", "c", "main_forward.c")


def _tree(root: str) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_generated_is_current(tmp_path):
    make_generated.write_all(str(tmp_path), write_weights=False)
    gen = os.path.join(ROOT, "generated")
    assert _tree(str(tmp_path)) == _tree(gen), "generated/ has different files: run `make generate`"
    for rel in _tree(gen):
        assert filecmp.cmp(os.path.join(gen, rel), tmp_path / rel, shallow=False), f"generated/{rel} is stale: run `make generate`"


def test_rendering_is_byte_stable():
    spec, weights = make_generated.example("bidir_proj")
    a = lstmgen.generate_sources(spec, weights, prefix="p")
    b = lstmgen.generate_sources(spec, {k: v.copy() for k, v in weights.items()}, prefix="p")
    assert a.files == b.files


@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("name", make_generated.EXAMPLES)
def test_standalone_c_matches_reference(tmp_path, cc, name):
    """Compile generated/<name> with a small main.c (strict warnings), run it, compare."""
    compiler = need_tool(cc)
    spec, weights = make_generated.example(name)
    src = os.path.join(ROOT, "generated", name)
    cells = spec.num_layers * spec.num_directions
    exe = tmp_path / "main"
    defs = [f'-DMODEL_HEADER="{name}.h"', f"-DMODEL_PREFIX={name}", f"-DINPUT_SIZE={spec.input_size}",
            f"-DY_ROW={spec.num_directions * spec.output_size}", f"-DCELLS={cells}",
            f"-DOUTPUT_SIZE={spec.output_size}", f"-DHIDDEN_SIZE={spec.hidden_size}"]
    model_c = [os.path.join(src, f) for f in sorted(os.listdir(src)) if f.startswith(name) and f.endswith(".c") and "selftest" not in f]
    subprocess.run([compiler, *STRICT, "-O2", "-I", src, *model_c, "-c"], check=True, cwd=tmp_path)
    subprocess.run([compiler, "-std=c99", "-O2", "-I", src, *defs, MAIN, *model_c, "-lm", "-o", str(exe)], check=True)
    T, B = 9, 2
    rng = np.random.default_rng(7)
    shape = (B, T, spec.input_size) if spec.batch_first else (T, B, spec.input_size)
    x = rng.standard_normal(shape).astype(np.float32)
    x.tofile(tmp_path / "in.bin")
    subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin"), str(T), str(B)], check=True)
    raw = np.fromfile(tmp_path / "out.bin", dtype=np.float32)
    ref, (rh, rc) = reference.lstm_forward(spec, weights, x)
    ny, nh = ref.size, rh.size
    assert raw.size == ny + nh + rc.size
    err = max(np.abs(raw[:ny] - ref.ravel()).max(), np.abs(raw[ny:ny + nh] - rh.ravel()).max(), np.abs(raw[ny + nh:] - rc.ravel()).max())
    assert err <= 1e-5


SWEEP = [
    dict(spec=dict(input_size=3, hidden_size=5), sched={}),
    dict(spec=dict(input_size=3, hidden_size=5, num_layers=3, proj_size=2, bias=False), sched=dict(time_loop="unrolled", seq_len=4)),
    dict(spec=dict(input_size=3, hidden_size=5, num_layers=2, bidirectional=True, batch_first=True), sched=dict(time_loop="unrolled", seq_len=3)),
    dict(spec=dict(input_size=2, hidden_size=4, num_layers=2), sched=dict(chunk=4)),
    dict(spec=dict(input_size=2, hidden_size=4, reverse=True, peepholes=True, clip=2.5, input_forget=True,
                   activations=["HardSigmoid", "Softplus", ["ScaledTanh", 0.5, 1.5]]), sched=dict(chunk=2)),
    dict(spec=dict(input_size=2, hidden_size=4, bidirectional=True,
                   activations=["Sigmoid", "Relu", "Elu", ["Affine", 0.5, 0.1], "Softsign", ["LeakyRelu", 0.1]]), sched={}),
    dict(spec=dict(input_size=2, hidden_size=4, activations=[["ThresholdedRelu", 0.2], "Tanh", "Tanh"]), sched={}),
]


@pytest.mark.parametrize("cc", ["gcc", "clang"])
def test_generated_c_is_warning_free_across_features(tmp_path, cc):
    compiler = need_tool(cc)
    for i, case in enumerate(SWEEP):
        spec = lstmgen.LSTMSpec(**case["spec"])
        out = tmp_path / f"m{i}"
        paths = lstmgen.generate(spec, lstmgen.random_weights(spec), out, prefix=f"m{i}", **case["sched"])
        c_files = [p for p in paths if p.endswith(".c") and "selftest" not in p]
        subprocess.run([compiler, *STRICT, "-O1", "-I", str(out), "-c", *c_files], check=True, cwd=out)
        text = "".join(open(p).read() for p in paths if p.endswith((".c", ".h")) and "selftest" not in p)
        for banned in ("malloc", "printf", "<stdio.h>", "double"):
            assert banned not in text, f"{banned} in generated model code"
