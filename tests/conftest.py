"""Shared test set-up: import paths, a build cache for the session, optional-tool gates."""

import importlib
import os
import shutil
import sys

import numpy as np
import pytest

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, TESTS)
sys.path.insert(0, ROOT)

# Builds are cached across runs in build/test-cache unless the caller chose a cache.
os.environ.setdefault("LSTMGEN_CACHE_DIR", os.path.join(ROOT, "build", "test-cache"))

IN_CI = bool(os.environ.get("CI"))


def need_module(name: str):
    """Import an optional module; skip without it locally, fail without it in CI."""
    try:
        return importlib.import_module(name)
    except ImportError:
        if IN_CI:
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"{name} not installed")


def need_tool(name: str) -> str:
    """Path of an external program; skip without it locally, fail without it in CI."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is required in CI (.ci/run installs it)")
        pytest.skip(f"{name} not found")
    return path


def max_abs_diff(got, want) -> float:
    """Max abs difference over (out, (h_n, c_n)) of two forward results, in float64."""
    (y, (h, c)), (wy, (wh, wc)) = got, want
    return max(float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max()) for a, b in ((y, wy), (h, wh), (c, wc)))


def kernel_reference(model, spec, weights, x, **kw):
    """reference.lstm_forward on `weights` as `model`'s kernels see its inputs, and the bound of
    that comparison: int8 kernels with integer dot products (VNNI, IDOT: kernels.py) round each
    product's input rows to 16 bits, which the reference then does too (input_q; 1e-5: a float32
    rounding can move an input across a 16-bit step); every other kernel within 1e-6."""
    from lstmgen import reference
    q = model.program.plan.input_q
    return reference.lstm_forward(spec, weights, x, input_q=q, **kw), (1e-5 if q else 1e-6)


def quantize_dynamic(torch, module, dtype, qconfig=None):
    """torch's dynamically quantised copy of an nn.LSTM / nn.LSTMCell (in a Sequential: a bare
    module is returned unconverted by quantize_dynamic)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        spec = {type(module): qconfig} if qconfig is not None else {type(module)}
        return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(module), spec, dtype=dtype)[0]


@pytest.fixture(scope="module")
def ort():
    """onnxruntime (with onnx), for the ONNX tests."""
    need_module("onnx")
    return need_module("onnxruntime")


def run_ort(ort, model, feeds):
    """Run an onnx ModelProto on onnxruntime's CPU provider, one thread: {output name: array}."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def pytest_terminal_summary(terminalreporter):
    """One line at the end: how many tests were skipped, grouped by why."""
    skipped = terminalreporter.stats.get("skipped", [])
    if not skipped:
        terminalreporter.write_line("skipped: none")
        return
    reasons: dict[str, int] = {}
    for rep in skipped:
        longrepr = rep.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    text = "; ".join(f"{why} ({n})" for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]))
    terminalreporter.write_line(f"skipped {len(skipped)}: {text}")


def with_c_functions(model, **wrappers):
    """The same model over its public Artifact, with some C entry points (`forward`, `step`,
    `workspace_floats`) replaced by wrappers that get the real function first: fault injection
    and spying without touching Model internals."""
    import dataclasses
    import types

    import lstmgen

    art = model.artifact
    real_lib = art.lib

    class Lib:
        def __getattr__(self, name):
            fn = getattr(real_lib, name)
            suffix = name[len(art.prefix) + 1:]
            return (lambda *a: wrappers[suffix](fn, *a)) if suffix in wrappers else fn

    module = types.SimpleNamespace(ffi=art.ffi, lib=Lib())
    return lstmgen.Model(dataclasses.replace(art, module=module), model.packed_weights)
