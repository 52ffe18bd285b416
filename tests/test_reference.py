"""Tests for lstmgen.reference, the float64 golden reference.

Input: the torch-recorded goldens in tests/golden/*.npz, and hand-built single-node ONNX LSTM
models run through onnxruntime (for the ONNX-only extras torch cannot produce).
Output: pass/fail; the reference must match both within 1e-5.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from goldens import CASES, load_case

from lstmgen.reference import activation, lstm_forward
from lstmgen.spec import LSTMSpec

ATOL = 1e-5


# ---- torch goldens ----------------------------------------------------------------------


@pytest.mark.parametrize("path", CASES, ids=[os.path.basename(p)[:-4] for p in CASES])
def test_matches_torch_golden(path):
    case = load_case(path)
    out, (h_n, c_n) = lstm_forward(case["spec"], case["weights"], case["x"], case["hx"], case["lengths"])
    for name, got, want in (("out", out, case["out"]), ("h_n", h_n, case["h_n"]), ("c_n", c_n, case["c_n"])):
        assert got.dtype == np.float64
        assert got.shape == want.shape, f"{name}: shape {got.shape} != torch {want.shape}"
        err = float(np.abs(got - want).max())
        assert err < ATOL, f"{name}: max abs error {err:.3g} vs torch"


def test_golden_cases_present():
    names = {os.path.basename(p)[:-4] for p in CASES}
    for required in ("plain", "multilayer", "bidirectional", "proj", "proj_bidirectional", "nobias",
                     "batch_first", "unbatched", "lengths", "lengths_unidirectional", "h0c0", "everything"):
        assert required in names


# ---- validation -------------------------------------------------------------------------


def _small():
    spec = LSTMSpec(input_size=3, hidden_size=4, num_layers=2, proj_size=2)
    rng = np.random.default_rng(0)
    w = {k: rng.standard_normal(s) for k, s in spec.weight_shapes().items()}
    return spec, w, rng.standard_normal((5, 2, 3))


def test_rejects_missing_extra_and_misshaped_weights():
    spec, w, x = _small()
    bad = dict(w)
    del bad["weight_hr_l1"]
    with pytest.raises(ValueError, match=r"weight_hr_l1.*\(2, 4\)"):
        lstm_forward(spec, bad, x)
    bad = dict(w, weight_ph_l0=np.zeros(12))
    with pytest.raises(ValueError, match="weight_ph_l0"):
        lstm_forward(spec, bad, x)
    bad = dict(w, weight_ih_l1=np.zeros((16, 3)))
    with pytest.raises(ValueError, match=r"weight_ih_l1.*\(16, 2\)"):
        lstm_forward(spec, bad, x)


def test_rejects_bad_input_state_and_lengths():
    spec, w, x = _small()
    with pytest.raises(ValueError, match="3-D"):
        lstm_forward(spec, w, x[0, 0])
    with pytest.raises(ValueError, match="feature size"):
        lstm_forward(spec, w, x[:, :, :2])
    with pytest.raises(ValueError, match="h0"):
        lstm_forward(spec, w, x, (np.zeros((2, 2, 4)), np.zeros((2, 2, 4))))
    for lengths in ([0, 5], [6, 1], [5], [2.0, 3.0]):
        with pytest.raises(ValueError, match="lengths"):
            lstm_forward(spec, w, x, lengths=np.array(lengths))


def test_unbatched_equals_batch_of_one():
    spec, w, x = _small()
    hx = (np.ones((2, 1, 2)) * 0.3, np.ones((2, 1, 4)) * -0.2)
    out, (h, c) = lstm_forward(spec, w, x[:, :1], hx)
    out1, (h1, c1) = lstm_forward(spec, w, x[:, 0], (hx[0][:, 0], hx[1][:, 0]))
    np.testing.assert_allclose(out1, out[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(h1, h[:, 0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(c1, c[:, 0], rtol=0, atol=1e-12)


def test_activations_are_finite_at_extremes():
    x = np.array([-1e4, -50.0, -1.0, 0.0, 1.0, 50.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise", under="ignore"):
        for name in ("Sigmoid", "Tanh", "Relu", "Softsign", "Softplus"):
            assert np.isfinite(activation(name, None, None, x)).all(), name
        assert np.isfinite(activation("Elu", 1.0, None, x)).all()
    np.testing.assert_allclose(activation("Sigmoid", None, None, x[2:5]), 1 / (1 + np.exp(-x[2:5])))
    np.testing.assert_allclose(activation("Softplus", None, None, x[1:6]), np.log1p(np.exp(x[1:6])))
    np.testing.assert_allclose(activation("Softplus", None, None, x[-1:]), x[-1:])


# ---- ONNX extras against onnxruntime ----------------------------------------------------


def _import_onnx():
    """onnx + onnxruntime; skipped locally when missing, but a hard failure under CI."""
    if os.environ.get("CI"):
        import onnx
        import onnxruntime
    else:
        onnx = pytest.importorskip("onnx")
        onnxruntime = pytest.importorskip("onnxruntime")
    return onnx, onnxruntime


# ONNX takes activation_alpha / activation_beta as flat lists holding entries only for the
# activations that use them, in (f, g, h[, f, g, h]) order (onnxruntime's reading; one entry
# per activation regardless gives wrong results there).
_USES_ALPHA = {"Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu"}
_USES_BETA = {"Affine", "ScaledTanh", "HardSigmoid"}


def _blocks(a, H, order):
    return np.concatenate([a[k * H:(k + 1) * H] for k in order], axis=0)


def _onnx_weights(spec, w):
    """torch layout (gates i,f,g,o; peepholes i,f,o) -> ONNX W, R, B, P (gates i,o,f,c; P i,o,f)."""
    H = spec.hidden_size
    gates = [0, 3, 1, 2]
    W, R, B, P = [], [], [], []
    for d in range(spec.num_directions):
        sfx = "l0" + ("_reverse" if d == 1 else "")
        W.append(_blocks(w[f"weight_ih_{sfx}"], H, gates))  # (4H, I)
        R.append(_blocks(w[f"weight_hh_{sfx}"], H, gates))  # (4H, H)
        if spec.bias:
            B.append(np.concatenate([_blocks(w[f"bias_ih_{sfx}"], H, gates), _blocks(w[f"bias_hh_{sfx}"], H, gates)]))
        if spec.peepholes:
            P.append(_blocks(w[f"weight_ph_{sfx}"], H, [0, 2, 1]))  # (3H,)

    def stack(parts):
        return np.stack(parts).astype(np.float32) if parts else None  # (D, ...)

    return stack(W), stack(R), stack(B), stack(P)


def _run_onnxruntime(spec, w, x, hx, lengths):
    """One ONNX LSTM node (opset 14) on onnxruntime; returns out (T, B, D*H), Y_h, Y_c."""
    onnx, ort = _import_onnx()
    from onnx import TensorProto, helper

    assert spec.num_layers == 1 and spec.proj_size == 0 and not spec.batch_first
    D, H = spec.num_directions, spec.hidden_size
    W, R, B, P = _onnx_weights(spec, w)
    acts = [a for d in range(D) for a in spec.direction_activations(d)]
    attrs = dict(
        hidden_size=H,
        activations=[a.name for a in acts],
        direction="bidirectional" if spec.bidirectional else ("reverse" if spec.reverse else "forward"),
    )
    alphas = [a.alpha for a in acts if a.name in _USES_ALPHA]
    betas = [a.beta for a in acts if a.name in _USES_BETA]
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    if spec.clip is not None:
        attrs["clip"] = spec.clip
    if spec.input_forget:
        attrs["input_forget"] = 1

    # LSTM inputs by position: X, W, R, B, sequence_lens, initial_h, initial_c, P ("" = absent)
    feeds = {"X": x.astype(np.float32), "W": W, "R": R}
    names = ["X", "W", "R", "", "", "", "", ""]
    if B is not None:
        feeds["B"], names[3] = B, "B"
    if lengths is not None:
        feeds["sequence_lens"], names[4] = np.asarray(lengths, np.int32), "sequence_lens"
    if hx is not None:
        feeds["initial_h"], names[5] = hx[0].astype(np.float32), "initial_h"
        feeds["initial_c"], names[6] = hx[1].astype(np.float32), "initial_c"
    if P is not None:
        feeds["P"], names[7] = P, "P"
    while names[-1] == "":
        names.pop()

    inputs = [
        helper.make_tensor_value_info(
            n, TensorProto.INT32 if n == "sequence_lens" else TensorProto.FLOAT, list(feeds[n].shape)
        )
        for n in names
        if n
    ]
    outputs = [
        helper.make_tensor_value_info("Y", TensorProto.FLOAT, [None] * 4),
        helper.make_tensor_value_info("Y_h", TensorProto.FLOAT, [None] * 3),
        helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [None] * 3),
    ]
    node = helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], **attrs)
    model = helper.make_model(
        helper.make_graph([node], "lstm", inputs, outputs),
        opset_imports=[helper.make_opsetid("", 14)],
        ir_version=8,
    )
    onnx.checker.check_model(model)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    Y, Y_h, Y_c = sess.run(None, feeds)  # (T, D, B, H), (D, B, H), (D, B, H)
    T, Bn = x.shape[:2]
    return Y.transpose(0, 2, 1, 3).reshape(T, Bn, D * H), Y_h, Y_c


ACTS = {
    "hardsigmoid_scaledtanh_leakyrelu": [("HardSigmoid", 0.3, 0.4), ("ScaledTanh", 1.2, 0.7), ("LeakyRelu", 0.05)],
    "sigmoid_affine_elu": ["Sigmoid", ("Affine", 0.8, 0.1), ("Elu", 0.9)],
    "softsign_softplus_thresholdedrelu": ["Softsign", "Softplus", ("ThresholdedRelu", 0.3)],
    "sigmoid_relu_tanh": ["Sigmoid", "Relu", "Tanh"],
    "affine_elu_softplus": [("Affine", 0.5, 0.2), ("Elu", 1.3), "Softplus"],
    "leakyrelu_thresholdedrelu_scaledtanh": [("LeakyRelu", 0.2), ("ThresholdedRelu", 0.1), ("ScaledTanh", 0.9, 1.1)],
}

# name -> (LSTMSpec extras, run options). Sizes are tiny; clip/peephole scales make them bite.
ONNX_CASES = {
    "plain": (dict(), dict()),
    "peepholes": (dict(peepholes=True), dict(pscale=2.0)),
    "clip": (dict(clip=0.4), dict(xscale=3.0, h0=True)),
    "peepholes_clip": (dict(peepholes=True, clip=0.4), dict(xscale=2.0, pscale=3.0)),
    "input_forget": (dict(input_forget=True), dict()),
    "input_forget_peepholes": (dict(input_forget=True, peepholes=True), dict(pscale=2.0)),
    **{f"act_{k}": (dict(activations=v), dict(T=4, scale=0.4)) for k, v in ACTS.items()},
    "reverse": (dict(reverse=True), dict(h0=True)),
    "bidirectional": (dict(bidirectional=True), dict(h0=True)),
    "bidirectional_two_activation_sets": (
        dict(bidirectional=True, activations=ACTS["hardsigmoid_scaledtanh_leakyrelu"] + ACTS["sigmoid_affine_elu"]),
        dict(),
    ),
    "nobias": (dict(bias=False, peepholes=True), dict()),
    "sequence_lens": (dict(), dict(lengths=[1, 4, 3], h0=True)),
    "sequence_lens_reverse": (dict(reverse=True), dict(lengths=[1, 4, 3], h0=True)),
    "sequence_lens_bidirectional": (dict(bidirectional=True), dict(lengths=[5, 2, 3], h0=True)),
    "everything": (
        dict(
            bidirectional=True, peepholes=True, clip=0.6, input_forget=True,
            activations=ACTS["affine_elu_softplus"] + ACTS["softsign_softplus_thresholdedrelu"],
        ),
        dict(lengths=[3, 5, 1], h0=True, pscale=2.0, xscale=2.0),
    ),
}


@pytest.mark.parametrize("name", list(ONNX_CASES))
def test_onnx_extras_match_onnxruntime(name):
    extras, opts = ONNX_CASES[name]
    spec = LSTMSpec(input_size=4, hidden_size=5, **extras)
    T, B = opts.get("T", 5), 3
    rng = np.random.default_rng(sorted(ONNX_CASES).index(name))
    w = {k: (rng.standard_normal(s) * opts.get("scale", 0.5)).astype(np.float32) for k, s in spec.weight_shapes().items()}
    for k, shape in spec.weight_shapes().items():
        if k.startswith("weight_ph"):  # peepholes larger, so that they matter
            w[k] = (rng.standard_normal(shape) * opts.get("pscale", 1.0)).astype(np.float32)
    x = (rng.standard_normal((T, B, spec.input_size)) * opts.get("xscale", 1.0)).astype(np.float32)
    D, H = spec.num_directions, spec.hidden_size
    hx = None
    if opts.get("h0"):
        hx = tuple(rng.standard_normal((D, B, H)).astype(np.float32) for _ in range(2))
    lengths = opts.get("lengths")

    out, (h_n, c_n) = lstm_forward(spec, w, x, hx, None if lengths is None else np.array(lengths))
    Y, Y_h, Y_c = _run_onnxruntime(spec, w, x, hx, lengths)
    for label, got, want in (("Y", out, Y), ("Y_h", h_n, Y_h), ("Y_c", c_n, Y_c)):
        assert got.shape == want.shape, f"{label}: shape {got.shape} != onnxruntime {want.shape}"
        err = float(np.abs(got - want).max())
        assert err < ATOL, f"{label}: max abs error {err:.3g} vs onnxruntime"
