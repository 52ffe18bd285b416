"""math="approx": the libm-free float32 tanh and sigmoid (kernels.py), measured against libm and
against float64 over a dense sweep, in plain C (what portable and embedded builds run) and on this
machine's vectors (what native builds run). The README quotes these bounds.
"""

from __future__ import annotations

import numpy as np
import pytest

from lstmgen import build, kernels
from lstmgen.codegen import math_probe_sources

# Measured (tests below): tanh 3.65e-7 from float64, 3.58e-7 from libm; sigmoid 2.12e-7 / 2.38e-7.
TANH_MAX_ERR = 4.0e-7
SIGMOID_MAX_ERR = 3.0e-7

ISAS = ["portable"] + ([kernels.native_isa()] if kernels.native_isa() != "portable" else [])


def sweep() -> np.ndarray:
    """Every 1e-5 over [-30, 30] (6M points), a fine grid around 0, and the edge cases; padded
    to a multiple of 16 floats for the vector forms."""
    xs = np.concatenate([np.linspace(-30, 30, 6_000_001), np.linspace(-1e-3, 1e-3, 20_001),
                         [0.0, -0.0, 1e-30, -1e-30, 1e-40, 8.999, 9.0, 9.001, 17.99, 18.0, 18.01, 88.0, -88.0, 1e30, -1e30]])
    x = np.zeros((len(xs) + 15) // 16 * 16, np.float32)
    x[: len(xs)] = xs
    return x


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


def test_max_error_vs_libm_and_float64(probe):
    isa, run = probe
    x = sweep()
    x64 = x.astype(np.float64)
    exact = {"tanh": np.tanh(x64), "sigmoid": 0.5 + 0.5 * np.tanh(0.5 * x64)}
    for name, which, libm_which in forms(isa):
        kind = name.split()[-1]
        bound = TANH_MAX_ERR if kind == "tanh" else SIGMOID_MAX_ERR
        y = run(which, x).astype(np.float64)
        libm = run(libm_which, x).astype(np.float64)
        err_exact = float(np.abs(y - exact[kind]).max())
        err_libm = float(np.abs(y - libm).max())
        assert err_exact <= bound, f"{isa} {name}: max |error| vs float64 {err_exact:.3g} > {bound:.1g}"
        assert err_libm <= bound, f"{isa} {name}: max |error| vs libm {err_libm:.3g} > {bound:.1g}"
        assert float(np.abs(libm - exact[kind]).max()) < 2e-7  # the sweep itself is sane


def test_shape_of_the_functions(probe):
    isa, run = probe
    x = np.linspace(-20, 20, 4001, dtype=np.float32)
    x = np.concatenate([x, np.zeros(16 - x.size % 16, np.float32)])
    for name, which, _ in forms(isa):
        y = run(which, x)
        # monotone up to the error bound (near saturation the rational fit wobbles by a few ulp of 1)
        assert np.all(np.diff(y[:4001]) >= -TANH_MAX_ERR), f"{isa} {name} is not monotone"
        if "tanh" in name:
            np.testing.assert_array_equal(run(which, -x), -y)  # odd
            assert np.all(np.abs(y) <= 1.0 + TANH_MAX_ERR)
        else:
            assert np.all((y >= -SIGMOID_MAX_ERR) & (y <= 1.0 + SIGMOID_MAX_ERR))


def test_nan_and_infinities(probe):
    isa, run = probe
    x = np.zeros(16, np.float32)
    x[:4] = [np.nan, np.inf, -np.inf, -np.nan]
    for name, which, _ in forms(isa):
        y = run(which, x)
        assert np.isnan(y[0]) and np.isnan(y[3]), f"{isa} {name}: NaN must propagate, got {y[:4]}"
        if "tanh" in name:
            assert abs(y[1] - 1.0) < 1e-7 and abs(y[2] + 1.0) < 1e-7
        else:
            assert abs(y[1] - 1.0) < 1e-7 and abs(y[2]) < 1e-7
