"""from_torch on state_dicts and files, and from_keras_weights, against independent references.

Input: torch.nn.LSTM modules and their state_dicts (.pt/.pth/.npz files written to tmp), and
Keras-layout weights run through a numpy transcription of Keras's LSTM equations (TensorFlow is
not needed and not installed). Output: pass/fail; inferred specs must equal the module's,
compiled C and the reference must match torch / the Keras equations within ATOL, and state_dicts
that fit no LSTM must be refused with the keys named.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need_module

import lstmgen
from lstmgen.importers import from_state_dict
from lstmgen.reference import lstm_forward

ATOL = 1e-5


# ---- torch state_dicts --------------------------------------------------------------------


def _module(torch, **cfg):
    torch.manual_seed(0)
    return torch.nn.LSTM(**cfg).eval()


@pytest.mark.parametrize("cfg", [
    dict(input_size=3, hidden_size=5),
    dict(input_size=3, hidden_size=5, num_layers=3, bidirectional=True, proj_size=2, bias=False),
    dict(input_size=2, hidden_size=4, num_layers=2, batch_first=True),
], ids=["plain", "deep_bidir_proj_nobias", "batch_first"])
def test_state_dict_infers_the_modules_spec(cfg):
    torch = need_module("torch")
    module = _module(torch, **cfg)
    spec_m, w_m = lstmgen.from_torch(module)
    spec, w = lstmgen.from_torch(module.state_dict(), batch_first=cfg.get("batch_first", False))
    assert spec == spec_m
    assert sorted(w) == sorted(w_m)
    for k in w:
        np.testing.assert_array_equal(w[k], w_m[k])


def test_files_pt_pth_npz_and_checkpoint(tmp_path):
    torch = need_module("torch")
    module = _module(torch, input_size=3, hidden_size=4, num_layers=2, bidirectional=True)
    sd = module.state_dict()
    torch.save(sd, tmp_path / "m.pt")
    torch.save({"state_dict": sd, "epoch": 3}, tmp_path / "ckpt.pth")
    np.savez(tmp_path / "m.npz", **{k: v.numpy() for k, v in sd.items()})
    spec_m, _ = lstmgen.from_torch(module)
    for name in ("m.pt", "ckpt.pth", "m.npz"):
        spec, w = lstmgen.from_torch(tmp_path / name)
        assert spec == spec_m, name
    x = np.random.default_rng(0).standard_normal((6, 2, 3)).astype(np.float32)
    out, (h_n, c_n) = lstmgen.compile(spec, w)(x)
    with torch.no_grad():
        t_out, (t_h, t_c) = module(torch.from_numpy(x))
    for got, want in ((out, t_out), (h_n, t_h), (c_n, t_c)):
        assert float(np.abs(got - want.numpy()).max()) < ATOL


def test_prefix_of_an_enclosing_module():
    torch = need_module("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.LSTM(3, 4, num_layers=2)
            self.fc = torch.nn.Linear(4, 2)

    sd = Net().state_dict()
    with pytest.raises(ValueError, match=r"not part of the LSTM under prefix 'encoder\.': fc\.weight, fc\.bias; pass prefix='encoder\.'"):
        lstmgen.from_torch(sd)
    spec, w = lstmgen.from_torch(sd, prefix="encoder.")
    assert (spec.num_layers, spec.hidden_size, spec.input_size) == (2, 4, 3)
    only_lstm = {k: v for k, v in sd.items() if k.startswith("encoder.")}
    assert lstmgen.from_torch(only_lstm)[0] == spec  # a lone common prefix is found by itself


def test_bad_state_dicts_are_refused_with_the_keys_named():
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=4, num_layers=2)
    good = lstmgen.random_weights(spec)
    with pytest.raises(ValueError, match=r"fit no LSTM weight name: weight_io_l0"):
        from_state_dict({**good, "weight_io_l0": np.zeros(3)})
    missing = dict(good)
    del missing["weight_hh_l1"]
    with pytest.raises(ValueError, match=r"weight_hh_l1 \(16, 4\)"):
        from_state_dict(missing)
    with pytest.raises(ValueError, match=r"'weight_ih_l1' has shape \(16, 3\), expected \(16, 4\)"):
        from_state_dict({**good, "weight_ih_l1": np.zeros((16, 3))})
    with pytest.raises(ValueError, match="no key looks like an LSTM weight"):
        from_state_dict({"fc.weight": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="several prefixes"):
        from_state_dict({"a.weight_ih_l0": np.zeros((16, 3)), "b.weight_ih_l0": np.zeros((16, 3))})
    with pytest.raises(TypeError, match="batch_first"):
        from_state_dict(good, batch_first=1)
    with pytest.raises(ValueError, match="cannot read weights as .npz"):
        lstmgen.from_torch("/nonexistent/file.npz")


def test_peephole_state_dict():
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=4, peepholes=True, bidirectional=True)
    spec2, _ = from_state_dict(lstmgen.random_weights(spec))
    assert spec2 == spec


# ---- Keras ----------------------------------------------------------------------------------


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


KERAS_ACTS = {
    "sigmoid": _sigmoid, "tanh": np.tanh, "relu": lambda z: np.maximum(z, 0.0),
    "hard_sigmoid": lambda z: np.clip(z / 6.0 + 0.5, 0.0, 1.0),  # Keras 3
    "hard_sigmoid_keras2": lambda z: np.clip(0.2 * z + 0.5, 0.0, 1.0),
    "linear": lambda z: z, "softsign": lambda z: z / (1 + np.abs(z)), "softplus": lambda z: np.log1p(np.exp(z)),
    "elu": lambda z: np.where(z > 0, z, np.expm1(np.minimum(z, 0))),
}


def keras_lstm(x, kernel, rec, bias, *, go_backwards=False, activation="tanh", recurrent_activation="sigmoid",
               h0=None, c0=None):
    """Keras's LSTM layer (return_sequences=True, return_state=True), written from its cell's
    equations in float64: z = x.kernel + h.recurrent_kernel + bias, split i, f, c, o;
    c = f*c + i*act(z_c); h = o*act(c). go_backwards walks t = T-1 .. 0 and, like Keras,
    returns the outputs in processing order. x is (B, T, I)."""
    act, ract = KERAS_ACTS[activation], KERAS_ACTS[recurrent_activation]
    Bn, Tn, _ = x.shape
    Hn = rec.shape[0]
    h = np.zeros((Bn, Hn)) if h0 is None else h0.astype(np.float64)
    c = np.zeros((Bn, Hn)) if c0 is None else c0.astype(np.float64)
    b = np.zeros(4 * Hn) if bias is None else bias.astype(np.float64)
    outs = []
    for t in (range(Tn - 1, -1, -1) if go_backwards else range(Tn)):
        z = x[:, t].astype(np.float64) @ kernel + h @ rec + b
        zi, zf, zc, zo = np.split(z, 4, axis=1)
        i, f, o = ract(zi), ract(zf), ract(zo)
        c = f * c + i * act(zc)
        h = o * act(c)
        outs.append(h)
    return np.stack(outs, axis=1), h, c


def keras_weights(rng, n_in, units, bias=True, scale=0.5):
    return ((rng.standard_normal((n_in, 4 * units)) * scale).astype(np.float32),
            (rng.standard_normal((units, 4 * units)) * scale).astype(np.float32),
            (rng.standard_normal(4 * units) * scale).astype(np.float32) if bias else None)


def _check(spec, w, x, want_out, want_h, want_c, hx=None, compiled=False, flip=False):
    results = [lstm_forward(spec, w, x, hx)]
    if compiled:
        results.append(lstmgen.compile(spec, w)(x, hx))
    for out, (h_n, c_n) in results:
        out = np.asarray(out)
        if flip:  # Keras go_backwards returns the sequence in processing order
            out = out[:, ::-1]
        assert float(np.abs(out - want_out).max()) < ATOL
        assert float(np.abs(h_n[-1] - want_h).max()) < ATOL
        assert float(np.abs(c_n[-1] - want_c).max()) < ATOL


@pytest.mark.parametrize("case", ["default", "hard_sigmoid_relu", "keras2_hard_sigmoid", "linear_softsign",
                                  "no_bias", "go_backwards", "initial_state"])
def test_keras_single_layer(case):
    rng = np.random.default_rng(sorted(["default", "hard_sigmoid_relu", "keras2_hard_sigmoid", "linear_softsign",
                                        "no_bias", "go_backwards", "initial_state"]).index(case))
    kw = {}
    acts = dict(activation="tanh", recurrent_activation="sigmoid")
    if case == "hard_sigmoid_relu":
        acts = dict(activation="relu", recurrent_activation="hard_sigmoid")
    elif case == "keras2_hard_sigmoid":
        acts = dict(activation="tanh", recurrent_activation="hard_sigmoid")
        kw["keras_version"] = 2
    elif case == "linear_softsign":
        acts = dict(activation="softsign", recurrent_activation="linear")
    kernel, rec, bias = keras_weights(rng, 3, 4, bias=case != "no_bias", scale=0.3 if "linear" in case else 0.5)
    x = rng.standard_normal((2, 6, 3)).astype(np.float32)  # Keras input: (batch, time, features)
    go_back = case == "go_backwards"
    hx = None
    h0 = c0 = None
    if case == "initial_state":
        h0, c0 = (rng.standard_normal((2, 4)).astype(np.float32) for _ in range(2))
        hx = (h0[None], c0[None])
    spec, w = lstmgen.from_keras_weights(kernel, rec, bias, go_backwards=go_back, **acts, **kw)
    assert spec.batch_first and spec.reverse == go_back and spec.bias == (case != "no_bias")
    ref_acts = dict(acts)
    if kw.get("keras_version") == 2:
        ref_acts["recurrent_activation"] = "hard_sigmoid_keras2"
    want = keras_lstm(x, kernel, rec, bias, go_backwards=go_back, h0=h0, c0=c0, **ref_acts)
    _check(spec, w, x, *want, hx=hx, compiled=case in ("default", "go_backwards"), flip=go_back)


def test_keras_bidirectional_stacked_and_cudnn_bias():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 5, 3)).astype(np.float32)
    # Bidirectional(LSTM(4, return_sequences=True), merge_mode="concat"), stacked twice
    f0, b0 = keras_weights(rng, 3, 4), keras_weights(rng, 3, 4)
    f1, b1 = keras_weights(rng, 8, 4), keras_weights(rng, 8, 4)
    spec, w = lstmgen.from_keras_weights([f0, f1], backward=[b0, b1])
    assert spec.bidirectional and spec.num_layers == 2
    seq = x
    for fwd, bwd in ((f0, b0), (f1, b1)):
        yf, hf, cf = keras_lstm(seq, *fwd)
        yb, hb, cb = keras_lstm(seq, *bwd, go_backwards=True)
        seq = np.concatenate([yf, yb[:, ::-1]], axis=2)  # Keras flips the backward sequence back
    out, (h_n, c_n) = lstmgen.compile(spec, w)(x)
    assert float(np.abs(out - seq).max()) < ATOL
    for got, want in ((h_n[2], hf), (h_n[3], hb), (c_n[2], cf), (c_n[3], cb)):
        assert float(np.abs(got - want).max()) < ATOL
    # CuDNN-style weights carry two biases (8H,): input and recurrent
    kernel, rec, _ = keras_weights(rng, 3, 4)
    bias8 = (rng.standard_normal(32) * 0.5).astype(np.float32)
    spec, w = lstmgen.from_keras_weights(kernel, rec, bias8)
    want = keras_lstm(x, kernel, rec, bias8[:16] + bias8[16:])
    _check(spec, w, x, *want)


def test_keras_errors():
    rng = np.random.default_rng(0)
    kernel, rec, bias = keras_weights(rng, 3, 4)
    with pytest.raises(ValueError, match=r"recurrent_kernel has shape \(4, 12\)"):
        lstmgen.from_keras_weights(kernel, rec[:, :12], bias)
    with pytest.raises(ValueError, match="bias has shape"):
        lstmgen.from_keras_weights(kernel, rec, bias[:5])
    with pytest.raises(ValueError, match="'gelu' has no lstmgen equivalent"):
        lstmgen.from_keras_weights(kernel, rec, bias, activation="gelu")
    with pytest.raises(ValueError, match="go_backwards is supported for a single unidirectional layer"):
        lstmgen.from_keras_weights([(kernel, rec, bias), keras_weights(rng, 4, 4)], go_backwards=True)
    with pytest.raises(ValueError, match=r"layer 1: kernel has shape \(3, 16\), expected \(4, 16\)"):
        lstmgen.from_keras_weights([(kernel, rec, bias), (kernel, rec, bias)])
    with pytest.raises(ValueError, match="all layers must either have a bias or not"):
        lstmgen.from_keras_weights([(kernel, rec, bias), keras_weights(rng, 4, 4, bias=False)])
