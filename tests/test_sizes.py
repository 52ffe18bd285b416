"""sizes.py: one formula, two languages. The printed C agrees with Python's eval, and the C that a
model was built from reports exactly what its ScheduledProgram computes."""

from __future__ import annotations

import pytest

import lstmgen
from lstmgen import kernels
from lstmgen.sizes import B, Call, Clamp, Const, Min, Named, T, Var, Wide


def test_printing_and_folding():
    row = Named("M_WS_ROW_FLOATS", 80)
    ws = Var("Tw", Min(T, Const(4))) * B * row + Wide(B) * Named("M_WS_BATCH_FLOATS", 0)
    assert ws.c() == "Tw * B * M_WS_ROW_FLOATS + (int64_t)B * M_WS_BATCH_FLOATS"
    assert ws.eval(T=10, B=3) == 4 * 3 * 80 and ws.eval(T=2, B=3) == 2 * 3 * 80
    fit = Const(1 << 18) // (B * row)
    assert fit.c() == "262144 / (B * M_WS_ROW_FLOATS)"
    win = Clamp(Var("fit", fit), Const(1), T)
    assert win.c() == "fit >= T ? T : (fit < 1 ? 1 : fit)"
    assert [win.eval(T=t, B=b) for t, b in ((10, 1), (10_000, 64), (10_000, 100_000))] == [10, 51, 1]
    assert Call("m_window_steps", win).c() == "m_window_steps(T, B)"
    assert (Const(0) * B).c() == "0" and (B * 1).c() == "B" and (Const(2) * 3).c() == "6"
    assert (T + (B + 1)).c() == "T + B + 1" and (Const(8) // (T // B)).c() == "8 / (T / B)"
    with pytest.raises(ValueError, match="needs T"):
        (T * 2).eval(B=1)
    with pytest.raises(TypeError):
        T * 1.5  # noqa: B018


CASES = {
    "whole": (dict(input_size=3, hidden_size=5, num_layers=2, proj_size=2), dict(target="portable")),
    "chunk": (dict(input_size=3, hidden_size=5), dict(target="portable", chunk=3)),
    "bidir": (dict(input_size=3, hidden_size=4, bidirectional=True), dict(target="portable")),
}
if kernels.native_isa() in ("avx2", "avx512"):
    CASES["auto"] = (dict(input_size=3, hidden_size=16), dict(target="native"))


@pytest.mark.parametrize("name", sorted(CASES))
def test_c_and_python_agree(name):
    kw, opts = CASES[name]
    spec = lstmgen.LSTMSpec(**kw)
    model = lstmgen.compile(spec, lstmgen.random_weights(spec), **opts)
    sp = model.program
    assert sp.auto_window == (name == "auto")
    for T_ in (1, 2, 3, 7, 1000, 100_000):
        for B_ in (1, 2, 9, 4096):
            assert model.workspace_floats(T_, B_) == sp.workspace_floats(T_, B_), (T_, B_)
