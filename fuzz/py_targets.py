"""Fuzz targets for lstmgen's parsers, run under atheris (coverage-guided, libFuzzer's engine).

Input: bytes. A target may only refuse its input with ValueError or TypeError; any other exception
(KeyError, RecursionError, OverflowError, protobuf's DecodeError, ...) is a bug and a crash.
  spec   LSTMSpec.loads on JSON or TOML text (the first byte picks which); an accepted spec must
         round-trip through to_json, and its generated C must be ASCII with no user text in it.
  fields LSTMSpec(**kwargs) with field values of every Python type, decoded from the bytes.
  onnx   lstmgen.from_onnx on the bytes as a serialized ModelProto (seeded with real exports); an
         accepted model must generate clean C.
Run: python fuzz/py_targets.py TARGET [libFuzzer flags] [corpus dirs], e.g. -max_total_time=10.
"""

from __future__ import annotations

import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

try:  # fuzzing needs atheris; replaying saved inputs (tests/test_fuzz.py) only needs the targets
    import atheris  # noqa: E402
except ImportError:  # pragma: no cover
    atheris = None

if atheris is not None and __name__ == "__main__":
    with atheris.instrument_imports(include=["lstmgen"]):
        import lstmgen  # noqa: E402
        from lstmgen import spec as _spec  # noqa: E402
else:
    import lstmgen  # noqa: E402
    from lstmgen import spec as _spec  # noqa: E402

REFUSALS = (ValueError, TypeError)
MAX_RENDER_PARAMS = 20_000  # render only small accepted specs (rendering is the slow part)


_rendered: set = set()  # each distinct accepted spec is rendered once (rendering dominates the cost)


def _check_c(spec, weights=None) -> None:
    if spec.num_parameters > MAX_RENDER_PARAMS or (weights is None and spec in _rendered) or len(_rendered) > 5000:
        return
    _rendered.add(spec)
    try:
        files = lstmgen.generate_sources(spec, weights, prefix="fz").files
    except REFUSALS as exc:
        if weights is not None and "NaN/Inf" in str(exc):
            return  # non-finite weights: refused by default, as documented
        raise AssertionError(f"an accepted spec could not be rendered: {exc}") from exc
    for name, text in files.items():
        assert text.isascii(), f"{name}: non-ASCII output"


def spec_target(data: bytes) -> None:
    if not data:
        return
    fmt = "toml" if data[0] & 1 else "json"
    try:
        spec = lstmgen.LSTMSpec.loads(data[1:], fmt=fmt, where="fuzz")
    except REFUSALS:
        return
    again = lstmgen.LSTMSpec.loads(spec.to_json(), fmt="json")
    assert again == spec, f"round trip changed the spec: {spec} -> {again}"
    _check_c(spec)


FIELDS = ["input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional",
          "proj_size", "reverse", "activations", "peepholes", "clip", "input_forget"]


def _value(fdp: atheris.FuzzedDataProvider, depth: int = 0):
    kind = fdp.ConsumeIntInRange(0, 13 if depth < 2 else 10)
    if kind == 0:
        return fdp.ConsumeIntInRange(-3, 12)
    if kind == 1:
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 80))
    if kind == 2:
        return fdp.ConsumeRegularFloat() if fdp.ConsumeBool() else fdp.ConsumeFloatInRange(-3.0, 12.0)
    if kind == 3:
        return fdp.PickValueInList([math.nan, math.inf, -math.inf, -0.0, 5e-324, 3.5e38, 1e308])
    if kind == 4:
        return fdp.ConsumeBool()
    if kind == 5:
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 24))
    if kind == 6:
        return fdp.PickValueInList(list(_spec.ACTIVATIONS)) + ("" if fdp.ConsumeBool() else "x")
    if kind == 7:
        return None
    if kind == 8:
        return fdp.ConsumeBytes(fdp.ConsumeIntInRange(0, 8))
    if kind == 9:
        import numpy as np

        return fdp.PickValueInList([np.int64(3), np.float32(2.5), np.bool_(True), np.uint8(200), np.int8(-1)])
    if kind == 10:
        return complex(fdp.ConsumeIntInRange(0, 4), fdp.ConsumeIntInRange(0, 1))
    if kind == 11:
        return [_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 7))]
    if kind == 12:
        return tuple(_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 7)))
    return {fdp.PickValueInList(["name", "alpha", "beta", "x"]): _value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))}


def fields_target(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    kwargs = {}
    for f in FIELDS:
        if fdp.ConsumeIntInRange(0, 3) == 0:
            kwargs[f] = _value(fdp)
    kwargs.setdefault("input_size", fdp.ConsumeIntInRange(1, 6))
    kwargs.setdefault("hidden_size", fdp.ConsumeIntInRange(1, 6))
    try:
        spec = lstmgen.LSTMSpec(**kwargs)
    except REFUSALS:
        return
    assert lstmgen.LSTMSpec.from_dict(spec.to_dict()) == spec
    _check_c(spec)


def onnx_target(data: bytes) -> None:
    try:
        spec, weights = lstmgen.from_onnx(data)
    except REFUSALS:
        return
    _check_c(spec, weights)


TARGETS = {"spec": spec_target, "fields": fields_target, "onnx": onnx_target}


def main() -> None:
    name = sys.argv[1]
    target = TARGETS[name]
    if name == "onnx":
        import onnx  # noqa: F401  (imported before fuzzing starts, uninstrumented)
    atheris.Setup([sys.argv[0]] + sys.argv[2:], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
