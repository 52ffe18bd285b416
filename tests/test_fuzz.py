"""Fuzzing: hypothesis property tests (C == reference over random specs and inputs), a bounded run
of the coverage-guided fuzzers in fuzz/ (libFuzzer on the generated C API, atheris on the spec and
ONNX parsers), and a replay of every input that ever crashed one of them (fuzz/regressions/).

Tolerance, per output array: max |C - reference| <= 1e-5 * max(1, max |reference|), i.e. 1e-5
absolute while values stay within 1, relative to the array's scale beyond (the ONNX activations
Relu/Affine/Softplus are unbounded; with them and |x| ~ 1e3 an output near 1 can be a difference
of terms near 1e3, where float32 rounding alone is ~1e-4; found by this test: with an unbounded
g or h activation the inputs are drawn up to |x| ~ 10, with the bounded ones up to |x| ~ 1e3).
`make test` runs small budgets; `make sanitize` (LSTMGEN_FULL=1) runs more examples and seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, need_module, need_tool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import lstmgen
from lstmgen import reference

FULL = bool(os.environ.get("LSTMGEN_FULL"))
FUZZ = os.path.join(ROOT, "fuzz")
sys.path.insert(0, FUZZ)
TOL = 1e-5
ACTS = ["Sigmoid", "Tanh", "Relu", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu",
        "Softsign", "Softplus"]
GATE_ACTS = ["Sigmoid", "HardSigmoid", "Softsign", "ScaledTanh"]  # bounded, so 100 steps stay in range
UNBOUNDED = {"Relu", "Affine", "LeakyRelu", "ThresholdedRelu", "Elu", "Softplus"}


def assert_close(got, want, what=""):
    want = np.asarray(want)
    assert got.shape == want.shape, what
    if not want.size:
        return
    scale = max(1.0, float(np.abs(want).max()))
    err = float(np.abs(got.astype(np.float64) - want).max()) / scale
    assert err <= TOL, f"{what}: error {err:.3g} (relative to max(1, max|ref|) = {scale:.3g})"


@st.composite
def specs(draw):
    bidir = draw(st.booleans())
    H = draw(st.integers(1, 7))
    kw = dict(input_size=draw(st.integers(1, 6)), hidden_size=H, num_layers=draw(st.integers(1, 3)),
              bias=draw(st.booleans()), batch_first=draw(st.booleans()), bidirectional=bidir,
              proj_size=draw(st.integers(0, H - 1)))
    if draw(st.booleans()):  # the ONNX cell
        kw.update(peepholes=draw(st.booleans()), input_forget=draw(st.booleans()),
                  clip=draw(st.one_of(st.none(), st.floats(0.25, 5.0))),
                  reverse=not bidir and draw(st.booleans()))
        n = 6 if bidir and draw(st.booleans()) else 3
        kw["activations"] = [draw(st.sampled_from(GATE_ACTS if i % 3 == 0 else ACTS)) for i in range(n)]
    return lstmgen.LSTMSpec(**kw)


@st.composite
def schedules(draw, spec):
    kind = draw(st.sampled_from(["looped", "unrolled", "chunked"] if spec.num_directions == 1 else ["looped", "unrolled"]))
    if kind == "unrolled":
        return dict(time_loop="unrolled", seq_len=draw(st.integers(1, 6)))
    if kind == "chunked":
        return dict(chunk=draw(st.integers(1, 5)))
    return {}


@st.composite
def calls(draw, spec, fixed_T=None):
    T = fixed_T or draw(st.integers(1, 9))
    B = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    unbounded = any(a.name in UNBOUNDED for i, a in enumerate(spec.activations) if i % 3)
    scale = draw(st.sampled_from([0.1, 1.0, 10.0] if unbounded else [0.1, 1.0, 10.0, 1000.0]))
    x = (rng.standard_normal((B, T, spec.input_size) if spec.batch_first else (T, B, spec.input_size)) * scale).astype(np.float32)
    C = spec.num_layers * spec.num_directions
    hx = None
    if draw(st.booleans()):
        hx = (rng.standard_normal((C, B, spec.output_size)).astype(np.float32), rng.standard_normal((C, B, spec.hidden_size)).astype(np.float32))
    lengths = rng.integers(1, T + 1, size=B) if draw(st.booleans()) else None
    return x, hx, lengths


HYP = dict(deadline=None, derandomize=True, database=None, suppress_health_check=list(HealthCheck))


@settings(max_examples=60 if FULL else 4, **HYP)
@given(data=st.data())
def test_random_specs_and_schedules_match_reference(data):
    spec = data.draw(specs(), label="spec")
    sched = data.draw(schedules(spec), label="schedule")
    w = lstmgen.random_weights(spec, seed=data.draw(st.integers(0, 1000)))
    model = lstmgen.compile(spec, w, prefix="hyp", **sched)
    for _ in range(3):
        x, hx, lengths = data.draw(calls(spec, sched.get("seq_len")), label="call")
        out, (h, c) = model(x, hx, lengths=lengths)
        ref, (rh, rc) = reference.lstm_forward(spec, w, x, hx, lengths)
        for got, want, what in ((out, ref, "out"), (h, rh, "h_n"), (c, rc, "c_n")):
            assert_close(got, want, f"{spec} {sched} {what}")


FIXED = [
    lstmgen.LSTMSpec(input_size=4, hidden_size=6, num_layers=2, bidirectional=True, proj_size=3, batch_first=True, bias=False),
    lstmgen.LSTMSpec(input_size=3, hidden_size=5, num_layers=3, peepholes=True, clip=3.0,
                     activations=["HardSigmoid", "Elu", "Softsign"]),
]


@pytest.fixture(scope="module")
def fixed_models():
    return [lstmgen.compile(s, lstmgen.random_weights(s), prefix=f"hypfix{i}") for i, s in enumerate(FIXED)]


@settings(max_examples=300 if FULL else 60, **HYP)
@given(data=st.data())
def test_random_inputs_and_weights_match_reference(fixed_models, data):
    i = data.draw(st.integers(0, len(FIXED) - 1), label="model")
    spec = FIXED[i]
    w = lstmgen.random_weights(spec, seed=data.draw(st.integers(0, 10**6)), scale=data.draw(st.sampled_from([0.05, 0.5, 2.0])))
    model = fixed_models[i].with_weights(w)
    x, hx, lengths = data.draw(calls(spec), label="call")
    out, (h, c) = model(x, hx, lengths=lengths)
    ref, (rh, rc) = reference.lstm_forward(spec, w, x, hx, lengths)
    for got, want in ((out, ref), (h, rh), (c, rc)):
        assert_close(got, want, f"{spec}")
    if spec.num_directions == 1 and not spec.reverse and lengths is None:  # streaming agrees
        s = model.stream(batch=x.shape[0] if spec.batch_first else x.shape[1])
        if hx is not None:
            s.state = hx
        xs = x.transpose(1, 0, 2) if spec.batch_first else x
        ys = np.stack([s.step(xt) for xt in xs])
        assert_close(ys, ref.transpose(1, 0, 2) if spec.batch_first else ref, "stream")


# ---- the coverage-guided fuzzers: a bounded run, and every saved crash replayed ----------------------

SECONDS = {"c": 60, "spec": 30, "fields": 30, "onnx": 30} if FULL else {"c": 5, "spec": 1, "fields": 1, "onnx": 1}


@pytest.mark.parametrize("target", ["c", "spec", "fields", "onnx"])
def test_fuzzers_find_nothing(target, tmp_path):
    if target == "c":
        need_tool("clang")
    else:
        need_module("atheris")
        if target == "onnx":
            need_module("onnx")
    import run as fuzz_run

    if not FULL:
        os.environ["LSTMGEN_FUZZ_QUICK"] = "1"  # fewer models in the C target: a shorter build
    res = fuzz_run.run(target, SECONDS[target], str(tmp_path))
    print(f"\nfuzz {target}: {res['runs']} executions in {res['seconds']:.1f} s, {res['new_units']} new units")
    assert not res["crashed"], f"crash saved to {res['crash_file']}:\n{res['log'][-4000:]}"
    assert res["runs"] > 10, res["log"][-3000:]  # (a 1 s run on a loaded machine can be short)


def _regressions(target):
    folder = os.path.join(FUZZ, "regressions", target)
    return sorted(os.path.join(folder, f) for f in os.listdir(folder)) if os.path.isdir(folder) else []


@pytest.mark.parametrize("target", ["spec", "fields", "onnx"])
def test_saved_crashes_stay_fixed_python(target):
    files = _regressions(target)
    if not files:
        return  # nothing has crashed this target yet
    if target == "fields":
        need_module("atheris")
    if target == "onnx":
        need_module("onnx")
    import py_targets

    for path in files:
        with open(path, "rb") as fh:
            py_targets.TARGETS[target](fh.read())  # raises on a regression


def test_saved_crashes_stay_fixed_c(tmp_path):
    files = _regressions("c")
    if not files:
        return
    need_tool("clang")
    from c_target import build

    exe = build(str(tmp_path))
    r = subprocess.run([exe, *files], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-4000:]


def test_spec_parser_edge_cases_found_by_fuzzing():
    """Inputs of the kinds the spec fuzzer explores, pinned: each is refused cleanly."""
    for raw, fmt in [(b"[" * 50_000, "json"), (b"a=" + b"[" * 50_000, "toml"), (b"\xc3\x28", "json"),
                     (b'{"input_size": 3, "hidden_size": 4, "activations": [{"name": "Affine", "alpha": 1e400}, "Tanh", "Tanh"]}', "json"),
                     (b'{"input_size": 3, "hidden_size": 4, "clip": 1e39}', "json"),
                     (b'{"input_size": ' + b"1" * 5000 + b', "hidden_size": 4}', "json")]:
        with pytest.raises((ValueError, TypeError)):
            lstmgen.LSTMSpec.loads(raw, fmt=fmt)
