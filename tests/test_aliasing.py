"""C API aliasing (issue 13 item 3): outputs that overlap another buffer are refused with
ERR_ALIAS (they gave silently wrong outputs on chunked schedules); in-place state (h_n == h0,
c_n == c0 exactly) keeps working."""

from __future__ import annotations

import numpy as np
import pytest

import lstmgen
from lstmgen.abi import ERRORS

CODES = {name: value for name, value, _ in ERRORS}
SPEC = lstmgen.LSTMSpec(input_size=4, hidden_size=4)  # I == D*R: y can sit exactly on x


@pytest.fixture(scope="module", params=[dict(chunk=2), dict()], ids=["chunked", "whole"])
def model(request):
    return lstmgen.compile(SPEC, lstmgen.random_weights(SPEC, 3), target="portable", prefix="alias", **request.param)


def _call(model, T, B, bufs, **where):
    """Run <p>_forward with x, y, h, c, ws carved out of one big float buffer at the given offsets."""
    ffi, fwd = model.artifact.ffi, model.artifact.entry("forward")
    need = model.workspace_floats(T, B)
    n = 4 * (T * B * 4) + 4 * 4 * B + need + 64
    big = ffi.new("float[]", n)
    for i in range(n):
        big[i] = float(np.sin(i))
    off = dict(x=0, y=T * B * 4 + 8, h=2 * T * B * 4 + 16, c=2 * T * B * 4 + 16 + 4 * B + 8,
               ws=2 * T * B * 4 + 16 + 8 * B + 16)
    off.update(where)
    p = {k: big + v for k, v in off.items()}
    h0 = p["h"] if bufs.get("state_in_place") else ffi.NULL
    c0 = p["c"] if bufs.get("state_in_place") else ffi.NULL
    return fwd(model.c_weights, p["x"], T, B, ffi.NULL, h0, c0, p["y"], p["h"], p["c"], p["ws"], need)


def test_disjoint_buffers_and_in_place_state_work(model):
    assert _call(model, 6, 2, {}) == 0
    assert _call(model, 6, 2, dict(state_in_place=True)) == 0


@pytest.mark.parametrize("case", ["y_on_x", "y_half_on_x", "h_on_x", "ws_on_y", "c_on_h", "y_on_ws_end"])
def test_overlapping_outputs_are_refused(model, case):
    T, B = 6, 2
    rows = T * B * 4
    where = dict(y_on_x=dict(y=0), y_half_on_x=dict(y=rows // 2), h_on_x=dict(h=3),
                 ws_on_y=dict(ws=rows + 8 + 5), c_on_h=dict(c=2 * rows + 16 + 2),
                 y_on_ws_end=dict(y=2 * rows + 16 + 8 * B + 16 + model.workspace_floats(T, B) - 1))[case]
    assert _call(model, T, B, {}, **where) == CODES["ERR_ALIAS"]


def test_python_never_aliases_and_header_documents_the_code(model):
    x = np.random.default_rng(0).standard_normal((5, 2, 4)).astype(np.float32)
    y, _ = model(x)
    ref, _ = lstmgen.reference.lstm_forward(SPEC, lstmgen.random_weights(SPEC, 3), x)
    assert np.abs(y - ref).max() < 1e-5
    header = lstmgen.generate_sources(SPEC, prefix="alias").files["alias.h"]
    assert "#define ALIAS_ERR_ALIAS (-7)" in header


def test_step_refuses_overlap():
    spec = lstmgen.LSTMSpec(input_size=4, hidden_size=4)
    m = lstmgen.compile(spec, lstmgen.random_weights(spec), target="portable", prefix="salias")
    ffi, step = m.artifact.ffi, m.artifact.entry("step")
    B, need = 2, m.workspace_floats(1, 2)
    big = ffi.new("float[]", 64 + need)
    x, y, h, c, ws = big, big + 8, big + 16, big + 24, big + 32
    assert step(m.c_weights, x, B, h, c, y, ws, need) == 0
    assert step(m.c_weights, x, B, h, c, x, ws, need) == CODES["ERR_ALIAS"]  # y == x
    assert step(m.c_weights, x, B, h, h, y, ws, need) == CODES["ERR_ALIAS"]  # c == h
    assert step(m.c_weights, x, B, h, c, y, big + 20, need) == CODES["ERR_ALIAS"]  # ws over c
