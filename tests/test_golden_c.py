"""Compiled C vs outputs recorded from torch 2.13 (tests/golden/, made by make_golden.py).

Tolerance 1e-5 absolute; the max error seen is printed with -s (and reported in the README).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from goldens import CASES, load_case

import lstmgen

ATOL = 1e-5


def _err(got, case) -> float:
    out, (h_n, c_n) = got
    assert out.shape == case["out"].shape and h_n.shape == case["h_n"].shape and c_n.shape == case["c_n"].shape
    return max(float(np.abs(out - case["out"]).max()), float(np.abs(h_n - case["h_n"]).max()),
               float(np.abs(c_n - case["c_n"]).max()))


@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-4] for p in CASES])
@pytest.mark.parametrize("time_loop", ["looped", "unrolled"])
def test_c_matches_torch(path, time_loop):
    case = load_case(path)
    x = case["x"]
    T = x.shape[1] if (case["spec"].batch_first and x.ndim == 3) else x.shape[0]
    kw = dict(time_loop=time_loop, seq_len=T) if time_loop == "unrolled" else {}
    model = lstmgen.compile(case["spec"], case["weights"], **kw)
    err = _err(model(x, case["hx"], lengths=case["lengths"]), case)
    print(f"{os.path.basename(path)} {time_loop}: max abs error vs torch {err:.3g}")
    assert err <= ATOL


def test_goldens_cover_the_issue_list():
    names = {os.path.basename(p)[:-4] for p in CASES}
    for need in ("plain", "multilayer", "bidirectional", "proj", "nobias", "batch_first", "unbatched", "lengths", "h0c0"):
        assert need in names


def test_from_torch_roundtrip():
    from conftest import need_module

    torch = need_module("torch")
    torch.manual_seed(0)
    m = torch.nn.LSTM(5, 8, num_layers=2, bidirectional=True, proj_size=3, batch_first=True).eval()
    spec, weights = lstmgen.from_torch(m)
    assert spec.proj_size == 3 and spec.batch_first and spec.bidirectional
    x = torch.randn(2, 6, 5)
    with torch.no_grad():
        out, (h, c) = m(x)
    got = lstmgen.compile(spec, weights)(x.numpy())
    case = dict(out=out.numpy(), h_n=h.numpy(), c_n=c.numpy())
    assert _err(got, case) <= ATOL
