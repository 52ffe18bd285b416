"""The kernel targets (kernels.py, templates/kernels.j2): every ISA this machine runs computes the
reference's numbers, schedules and streaming stay bit-identical on vector kernels too, the
generated C for every ISA compiles warning-free (gcc, clang, AArch64), the NEON kernels give the
right numbers under qemu, and the gate-blocked packed layout is what weights.py documents.
"""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
from conftest import need_tool

import lstmgen
from lstmgen import kernels, reference
from lstmgen.weights import pack, panel_rows

NATIVE = kernels.native_isa()
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Wdouble-promotion", "-Wconversion", "-Werror", "-O2"]
X86_FLAGS = {"avx2": ["-mavx2", "-mfma"], "avx512": ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512vnni", "-mfma"], "portable": []}

# Specs chosen to reach every kernel path on a 16-lane machine: two gate blocks with projection,
# batch_first and both directions; K and R past the K chunk (96 rows); one block of 16 units (the
# split sum and h written in place); an ONNX cell on 4-lane vectors (scalar cell per block);
# H with no vector width (portable kernels); a non-default activation set walking backwards;
# gate blocks that split unevenly into one-row tiles (5 blocks: 3 + 2, or 2 + 2 + 1 on AVX2).
SPECS = {
    "bidir_proj": dict(input_size=5, hidden_size=32, num_layers=2, proj_size=5, bidirectional=True, batch_first=True),
    "chunked": dict(input_size=130, hidden_size=128),
    "one_block": dict(input_size=3, hidden_size=16, num_layers=2),
    "onnx_cell": dict(input_size=5, hidden_size=12, num_layers=2, peepholes=True, clip=2.0, input_forget=True),
    "odd_h": dict(input_size=4, hidden_size=7, proj_size=3),
    "acts_reverse": dict(input_size=2, hidden_size=8, activations=["HardSigmoid", "Softsign", "ScaledTanh"], reverse=True),
    "uneven_tiles": dict(input_size=6, hidden_size=40, num_layers=2),
    "uneven_proj": dict(input_size=3, hidden_size=80, proj_size=9),
}
CASES = [("native", "approx", name) for name in SPECS]
CASES += [("native", "libm", n) for n in ("bidir_proj", "onnx_cell", "one_block")]
CASES += [("portable", "approx", n) for n in ("bidir_proj", "one_block", "onnx_cell")]
if NATIVE == "avx512":  # the 16-register AVX2 kernels run here too
    CASES += [("avx2", "approx", n) for n in ("bidir_proj", "chunked", "one_block", "uneven_tiles")]


def inputs(spec: lstmgen.LSTMSpec, T: int, B: int, seed: int):
    rng = np.random.default_rng(seed)
    C = spec.num_layers * spec.num_directions
    x = rng.standard_normal((B, T, spec.input_size) if spec.batch_first else (T, B, spec.input_size)).astype(np.float32)
    hx = (rng.standard_normal((C, B, spec.output_size)).astype(np.float32),
          rng.standard_normal((C, B, spec.hidden_size)).astype(np.float32))
    lengths = rng.integers(1, T + 1, size=B)
    return x, hx, lengths


def max_err(got, want) -> float:
    return max(float(np.abs(a - b).max()) for a, b in zip((got[0], *got[1]), (want[0], *want[1])))


@pytest.mark.parametrize("target,math,name", CASES, ids=[f"{t}-{m}-{n}" for t, m, n in CASES])
def test_target_matches_reference_and_streams_bit_exactly(target, math, name):
    spec = lstmgen.LSTMSpec(**SPECS[name])
    weights = lstmgen.random_weights(spec, seed=7)
    model = lstmgen.compile(spec, weights, target=target, math=math)
    T = 6
    for B in (1, 7):  # one row (the GEMV tiles) and several (the multi-row tiles, a short group)
        x, hx, lengths = inputs(spec, T, B, seed=B)
        got = model(x, hx, lengths=lengths)
        want = reference.lstm_forward(spec, weights, x, hx, lengths=lengths)
        assert max_err(got, want) <= 1e-5, (target, math, name, B)
        if spec.num_directions == 1 and not spec.reverse:
            out, _ = model(x, hx)
            s = model.stream(batch=B)
            s.state = (hx[0], hx[1])
            xt = x.transpose(1, 0, 2) if spec.batch_first else x
            steps = np.stack([s.step(np.ascontiguousarray(xt[t])) for t in range(T)])
            np.testing.assert_array_equal(steps, out.transpose(1, 0, 2) if spec.batch_first else out)


@pytest.mark.parametrize("name", ["one_block", "chunked"])
def test_vector_schedules_agree_bit_for_bit(name):
    spec = lstmgen.LSTMSpec(**SPECS[name])
    weights = lstmgen.random_weights(spec, seed=3)
    x, hx, lengths = inputs(spec, 5, 3, seed=0)
    looped = lstmgen.compile(spec, weights)(x, hx, lengths=lengths)
    others = [lstmgen.compile(spec, weights, time_loop="unrolled", seq_len=5)]
    if spec.num_directions == 1:
        others.append(lstmgen.compile(spec, weights, chunk=2))
    for model in others:
        for a, b in zip((looped[0], *looped[1]), (lambda r: (r[0], *r[1]))(model(x, hx, lengths=lengths))):
            np.testing.assert_array_equal(a, b)


def test_plan_choices():
    plan = lambda h, isa="avx512", **kw: kernels.plan(lstmgen.LSTMSpec(input_size=2, hidden_size=h, **kw), isa, "approx")  # noqa: E731
    assert (plan(16).vw, plan(16).ks, plan(16).nb1) == (16, 2, 1)
    assert (plan(256).vw, plan(256).ks, plan(256).nb1, plan(256).mr) == (16, 1, 4, 6)
    # the one-row step's gate blocks split evenly into tiles of at most 4 (2 on AVX2's 16 registers),
    # and a W_hh past 32 KiB into at least two tiles (walked in zig-zag order)
    assert (plan(256).tiles1, plan(256).nb1) == (4, 4) and (plan(48).tiles1, plan(48).nb1) == (1, 3)
    assert (plan(64).tiles1, plan(64).nb1) == (2, 2) and (plan(32).tiles1, plan(32).nb1) == (1, 2)
    assert (plan(80).tiles1, plan(80).nb1) == (2, 3) and (plan(144).tiles1, plan(144).nb1) == (3, 3)
    assert (plan(40, "avx2").tiles1, plan(40, "avx2").nb1) == (3, 2)
    assert plan(24).vw == 8 and plan(12).vw == 4 and plan(7).vw == 0
    assert plan(64, "avx2").vw == 8 and plan(64, "avx2").mr == 2
    assert plan(64, "portable").vw == 0 and plan(64, "neon").vw == 4
    assert plan(64).vector_cell and not plan(64, peepholes=True).vector_cell
    assert not kernels.plan(lstmgen.LSTMSpec(input_size=2, hidden_size=64), "avx512", "libm").vector_cell


def test_bad_target_and_math_are_refused():
    spec = lstmgen.LSTMSpec(input_size=2, hidden_size=4)
    w = lstmgen.random_weights(spec)
    with pytest.raises(ValueError, match="target"):
        lstmgen.compile(spec, w, target="sse9")
    with pytest.raises(ValueError, match="math"):
        lstmgen.generate_sources(spec, w, math="fast")
    foreign = "avx2" if NATIVE in ("neon", "portable") else "neon"
    with pytest.raises(ValueError, match=foreign):
        lstmgen.compile(spec, w, target=foreign)
    with pytest.raises(ValueError, match="native"):
        lstmgen.build_program(spec, lstmgen.Schedule(target="native"))


def test_gate_blocked_packing_layout():
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=8, proj_size=2)
    w = lstmgen.random_weights(spec, seed=1)
    (plain,) = pack(spec, w)
    (blocked,) = pack(spec, w, unit_block=4)
    U, H = 4, 8
    assert blocked.w_ih.shape == (2, 3, 16) and blocked.w_hh.shape == (2, 2, 16) and blocked.bias.shape == (2, 16)
    for b in range(H // U):
        for q in range(4):
            for u in range(U):
                row = q * H + b * U + u  # torch's row: gate q of unit b*U+u
                np.testing.assert_array_equal(blocked.w_ih[b, :, q * U + u], w["weight_ih_l0"][row])
                np.testing.assert_array_equal(blocked.w_hh[b, :, q * U + u], w["weight_hh_l0"][row])
                assert blocked.bias[b, q * U + u] == plain.bias[row]
    np.testing.assert_array_equal(blocked.w_hr, plain.w_hr)
    for arr in (blocked.w_ih, blocked.w_hh, blocked.bias, blocked.w_hr):  # whole-vector loads, one line each
        assert arr.ctypes.data % 64 == 0 and arr.flags.c_contiguous
    for bad in (3, -1, True, 2.0):
        with pytest.raises(ValueError, match="unit_block"):
            pack(spec, w, unit_block=bad)


def test_row_panel_packing_layout():
    """The portable kernels' layout: Q-row panels, the last N % Q rows in one more, each (K, rows)."""
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=5, proj_size=3)
    w = lstmgen.random_weights(spec, seed=1)
    assert panel_rows(20, 8) == [8, 8, 4] and panel_rows(16, 8) == [8, 8] and panel_rows(3, 8) == [3]
    (cell,) = pack(spec, w, panel=8)
    assert cell.panel == 8 and cell.unit_block == 0
    for packed, W in ((cell.w_ih, w["weight_ih_l0"]), (cell.w_hh, w["weight_hh_l0"]), (cell.w_hr, w["weight_hr_l0"])):
        N, K = W.shape
        assert packed.shape == (N * K,)  # no padding
        n0 = 0
        for q in panel_rows(N, 8):
            for r in range(q):
                np.testing.assert_array_equal(packed[n0 * K + np.arange(K) * q + r], W[n0 + r])
            n0 += q
    (plain,) = pack(spec, w)
    np.testing.assert_array_equal(cell.bias, plain.bias)
    for bad in (-1, True, 2.0):
        with pytest.raises(ValueError, match="panel"):
            pack(spec, w, panel=bad)
    with pytest.raises(ValueError, match="panel"):
        pack(spec, w, panel=8, unit_block=5)


def _generated(tmp_path, isa: str, math: str, name: str) -> str:
    spec = lstmgen.LSTMSpec(**SPECS[name])
    out = tmp_path / f"{isa}-{math}-{name}"
    lstmgen.generate(spec, lstmgen.random_weights(spec), out, prefix="m", target=isa, math=math)
    return str(out / "m.c")


@pytest.mark.parametrize("isa", ["portable", "avx2", "avx512", "neon"])
def test_generated_c_of_every_isa_is_warning_free(tmp_path, isa):
    cc = need_tool("gcc") if isa != "neon" else need_tool("aarch64-linux-gnu-gcc")
    clang = need_tool("clang")
    for math, name in (("approx", "bidir_proj"), ("approx", "one_block"), ("libm", "onnx_cell")):
        src = _generated(tmp_path, isa, math, name)
        arch = [] if isa != "neon" else ["--target=aarch64-linux-gnu"]
        for cmd in ([cc, *STRICT, *X86_FLAGS.get(isa, [])], [clang, *arch, *STRICT, *X86_FLAGS.get(isa, [])]):
            res = subprocess.run([*cmd, "-c", src, "-o", os.devnull], capture_output=True, text=True)
            assert res.returncode == 0, f"{' '.join(cmd[:2])} {isa} {math} {name}:\n{res.stderr[-2000:]}"


MAIN = r"""
#include <stdio.h>
#include "m.h"
#define NT 7
#define NB 3
static float x[NT * NB * M_INPUT_SIZE], y[NT * NB * M_NUM_DIRECTIONS * M_OUTPUT_SIZE];
static float h[M_NUM_LAYERS * M_NUM_DIRECTIONS * NB * M_OUTPUT_SIZE], c[M_NUM_LAYERS * M_NUM_DIRECTIONS * NB * M_HIDDEN_SIZE];
static float ws[1 << 16];
static const int32_t lengths[NB] = {7, 2, 5};
int main(void)
{
    for (int i = 0; i < NT * NB * M_INPUT_SIZE; ++i) {
        if (scanf("%a", &x[i]) != 1) return 2;
    }
    int rc = m_forward(&m_model_weights, x, NT, NB, lengths, NULL, NULL, y, h, c, ws, 1 << 16);
    for (int i = 0; i < NT * NB * M_NUM_DIRECTIONS * M_OUTPUT_SIZE; ++i) printf("%a\n", (double)y[i]);
    for (int i = 0; i < M_NUM_LAYERS * M_NUM_DIRECTIONS * NB * M_HIDDEN_SIZE; ++i) printf("%a\n", (double)c[i]);
    return rc;
}
"""


@pytest.mark.parametrize("math", ["approx", "libm"])
def test_neon_kernels_under_qemu(tmp_path, math):
    cc = need_tool("aarch64-linux-gnu-gcc")
    qemu = need_tool("qemu-aarch64")
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=12, num_layers=2, proj_size=5)  # 3 gate blocks of 4
    weights = lstmgen.random_weights(spec, seed=5)
    lstmgen.generate(spec, weights, tmp_path, prefix="m", target="neon", math=math)
    T, B = 7, 3  # NT, NB of MAIN
    lengths = np.array([7, 2, 5])
    (tmp_path / "main.c").write_text(MAIN)
    exe = str(tmp_path / "main")
    subprocess.run([cc, "-O2", "-std=c99", "-static", "-I", str(tmp_path),
                    str(tmp_path / "main.c"), str(tmp_path / "m.c"), str(tmp_path / "m_weights.c"), "-lm", "-o", exe], check=True)
    x = np.random.default_rng(0).standard_normal((T, B, 3)).astype(np.float32)
    run = subprocess.run([qemu, exe], input="\n".join(float(v).hex() for v in x.ravel()), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    vals = np.array([float.fromhex(v) for v in run.stdout.split()], np.float32)
    want, (_, c_n) = reference.lstm_forward(spec, weights, x, lengths=lengths)
    got_y, got_c = vals[: want.size].reshape(want.shape), vals[want.size:].reshape(c_n.shape)
    assert max(float(np.abs(got_y - want).max()), float(np.abs(got_c - c_n).max())) <= 1e-5


@pytest.mark.parametrize("reverse", [False, True])
def test_run_time_windows_match_the_whole_sequence(reverse):
    """A single-layer model on vector kernels with no chunk splits a long, wide input into windows
    at run time (schedule.WINDOW_FLOATS): the same bits as one window over the whole sequence, and the C
    sizes the workspace as Program.workspace_floats says."""
    if NATIVE == "portable":
        pytest.skip("run-time windows come with vector kernels")
    spec = lstmgen.LSTMSpec(input_size=5, hidden_size=64, reverse=reverse)
    weights = lstmgen.random_weights(spec, seed=4)
    model = lstmgen.compile(spec, weights)
    program = model.program
    assert program.auto_window and program.window(40, 64) == 16 and program.window(40, 1) == 40
    for T, B in ((40, 64), (1, 1), (7, 3), (10**6, 2**20), (2**31 - 1, 1), (2**31 - 1, 2**31 - 1)):
        assert model.workspace_floats(T, B) == program.workspace_floats(T, B)
    x, hx, lengths = inputs(spec, 40, 64, seed=1)
    whole = lstmgen.compile(spec, weights, chunk=40)  # one window of all 40 steps
    assert whole.program.window(40, 64) == 40
    got, want = model(x, hx, lengths=lengths), whole(x, hx, lengths=lengths)
    for a, b in zip((got[0], *got[1]), (want[0], *want[1])):
        np.testing.assert_array_equal(a, b)
    ref = reference.lstm_forward(spec, weights, x, hx, lengths=lengths)
    assert max_err(got, ref) < 1e-5
    two_layers = lstmgen.LSTMSpec(input_size=5, hidden_size=64, num_layers=2)  # layers would evict each other's weights
    assert not lstmgen.compile(two_layers, lstmgen.random_weights(two_layers)).program.auto_window


def _run(model, spec, B: int, seed: int):
    x, hx, lengths = inputs(spec, 6, B, seed=seed)
    return model(x, hx, lengths=lengths), (x, hx, lengths)


# K = R = 11 (proj) and 16: a sum of 11 terms leaves a tail of 11 % ks; 3 and 1 gate blocks.
KS_SPECS = {"proj": dict(input_size=5, hidden_size=48, proj_size=11), "one_block": dict(input_size=3, hidden_size=16, num_layers=2)}


@pytest.mark.skipif(NATIVE == "portable", reason="partial sums are a vector-kernel choice")
@pytest.mark.parametrize("name", list(KS_SPECS))
@pytest.mark.parametrize("ks", [1, 2, 3, 4])
def test_any_number_of_partial_sums_matches_the_reference(name, ks):
    """The recurrence's sum over k split into ks = 1..4 partial sums (the plan itself makes only
    1 or 2): with libm math within 1e-6 of the float64 reference; with the vector cell (approx)
    within 1e-6 of the same model with one sum."""
    spec = lstmgen.LSTMSpec(**KS_SPECS[name])
    weights = lstmgen.random_weights(spec, seed=11)
    plan = dict(ks=ks, mrs=max(1, 6 // ks))  # the plan= override (schedule.PLAN_KNOBS)
    c_text = lstmgen.generate_sources(spec, None, prefix="m", target=NATIVE, plan=plan).files["m.c"]
    assert (f"k += {ks})" in c_text) == (ks > 1)  # the forced plan reaches the C
    libm, approx = (lstmgen.compile(spec, weights, math=m, plan=plan) for m in ("libm", "approx"))
    one_sum = lstmgen.compile(spec, weights, math="approx", plan=dict(ks=1))
    for B in (1, 5):
        got, (x, hx, lengths) = _run(libm, spec, B, seed=B)
        assert max_err(got, reference.lstm_forward(spec, weights, x, hx, lengths=lengths)) <= 1e-6, (name, ks, B)
        assert max_err(_run(approx, spec, B, seed=B)[0], _run(one_sum, spec, B, seed=B)[0]) <= 1e-6, (name, ks, B)


def test_partial_sums_are_added_pairwise():
    from lstmgen.codegen import _pairwise

    assert _pairwise(1) == [] and _pairwise(2) == [("c", "c", "d1")]
    assert _pairwise(3) == [("c", "c", "d1"), ("c", "c", "d2")]
    assert _pairwise(4) == [("c", "c", "d1"), ("d2", "d2", "d3"), ("c", "c", "d2")]


@pytest.mark.skipif(NATIVE == "portable", reason="register tiles are the vector kernels'")
@pytest.mark.parametrize("ks", [1, 3])
def test_tile_shapes_give_the_same_bits(ks):
    """For a fixed ks, the projection's rows per tile (mr) and K chunk (kc), the recurrence's rows
    per tile (mrs) and the one-row step's tiles (tiles1 of nb1 blocks) change no bit: every
    element's sum runs over the same terms in the same order."""
    spec = lstmgen.LSTMSpec(input_size=130, hidden_size=64, proj_size=21)  # K past kc; 4 gate blocks (avx512)
    weights = lstmgen.random_weights(spec, seed=12)
    nb = spec.hidden_size // kernels.plan(spec, NATIVE, "approx").vw
    want: dict = {}
    for mr, mrs, tiles1, kc in ((1, 1, nb, 16), (3, 2, 2, 50), (5, 4, 1, 1000), (2, 3, 3, 17)):
        plan = dict(ks=ks, mr=mr, mrs=mrs, tiles1=tiles1, kc=kc)
        for math in ("approx", "libm"):
            model = lstmgen.compile(spec, weights, math=math, plan=plan)
            assert model.program.plan.nb1 == -(-nb // tiles1)
            for B in (1, 7):
                y, (h_n, c_n) = _run(model, spec, B, seed=B)[0]
                bits = np.concatenate([y.ravel(), h_n.ravel(), c_n.ravel()]).view(np.uint32)
                np.testing.assert_array_equal(bits, want.setdefault((math, B), bits),
                                              err_msg=f"mr={mr} mrs={mrs} tiles1={tiles1} kc={kc} {math} B={B}")
