"""math="approx": the libm-free float32 tanh and sigmoid (kernels.py), measured in ulps against
float64 over a dense sweep, in plain C (what portable and embedded builds run) and on this
machine's vectors (what native builds run), next to libm's tanhf and 1 / (1 + expf(-x)). The
README quotes these bounds; tools/fit_activations.py measures the same forms over its own sweep.
"""

from __future__ import annotations

import numpy as np
import pytest

from lstmgen import build, kernels
from lstmgen.codegen import math_probe_sources

# Max error in ulps of the float64 truth rounded to float32, where that truth is a normal float32,
# and the mean signed error (bias) in ulps, over sweep(). Measured on Zen 3 (scalar C, AVX2):
# tanh 1.29 ulp scalar, bias +0.002; the vector tanh (one division, no branch) 2.38, bias +0.000;
# sigmoid 2.47 scalar (+0.012), 2.41 vector (+0.031). libm on the same sweep: tanhf 2.08
# (+0.002), 1 / (1 + expf(-x)) 2.47 (+0.010).
# main a7d32b8's rational forms: tanh 5.6-6.1 ulp, sigmoid 8.5e7 ulp (no relative accuracy for x < -9).
MAX_ULP = {"tanh": 2.5, "sigmoid": 2.5}
MAX_BIAS_ULP = 0.05

ISAS = ["portable"] + ([kernels.native_isa()] if kernels.native_isa() != "portable" else [])


def pad16(xs) -> np.ndarray:
    x = np.zeros((len(xs) + 15) // 16 * 16, np.float32)
    x[: len(xs)] = xs
    return x


def sweep() -> np.ndarray:
    """Every 1e-5 over [-30, 30] (6M points), every decade from 1e-38 to 89 on both signs, and
    the edge cases; padded to a multiple of 16 floats for the vector forms."""
    dec = np.logspace(-38, np.log10(89.0), 400_000)
    return pad16(np.concatenate([np.linspace(-30, 30, 6_000_001), dec, -dec,
                                 [0.0, -0.0, 0.7, -0.7, 9.0, 9.01, 87.3, -87.3, 88.0, -88.0]]))


@pytest.fixture(scope="module", params=ISAS)
def probe(request):
    isa = request.param
    module = build.build(math_probe_sources(isa, prefix=f"probe_{isa}"), target=isa)
    fn = getattr(module.lib, f"probe_{isa}_probe")

    def run(which: int, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        y = np.empty_like(x)
        fn(which, module.ffi.from_buffer("float[]", x), module.ffi.from_buffer("float[]", y), x.size)
        return y

    return isa, run


def forms(isa: str) -> list[tuple[str, int, int]]:
    """(name, approx entry, libm entry) of the forms this ISA has."""
    out = [("tanh", 0, 4), ("sigmoid", 1, 5)]
    if isa != "portable":
        out += [("vector tanh", 2, 4), ("vector sigmoid", 3, 5)]
    return out


def truth(kind: str, x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    return np.tanh(x64) if kind == "tanh" else 1 / (1 + np.exp(-x64))


def ulp_errors(y: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """Signed errors in ulps of the float32-rounded truth, where the truth is a normal float32."""
    normal = np.abs(exact) >= np.finfo(np.float32).tiny
    ulp = np.spacing(np.abs(exact.astype(np.float32))).astype(np.float64)
    return ((y.astype(np.float64) - exact) / ulp)[normal]


def test_max_ulp_and_bias(probe):
    isa, run = probe
    x = sweep()
    for name, which, libm_which in forms(isa):
        kind = name.split()[-1]
        exact = truth(kind, x)
        err = ulp_errors(run(which, x), exact)
        if kind == "tanh":
            err = err * np.sign(x[np.abs(exact) >= np.finfo(np.float32).tiny])  # + away from zero
        worst, bias = float(np.abs(err).max()), float(err.mean())
        assert worst <= MAX_ULP[kind], f"{isa} {name}: max error {worst:.2f} ulp > {MAX_ULP[kind]}"
        assert abs(bias) <= MAX_BIAS_ULP, f"{isa} {name}: bias {bias:+.3f} ulp"
        assert float(np.abs(ulp_errors(run(libm_which, x), exact)).max()) < 2.5  # the sweep itself is sane


def test_sigmoid_left_tail_keeps_relative_accuracy(probe):
    """sigmoid(x) ~ e^x for x << 0: relative error, not absolute (1/2 + tanh(x/2)/2 had none)."""
    isa, run = probe
    x = pad16(np.concatenate([[-20.0, -50.0, -80.0, -87.0], np.linspace(-87, -9, 100_000)]))
    for name, which, _ in forms(isa):
        if "sigmoid" in name:
            err = ulp_errors(run(which, x), truth("sigmoid", x))
            assert float(np.abs(err).max()) <= MAX_ULP["sigmoid"], f"{isa} {name}: {float(np.abs(err).max()):.1f} ulp in the tail"


def test_shape_of_the_functions(probe):
    isa, run = probe
    x = pad16(np.linspace(-20, 20, 4001, dtype=np.float32))
    for name, which, _ in forms(isa):
        y = run(which, x)
        assert np.all(np.diff(y[:4001]) >= 0), f"{isa} {name} is not monotone"
        if "tanh" in name:
            np.testing.assert_array_equal(run(which, -x), -y)  # odd
            assert np.all(np.abs(y) <= 1.0)
        else:
            assert np.all((y >= 0.0) & (y <= 1.0))


def test_edge_cases(probe):
    """NaN, infinities, -0, denormal and huge x as libm gives them."""
    isa, run = probe
    x = pad16([np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-40, -1e-40, 1e30, -1e30, 3e38, -3e38, 9.1, -9.1])
    for name, which, _ in forms(isa):
        y = run(which, x)
        assert np.isnan(y[0]), f"{isa} {name}: NaN must propagate, got {y[0]}"
        if "tanh" in name:
            np.testing.assert_array_equal(y[1:13], np.array([1, -1, -0.0, 0.0, 1e-40, -1e-40, 1, -1, 1, -1, 1, -1], np.float32))
            assert np.signbit(y[3]) and not np.signbit(y[4]), f"{isa} {name}: tanh(-0) must be -0"
        else:
            np.testing.assert_array_equal(y[1:11], [1, 0, 0.5, 0.5, 0.5, 0.5, 1, 0, 1, 0])
