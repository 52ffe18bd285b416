"""The self-test's golden vectors: what `<p>_selftest.c` feeds the model and expects back.

Input: an LSTMSpec, its weights, the build's Footprint, the prefix and the tolerance. Output:
`selftest_context`, the plain values selftest.c.j2 spells: an input sequence, the float64
lstmgen.reference outputs of two passes (zero state; one row reset while the others continue,
with variable lengths when B > 1) as C float arrays, the strides and the checks' descriptions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import reference
from ..codegen import _array_lines, c_float
from ..spec import LSTMSpec
from .footprint import Footprint

# The self-test's absolute tolerance vs the float64 reference (the README's): float32 with libm's
# expf/tanhf, or with math='approx', whose sigmoid/tanh error (kernels.py) is far below it.
DEFAULT_TOLERANCE = 1e-5
# Largest self-test golden data (floats in <p>_selftest.c's arrays): 16 MiB of const floats, some
# 60 MB of C text. More only comes from a huge max_batch (or chunk) and would take minutes to
# compute and format here before failing to fit any target.
MAX_SELFTEST_FLOATS = 2**22


def selftest_steps(fp: Footprint) -> int:
    """T for the self-test: past two windows (the last one partial) or the fixed length."""
    sched = fp.schedule
    if sched.time_loop == "unrolled":
        return fp.max_seq_len
    if sched.chunk:
        T = 2 * sched.chunk + 1 if sched.chunk <= 8 else sched.chunk + 3
        return min(T, fp.max_seq_len) if fp.max_seq_len else T
    return min(fp.max_seq_len, 32)


def selftest_floats(fp: Footprint) -> int:
    """Floats in the self-test's golden arrays: x and two passes of y, h_n and c_n (see selftest_context)."""
    spec, T, B = fp.spec, selftest_steps(fp), fp.max_batch
    cells, R = spec.num_layers * spec.num_directions, spec.output_size
    return T * B * (spec.input_size + 2 * spec.head_output_size) + 2 * cells * B * (R + spec.hidden_size)


def check_selftest_size(fp: Footprint) -> None:
    """Refuse a self-test whose golden arrays exceed MAX_SELFTEST_FLOATS, naming the option to lower."""
    n = selftest_floats(fp)
    if n <= MAX_SELFTEST_FLOATS:
        return
    T, B = selftest_steps(fp), fp.max_batch
    what = "max_batch" if B > 1 else ("chunk" if fp.schedule.chunk else "seq_len")
    raise ValueError(
        f"the self-test's golden vectors would hold {n} floats ({T} steps x max_batch={B}), above the cap of "
        f"{MAX_SELFTEST_FLOATS} (MAX_SELFTEST_FLOATS): lower {what}, or leave the self-test out "
        "(selftest=False, --no-selftest)"
    )


def _golden(spec: LSTMSpec, weights: Mapping[str, Any], T: int, B: int, seed: int, input_q: int = 0) -> dict[str, Any]:
    """Inputs and float64-reference outputs for the self-test's passes (see selftest.c.j2)."""
    rng = np.random.default_rng(seed)
    shape = (B, T, spec.input_size) if spec.batch_first else (T, B, spec.input_size)
    x = rng.standard_normal(shape).astype(np.float32)
    y_a, (h_a, c_a) = reference.lstm_forward(spec, weights, x, input_q=input_q)
    row = B - 1  # the row pass B restarts
    h0 = h_a.astype(np.float32)
    c0 = c_a.astype(np.float32)
    h0[:, row] = 0.0
    c0[:, row] = 0.0
    lengths = None if B == 1 else np.array([T] * (B - 1) + [max(1, T - T // 3)], dtype=np.int32)
    y_b, (h_b, c_b) = reference.lstm_forward(spec, weights, x, (h0, c0), lengths=lengths, input_q=input_q)
    return dict(x=x, y_a=y_a, h_a=h_a, c_a=c_a, y_b=y_b, h_b=h_b, c_b=c_b, lengths=lengths, row=row)


def selftest_context(spec: LSTMSpec, weights: Mapping[str, Any], fp: Footprint, prefix: str,
                     tolerance: float, seed: int = 0, input_q: int = 0) -> dict:
    """What selftest.c.j2 spells (beside the folder's common context). input_q: the kernels' rounding
    of product inputs (kernels.KernelPlan.input_q), which the goldens then make too."""
    T, B = selftest_steps(fp), fp.max_batch
    g = _golden(spec, weights, T, B, seed, input_q)
    n_in, D = spec.input_size, spec.num_directions
    R = spec.head_output_size  # y's features per step: D*R, or the head's output
    stream = D == 1 and not spec.reverse

    def arr(name: str, doc: str, value: np.ndarray) -> dict:
        return dict(name=name, doc=f"{doc} {'x'.join(map(str, value.shape))}", ctype="float", size=value.size,
                    lines=_array_lines(value))

    arrays = [
        arr("x_in", "x, input " + ("(B, T, I)" if spec.batch_first else "(T, B, I)"), g["x"]),
        arr("y_a", "pass A (zero state): y", g["y_a"]),
        arr("h_a", "pass A: h_n (L*D, B, R)", g["h_a"]),
        arr("c_a", "pass A: c_n (L*D, B, H)", g["c_a"]),
        arr("y_b", "pass B (row reset, the others continue): y", g["y_b"]),
        arr("h_b", "pass B: h_n", g["h_b"]),
        arr("c_b", "pass B: c_n", g["c_b"]),
    ]
    if g["lengths"] is not None:
        arrays.append(dict(name="lengths_b", doc="pass B: lengths (B)", ctype="int32_t", size=B,
                           lines=[", ".join(str(int(v)) for v in g["lengths"])]))
    checks = ["whole sequence from a zero state (y, h_n, c_n)"]
    if stream:
        checks.append("the same sequence through state_step, one step at a time")
    checks.append("state_reset_row of the last row, then a second pass from the other rows' state"
                  + (" with variable lengths" if g["lengths"] is not None else ""))
    checks.append("bad arguments return the documented error codes")
    if spec.batch_first:
        x_st, x_sb, y_st, y_sb = n_in, T * n_in, R, T * R
    else:
        x_st, x_sb, y_st, y_sb = B * n_in, n_in, B * R, R
    return dict(
        t_steps=T,
        batch=B,
        tolerance=c_float(tolerance),
        tolerance_text=f"{tolerance:g}, absolute",
        arrays=arrays,
        checks=checks,
        stream=stream,
        cells=spec.num_layers * D,
        y_row=R,
        y_step=f"{prefix.upper()}_HEAD_OUTPUT_SIZE" if spec.head else f"{prefix.upper()}_OUTPUT_SIZE",
        x_st=x_st,
        x_sb=x_sb,
        y_st=y_st,
        y_sb=y_sb,
        reset_row=g["row"],
        has_lengths=g["lengths"] is not None,
        pass_b_doc="the other rows continue from their state" + (", with variable lengths" if g["lengths"] is not None else ""),
        summary=spec.summary(),
    )
