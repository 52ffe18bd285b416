"""Low-precision weights (issue 15): weights_dtype = float16, bfloat16 or int8 for the weight
matrices, state and sums in float32. The C is checked against the numpy reference run on the
dequantised weights (what the C computes with: tight), separately from the quantisation error
against the float32 weights (measured, with loose bounds here; the bench states it per config)."""

import os
import pickle
import subprocess

import numpy as np
import pytest
from conftest import kernel_reference, max_abs_diff, need_module

import lstmgen
from lstmgen import kernels, reference
from lstmgen.embedded import embedded_sources, report
from lstmgen.weights import dequantize, dequantized_weights, quantize, random_weights

DTYPES = ("float16", "bfloat16", "int8")
TARGETS = ["portable"] + ([kernels.native_isa()] if kernels.native_isa() != "portable" else [])
SPECS = [
    dict(input_size=10, hidden_size=16),
    dict(input_size=7, hidden_size=32, num_layers=2, proj_size=8),
    dict(input_size=5, hidden_size=24, bidirectional=True, bias=False),
]
# the quantisation's own error on these small random models, T = 20 (measured: float16 1.1e-4,
# bfloat16 9.1e-4, int8 2.7e-3): a check that the weights are the model's, not a target
QUANT_BOUND = {"float16": 1e-3, "bfloat16": 5e-3, "int8": 2e-2}


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kw", SPECS, ids=lambda kw: "-".join(f"{k}{v}" for k, v in kw.items()))
def test_c_matches_the_reference_on_the_dequantised_weights(kw, dtype, target):
    spec = lstmgen.LSTMSpec(**kw)
    w = random_weights(spec, seed=3)
    x = np.random.default_rng(0).standard_normal((20, 3, spec.input_size)).astype(np.float32)
    model = lstmgen.compile(spec, w, target=target, weights_dtype=dtype)
    got = model(x)
    want, tol = kernel_reference(model, spec, dequantized_weights(spec, w, dtype), x)
    assert max_abs_diff(got, want) < tol
    quant = max_abs_diff(got, reference.lstm_forward(spec, w, x))
    assert 0 < quant < QUANT_BOUND[dtype], f"{dtype}: error vs the float32 weights {quant:.2e}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_schedules_and_tiles_agree_bit_for_bit(dtype):
    spec = lstmgen.LSTMSpec(input_size=6, hidden_size=32, num_layers=2)
    w = random_weights(spec, seed=5)
    x = np.random.default_rng(1).standard_normal((12, 2, 6)).astype(np.float32)
    base = lstmgen.compile(spec, w, weights_dtype=dtype)
    y0, (h0, c0) = base(x)
    others = [lstmgen.compile(spec, w, weights_dtype=dtype, chunk=5),
              lstmgen.compile(spec, w, weights_dtype=dtype, time_loop="unrolled", seq_len=12)]
    if base.program.plan.vector:
        others.append(lstmgen.compile(spec, w, weights_dtype=dtype, plan={"mr": 1, "tiles1": 2, "kc": 3}))
    for m in others:
        y, (h, c) = m(x)
        np.testing.assert_array_equal(y, y0)
        np.testing.assert_array_equal(c, c0)
    stream = base.stream(batch=2)
    ys = np.stack([stream.step(x[t]) for t in range(12)])
    np.testing.assert_array_equal(ys, y0)


def test_quantize_rounds_as_documented():
    rng = np.random.default_rng(2)
    w = (rng.standard_normal((12, 9)) * 3).astype(np.float32)
    w[3] = 0.0  # an all-zero row: scale 1, q 0
    h, _ = quantize(w, "float16")
    np.testing.assert_array_equal(dequantize(h, None, "float16"), w.astype(np.float16).astype(np.float32))
    b, _ = quantize(w, "bfloat16")
    deq = dequantize(b, None, "bfloat16")
    assert np.all(deq.view(np.uint32) & 0xFFFF == 0)
    assert np.all(np.abs(deq - w) <= np.abs(w) * 2.0 ** -8)  # round to nearest: half of bfloat16's 2^-7
    q, s = quantize(w, "int8")
    assert q.dtype == np.int8 and s.dtype == np.float32 and np.abs(q).max() == 127
    np.testing.assert_allclose(s[[0, 1, 2, 4]], np.abs(w[[0, 1, 2, 4]]).max(axis=1) / 127, rtol=1e-7)
    assert s[3] == 1.0 and not q[3].any()
    assert np.all(np.abs(dequantize(q, s, "int8") - w) <= s[:, None] * 0.5 * (1 + 1e-6))


def test_bfloat16_matches_torch_rounding():
    torch = need_module("torch")
    w = (np.random.default_rng(4).standard_normal((64, 33)) * 10).astype(np.float32)
    b, _ = quantize(w, "bfloat16")
    np.testing.assert_array_equal(dequantize(b, None, "bfloat16"), torch.from_numpy(w).bfloat16().float().numpy())


def test_bad_dtypes_and_unrepresentable_weights_are_refused():
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=4)
    w = random_weights(spec, seed=0)
    with pytest.raises(ValueError, match="weights_dtype must be one of"):
        lstmgen.compile(spec, w, weights_dtype="float8")
    big = dict(w, weight_hh_l0=w["weight_hh_l0"] * 1e6)
    with pytest.raises(ValueError, match="weight_hh_l0.*float16"):
        lstmgen.compile(spec, big, weights_dtype="float16")
    nan = dict(w, weight_ih_l0=np.where(np.eye(16, 3) > 0, np.nan, w["weight_ih_l0"]).astype(np.float32))
    with pytest.raises(ValueError, match="weight_ih_l0.*int8"):
        lstmgen.compile(spec, nan, weights_dtype="int8", allow_nonfinite=True)


def test_models_pickle_and_take_new_weights_in_their_dtype():
    spec = lstmgen.LSTMSpec(input_size=4, hidden_size=8)
    w, w2 = random_weights(spec, seed=0), random_weights(spec, seed=1)
    x = np.random.default_rng(3).standard_normal((5, 1, 4)).astype(np.float32)
    m = lstmgen.compile(spec, w, weights_dtype="int8")
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(m))(x)[0], m(x)[0])
    other = m.with_weights(w2)
    want, tol = kernel_reference(other, spec, dequantized_weights(spec, w2, "int8"), x)
    assert max_abs_diff(other(x), want) < tol
    assert "weights=int8" in str(m.schedule)


@pytest.mark.parametrize("dtype", DTYPES)
def test_embedded_folder_self_test_passes_and_flash_shrinks(tmp_path, dtype, cc="cc"):
    spec = lstmgen.LSTMSpec(input_size=12, hidden_size=16, num_layers=2, proj_size=8)
    w = random_weights(spec, seed=7)
    files = embedded_sources(spec, w, weights_dtype=dtype)
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    srcs = [n for n in files if n.endswith(".c")]
    subprocess.run([cc, "-O2", "-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Wconversion", "-Wdouble-promotion",
                    "-Wvla", "-Werror", "-o", "selftest", *srcs, "-lm"], cwd=tmp_path, check=True)
    out = subprocess.run([os.path.join(tmp_path, "selftest")], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0 and "PASS" in out.stdout, out.stdout
    f32 = report(spec, w, measure_code=False)
    low = report(spec, w, measure_code=False, weights_dtype=dtype)

    def flash(text):
        line = next(x for x in text.splitlines() if "flash, weights" in x)
        return int(line.split("bytes")[0].split()[-1])
    ratio = flash(low) / flash(f32)
    assert ratio < {"float16": 0.55, "bfloat16": 0.55, "int8": 0.45}[dtype], ratio  # H = 16: biases and scales weigh in
    assert f"weights={dtype}" in low


@pytest.mark.parametrize("isa", ["portable", "avx2", "avx512", "neon"])
def test_generated_c_of_every_dtype_and_isa_is_warning_free(tmp_path, isa):
    from conftest import need_tool
    from test_kernels import STRICT, X86_FLAGS
    cc = need_tool("gcc") if isa != "neon" else need_tool("aarch64-linux-gnu-gcc")
    clang = need_tool("clang")
    arch = [] if isa != "neon" else ["--target=aarch64-linux-gnu"]
    flags = X86_FLAGS.get(isa, []) + (["-mf16c"] if isa in ("avx2", "avx512") else [])
    # int8 on AVX-512 both ways, whatever this host has: the VNNI kernels and the widening ones
    runs = [(d, None) for d in DTYPES] + {"avx512": [("int8", {"vnni": 1}), ("int8", {"pmadd": 1}), ("int8", {"vnni": 0, "pmadd": 0})],
                                          "avx2": [("int8", {"pmadd": 0})]}.get(isa, [])
    for dtype, plan in runs:
        for kw in SPECS[1:]:  # projection (matvec), bidirectional without bias
            spec = lstmgen.LSTMSpec(**kw)
            if plan and (plan.get("vnni") or plan.get("pmadd")) and spec.hidden_size % 16:
                continue  # the AVX-512 integer kernels run at 16 lanes
            out = tmp_path / f"{dtype}{len(kw)}{plan and sorted(plan.items())}"
            lstmgen.generate(spec, random_weights(spec), out, prefix="m", target=isa, weights_dtype=dtype, plan=plan)
            for cmd in ([cc, *STRICT, *flags], [clang, *arch, *STRICT, *flags]):
                for src in ("m.c", "m_weights.c"):
                    res = subprocess.run([*cmd, "-I", str(out), "-c", str(out / src), "-o", os.devnull], capture_output=True, text=True)
                    assert res.returncode == 0, f"{' '.join(cmd[:2])} {isa} {dtype} {kw} {src}:\n{res.stderr[-2000:]}"


@pytest.mark.parametrize("dtype", DTYPES)
def test_neon_dtype_kernels_under_qemu(tmp_path, dtype):
    from conftest import need_tool
    from test_kernels import MAIN
    cc = need_tool("aarch64-linux-gnu-gcc")
    qemu = need_tool("qemu-aarch64")
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=12, num_layers=2, proj_size=5)  # 3 gate blocks of 4
    weights = random_weights(spec, seed=5)
    lstmgen.generate(spec, weights, tmp_path, prefix="m", target="neon", weights_dtype=dtype)
    T, B = 7, 3  # NT, NB of MAIN
    (tmp_path / "main.c").write_text(MAIN)
    exe = str(tmp_path / "main")
    subprocess.run([cc, "-O2", "-std=c99", "-static", "-I", str(tmp_path), str(tmp_path / "main.c"), str(tmp_path / "m.c"),
                    str(tmp_path / "m_weights.c"), "-lm", "-o", exe], check=True)
    x = np.random.default_rng(0).standard_normal((T, B, 3)).astype(np.float32)
    run = subprocess.run([qemu, exe], input="\n".join(float(v).hex() for v in x.ravel()), capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    vals = np.array([float.fromhex(v) for v in run.stdout.split()], np.float32)
    want, (_, c_n) = reference.lstm_forward(spec, dequantized_weights(spec, weights, dtype), x, lengths=np.array([7, 2, 5]))
    got_y, got_c = vals[: want.size].reshape(want.shape), vals[want.size:].reshape(c_n.shape)
    assert max(float(np.abs(got_y - want).max()), float(np.abs(got_c - c_n).max())) <= 1e-5


# the x86 integer kernels of int8 (kernels.py): AVX-512 VNNI (vpdpbusd) and pmaddwd on AVX2 and on
# AVX-512 (hosts without VNNI), each where this host runs it; (target, plan knob, an instruction only
# that kernel's C has). Each is asked for ({knob: 1}: pmadd on AVX-512 is the default only where the
# host lacks VNNI; test_plan checks the defaults), against every integer knob off (the widening kernels).
INTEGER_X86 = [
    pytest.param("native", "vnni", "_mm512_dpbusd_epi32", marks=pytest.mark.skipif(
        not kernels.host_vnni(), reason="runs AVX-512 VNNI code (this host's compiler offers none)")),
    pytest.param("avx512", "pmadd", "_mm512_madd_epi16", marks=pytest.mark.skipif(
        not (kernels.host_runs("avx512") and "__AVX512BW__" in kernels._native_cc_macros()),
        reason="runs AVX-512 BW code (this host's compiler offers none)")),
    pytest.param("avx2", "pmadd", "_mm256_madd_epi16", marks=pytest.mark.skipif(
        not kernels.host_runs("avx2"), reason="runs AVX2 code (this host's compiler offers none)")),
]
INTEGER_OFF = dict.fromkeys(kernels.X86_INTEGER, 0)


@pytest.mark.parametrize("target, knob, instruction", INTEGER_X86)
def test_x86_integer_kernels_round_inputs_to_16_bits(target, knob, instruction):
    """int8 weights on x86 integer dot products, inputs rounded to 16 bits per row (kernels.py, VNNI
    and PMADD). Against the reference that rounds them the same way: tight; against the widening
    kernels (knob=0): only the 16-bit rounding apart, far below the int8 weights' own error."""
    spec = lstmgen.LSTMSpec(input_size=20, hidden_size=32, num_layers=2, proj_size=13, bidirectional=True)
    w = random_weights(spec, seed=8)
    x = np.random.default_rng(4).standard_normal((30, 5, 20)).astype(np.float32)
    lengths = np.array([30, 3, 17, 1, 29])
    fast = lstmgen.compile(spec, w, weights_dtype="int8", target=target, plan={knob: 1})
    wide = lstmgen.compile(spec, w, weights_dtype="int8", target=target, plan=INTEGER_OFF)
    assert getattr(fast.program.plan, knob) and not getattr(wide.program.plan, knob)
    c = lstmgen.generate_sources(spec, w, target=target, weights_dtype="int8", plan={knob: 1}).files["lstm.c"]
    assert instruction in c and instruction not in lstmgen.generate_sources(
        spec, w, target=target, weights_dtype="int8", plan=INTEGER_OFF).files["lstm.c"]
    deq = dequantized_weights(spec, w, "int8")
    got = fast(x, lengths=lengths)
    want, tol = kernel_reference(fast, spec, deq, x, lengths=lengths)
    assert max_abs_diff(got, want) < tol
    rounding = max_abs_diff(got, wide(x, lengths=lengths))
    weights_err = max_abs_diff(wide(x, lengths=lengths), reference.lstm_forward(spec, w, x, lengths=lengths))
    assert 0 < rounding < weights_err / 20, (rounding, weights_err)
    # rows are independent of the batch: one row alone gives the same bits
    np.testing.assert_array_equal(fast(x[:, 2:3], lengths=lengths[2:3])[0][:, 0], got[0][:, 2])
    # and the schedules and tile shapes agree bit for bit (streaming and chunks: one direction)
    uni = lstmgen.LSTMSpec(input_size=20, hidden_size=32, num_layers=2, proj_size=13)
    wu = random_weights(uni, seed=9)
    base = lstmgen.compile(uni, wu, weights_dtype="int8", target=target, plan={knob: 1})
    y0 = base(x)[0]
    for other in (lstmgen.compile(uni, wu, weights_dtype="int8", target=target, chunk=7, plan={knob: 1}),
                  lstmgen.compile(uni, wu, weights_dtype="int8", target=target, time_loop="unrolled", seq_len=30, plan={knob: 1}),
                  lstmgen.compile(uni, wu, weights_dtype="int8", target=target, plan={knob: 1, "mr": 1, "tiles1": 2})):
        np.testing.assert_array_equal(other(x)[0], y0)
    stream = base.stream(batch=5)
    np.testing.assert_array_equal(np.stack([stream.step(x[t]) for t in range(30)]), y0)


@pytest.mark.parametrize("target, knob, instruction", INTEGER_X86)
def test_x86_integer_kernels_rows_with_nan_inf_or_only_tiny_inputs(target, knob, instruction):
    spec = lstmgen.LSTMSpec(input_size=16, hidden_size=32)
    w = random_weights(spec, seed=2)
    m = lstmgen.compile(spec, w, weights_dtype="int8", target=target, plan={knob: 1})
    assert getattr(m.program.plan, knob)
    x = np.random.default_rng(5).standard_normal((4, 4, 16)).astype(np.float32)
    x[1, 1, 3], x[2, 2, 0] = np.inf, np.nan  # these rows turn NaN from then on, as with the float kernels
    x[:, 3] = 1e-35  # below 1e-30: counts as zeros (their products are below float32's resolution of the bias)
    y, (h, c) = m(x)
    assert np.isnan(y[1:, 1]).all() and np.isnan(y[2:, 2]).all() and np.isfinite(y[:1, 1:3]).all()
    assert np.isfinite(y[:, [0, 3]]).all()
    zero = m(np.zeros_like(x[:, 3:4]))[0][:, 0]
    np.testing.assert_array_equal(y[:, 3], zero)
    with np.errstate(invalid="ignore"):  # the reference's NaN rows
        ref, _ = kernel_reference(m, spec, dequantized_weights(spec, w, "int8"), x)
    np.testing.assert_allclose(y[:, [0, 3]], ref[0][:, [0, 3]], atol=1e-5)


def test_idot_kernels_are_the_embedded_int8_default_and_smlad_gives_the_plain_c_bits(tmp_path):
    """Static int8 builds: exact int32 dot products on 16-bit inputs (kernels.py, IDOT), so the
    plain C of the host and the SMLAD path of an Arm core with the DSP extension (ARMv7-A under
    qemu-arm) give the same outputs, bit for bit (the self-tests print the same errors)."""
    from conftest import need_tool
    from embedded_tools import build_selftest, passed, run
    spec = lstmgen.LSTMSpec(input_size=7, hidden_size=12, num_layers=2, proj_size=5)  # K = 7, 5, 12: padded quads
    w = random_weights(spec, seed=6)
    files = embedded_sources(spec, w, prefix="m", weights_dtype="int8", seq_len=9, max_batch=2)
    assert "__smlad" in files["m.c"] and "m_qdot" in files["m.c"]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    outs = []
    for cc, wrap, flags in [("cc", [], ["-O2", "-std=c99"]),
                            (need_tool("arm-linux-gnueabihf-gcc"), [need_tool("qemu-arm"), "-L", "/usr/arm-linux-gnueabihf"],
                             ["-O2", "-std=c99", "-march=armv7-a", "-mfpu=vfpv3-d16", "-mfloat-abi=hard"])]:
        exe = str(tmp_path / f"st{len(outs)}")
        build_selftest(str(tmp_path), "m", cc, flags, exe)
        r = run([*wrap, exe])
        assert passed(r.stdout, "m"), r.stdout + r.stderr
        outs.append([line for line in r.stdout.splitlines() if "max abs err" in line])
    assert outs[0] == outs[1] and outs[0]
