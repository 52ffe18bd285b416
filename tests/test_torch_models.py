"""from_torch on torch models as people have them, against torch itself.

Input: nn.LSTMCell modules and their state_dicts, pruned / parametrised / dynamically quantised
LSTMs, subclasses and containers, checkpoints as training code saves them (nested dicts,
Lightning and DataParallel prefixes), the CLI over .pt files, and torch's own module test inputs
(module_db). Output: pass/fail; compiled models must match the torch module within ATOL (a
quantised module within its own quantisation error), and what cannot be converted exactly must
be refused with a message naming what is wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need_module

import lstmgen
from lstmgen.importers import from_state_dict

ATOL = 1e-5


def _max_diff(got, want) -> float:
    want = want.detach().numpy() if hasattr(want, "detach") else np.asarray(want)
    return float(np.abs(np.asarray(got) - want).max())


def _check_lstm(model, module, torch, *, T=9, B=3, seed=0, atol=ATOL):
    """model(x) against module(x) for a torch.nn.LSTM-like module (output, h_n, c_n)."""
    spec = model.spec
    shape = (B, T, spec.input_size) if spec.batch_first else (T, B, spec.input_size)
    x = np.random.default_rng(seed).standard_normal(shape).astype(np.float32)
    out, (h_n, c_n) = model(x)
    with torch.no_grad():
        t_out, (t_h, t_c) = module(torch.from_numpy(x))
    for got, want in ((out, t_out), (h_n, t_h), (c_n, t_c)):
        assert _max_diff(got, want) < atol


# ---- nn.LSTMCell ----------------------------------------------------------------------------


def _step_cell(cell, torch, xs):
    """h, c after each step of cell over xs (T, B, I), from zero state."""
    B = xs.shape[1]
    h = torch.zeros(B, cell.hidden_size)
    c = torch.zeros(B, cell.hidden_size)
    hs, cs = [], []
    with torch.no_grad():
        for x_t in xs:
            h, c = cell(torch.from_numpy(x_t), (h, c))
            hs.append(h.numpy().copy())
            cs.append(c.numpy().copy())
    return np.stack(hs), np.stack(cs)


@pytest.mark.parametrize("bias", [True, False])
def test_lstm_cell_module_streams_and_runs_like_the_loop(bias):
    torch = need_module("torch")
    torch.manual_seed(1)
    cell = torch.nn.LSTMCell(5, 7, bias=bias).eval()
    spec, w = lstmgen.from_torch(cell)
    assert (spec.input_size, spec.hidden_size, spec.num_layers, spec.bias) == (5, 7, 1, bias)
    assert sorted(w) == sorted(spec.weight_shapes())
    model = lstmgen.compile(spec, w, target="portable")
    T, B = 24, 3
    xs = np.random.default_rng(2).standard_normal((T, B, 5)).astype(np.float32)
    hs, cs = _step_cell(cell, torch, xs)
    stream = model.stream(batch=B)
    for t in range(T):  # the stream's output and state equal the cell's (h, c) at every step
        y = stream.step(xs[t])
        h, c = stream.state
        assert _max_diff(y, hs[t]) < ATOL
        assert _max_diff(h[0], hs[t]) < ATOL and _max_diff(c[0], cs[t]) < ATOL
    out, (h_n, c_n) = model(xs)  # the whole sequence: the loop over time
    assert _max_diff(out, hs) < ATOL
    assert _max_diff(h_n[0], hs[-1]) < ATOL and _max_diff(c_n[0], cs[-1]) < ATOL


def test_lstm_cell_state_dicts_with_and_without_prefix_and_compile_of_the_module():
    torch = need_module("torch")
    torch.manual_seed(3)
    cell = torch.nn.LSTMCell(4, 6).eval()
    spec_m, w_m = lstmgen.from_torch(cell)
    sd = cell.state_dict()
    assert sorted(sd) == ["bias_hh", "bias_ih", "weight_hh", "weight_ih"]

    class Vad(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cell = cell

    for state, prefix in ((sd, None), (Vad().state_dict(), None), (Vad().state_dict(), "cell.")):
        spec, w = lstmgen.from_torch(state, prefix=prefix)
        assert spec == spec_m
        for k in w_m:
            np.testing.assert_array_equal(w[k], w_m[k])
    model = lstmgen.compile(cell, target="portable")  # compile() takes the cell module itself
    assert model.spec == spec_m
    xs = np.random.default_rng(4).standard_normal((21, 2, 4)).astype(np.float32)
    hs, _ = _step_cell(cell, torch, xs)
    assert _max_diff(model(xs)[0], hs) < ATOL
    with pytest.raises(ValueError, match=r"mixes an LSTMCell's keys \(weight_ih\) with an LSTM's"):
        from_state_dict({"weight_ih": np.zeros((24, 4)), "weight_hh_l0": np.zeros((24, 6))})
    with pytest.raises(ValueError, match=r"does not fit the LSTMCell inferred from it"):
        from_state_dict({**{k: v.numpy() for k, v in sd.items()}, "weight_hh": np.zeros((24, 5))})


# ---- pruned and parametrised modules --------------------------------------------------------


def _pruned(torch):
    import torch.nn.utils.prune as prune
    torch.manual_seed(5)
    m = torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True).eval()
    prune.l1_unstructured(m, "weight_ih_l0", amount=0.5)
    prune.random_unstructured(m, "weight_hh_l1_reverse", amount=0.3)
    prune.l1_unstructured(m, "weight_ih_l0", amount=0.2)  # pruned twice: a PruningContainer
    prune.l1_unstructured(m, "bias_hh_l0", amount=0.5)
    return m


def _weight_normed(torch):
    import torch.nn.utils.parametrizations as P
    torch.manual_seed(6)
    m = torch.nn.LSTM(3, 5, num_layers=2, proj_size=2).eval()
    P.weight_norm(m, "weight_hh_l0")  # dim=0: g is (4H, 1)
    P.weight_norm(m, "weight_ih_l1", dim=1)  # g is (1, I)
    P.weight_norm(m, "weight_hr_l1", dim=None)  # g is a scalar
    with torch.no_grad():  # g no longer the norm of v, so that g matters
        m.parametrizations.weight_hh_l0.original0.mul_(1.7)
        m.parametrizations.weight_ih_l1.original0.mul_(0.6)
        m.parametrizations.weight_hr_l1.original0.mul_(1.3)
    return m


def _legacy_weight_normed(torch):
    import warnings
    torch.manual_seed(7)
    m = torch.nn.LSTM(3, 5).eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated in favour of parametrizations
        torch.nn.utils.weight_norm(m, "weight_ih_l0", dim=1)
    with torch.no_grad():
        m.weight_ih_l0_g.mul_(1.5)
    return m


@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("make", [_pruned, _weight_normed, _legacy_weight_normed],
                         ids=["pruned", "weight_norm", "legacy_weight_norm"])
def test_pruned_and_weight_normed_modules_and_state_dicts(make):
    torch = need_module("torch")
    m = make(torch)
    sd = m.state_dict()
    assert any(k.endswith(("_orig", "_mask", "_g", "_v", "original0")) for k in sd)  # the forms tested
    spec, w = lstmgen.from_torch(m)
    assert sorted(w) == sorted(spec.weight_shapes())
    _check_lstm(lstmgen.compile(spec, w, target="portable"), m, torch)
    spec2, w2 = lstmgen.from_torch(sd)  # the effective weights computed from the saved parts
    assert spec2 == spec
    for k in w:
        np.testing.assert_allclose(w2[k], w[k], rtol=1e-6, atol=1e-7)
    spec3, w3 = lstmgen.from_torch({f"net.lstm.{k}": v for k, v in sd.items()})  # under a prefix too
    assert spec3 == spec and sorted(w3) == sorted(w)


def test_parametrisations_a_state_dict_cannot_compute_are_refused():
    torch = need_module("torch")
    import torch.nn.utils.parametrize as parametrize

    class Scaled(torch.nn.Module):
        def forward(self, X):
            return 0.5 * X

    torch.manual_seed(8)
    m = torch.nn.LSTM(3, 4).eval()
    parametrize.register_parametrization(m, "weight_hh_l0", Scaled())
    spec, w = lstmgen.from_torch(m)  # the module computes it: fine
    _check_lstm(lstmgen.compile(spec, w, target="portable"), m, torch)
    with pytest.raises(ValueError, match=r"parametrizations\.weight_hh_l0\.original: weight_hh_l0 is computed by a "
                                         r"torch parametrization .*from_torch\(module\).*remove_parametrizations"):
        lstmgen.from_torch(m.state_dict())
    m = torch.nn.LSTM(3, 4).eval()
    torch.nn.utils.parametrizations.spectral_norm(m, "weight_ih_l0")  # original plus buffers of its own
    _check_lstm(lstmgen.compile(m, target="portable"), m, torch)
    with pytest.raises(ValueError, match=r"parametrizations\.weight_ih_l0\..*torch parametrization"):
        lstmgen.from_torch(m.state_dict())
    sd = {k: v for k, v in _pruned(torch).state_dict().items() if k != "weight_ih_l0_mask"}
    with pytest.raises(ValueError, match=r"weight_ih_l0_mask is missing: a pruned weight \(torch\.nn\.utils\.prune\)"):
        lstmgen.from_torch(sd)
    sd = {k: v for k, v in _weight_normed(torch).state_dict().items()}
    sd["parametrizations.weight_hh_l0.original0"] = torch.ones(3, 2)
    with pytest.raises(ValueError, match=r"weight_hh_l0: a weight-norm magnitude g of shape \(3, 2\) does not fit"):
        lstmgen.from_torch(sd)


# ---- dynamically quantised modules ----------------------------------------------------------


def _quantize(torch, module, dtype):
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        return torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(module), {type(module)}, dtype=dtype)[0]


# Measured with torch 2.13 (seed 11, T=20, B=3), max abs difference of the outputs:
#   qint8,   I=4 H=8 L=2 bidirectional: lstmgen vs float LSTM with the dequantised weights 1.2e-7;
#            lstmgen vs the quantised module 2.2e-3, the quantised module vs the float original 2.3e-3;
#   qint8,   I=6 H=16 batch_first: 1.0e-7; 5.0e-3 and 5.5e-3;
#   float16, both: 1.5e-7 vs the dequantised LSTM, 1.0e-7 vs the quantised module (whose error
#            vs the float original is 3.9e-5 and 1.3e-4).
# The qint8 module also rounds every input and state vector to uint8 on the fly, lstmgen (and the
# float LSTM) does not: that rounding is the whole qint8 difference.
@pytest.mark.parametrize("cfg", [dict(input_size=4, hidden_size=8, num_layers=2, bidirectional=True),
                                 dict(input_size=6, hidden_size=16, batch_first=True)], ids=["deep_bidir", "batch_first"])
@pytest.mark.parametrize("dtype", ["qint8", "float16"])
def test_dynamically_quantised_lstm_is_its_dequantised_float_lstm(cfg, dtype):
    torch = need_module("torch")
    torch.manual_seed(11)
    float_lstm = torch.nn.LSTM(**cfg).eval()
    q = _quantize(torch, float_lstm, getattr(torch, dtype))
    assert type(q).__module__.startswith("torch.ao.nn.quantized.dynamic")
    spec, w = lstmgen.from_torch(q)
    assert spec == lstmgen.from_torch(float_lstm)[0]
    model = lstmgen.compile(spec, w, target="portable")
    dequantised = torch.nn.LSTM(**cfg).eval()
    dequantised.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()})
    _check_lstm(model, dequantised, torch, T=20)  # the float LSTM with these weights, within 1e-5
    x = torch.randn((3, 20, cfg["input_size"]) if spec.batch_first else (20, 3, cfg["input_size"]))
    with torch.no_grad():
        y_q, y_f = q(x)[0].numpy(), float_lstm(x)[0].numpy()
    y = model(x.numpy())[0]
    own_error = float(np.abs(y_q - y_f).max())  # the quantised module's own error vs float
    if dtype == "float16":
        assert _max_diff(y, y_q) < ATOL  # float16 weights, float32 arithmetic: the same computation
    else:
        assert _max_diff(y, y_q) <= 1.5 * own_error < 1e-2


@pytest.mark.parametrize("dtype", ["qint8", "float16"])
def test_dynamically_quantised_lstm_cell_and_its_state_dict(dtype):
    torch = need_module("torch")
    torch.manual_seed(12)
    cell = torch.nn.LSTMCell(4, 8).eval()
    q = _quantize(torch, cell, getattr(torch, dtype))
    spec, w = lstmgen.from_torch(q)
    assert (spec.input_size, spec.hidden_size, spec.num_layers) == (4, 8, 1)
    model = lstmgen.compile(spec, w, target="portable")
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    with torch.no_grad():
        h_q, _ = q(torch.from_numpy(x))
        h_f, _ = cell(torch.from_numpy(x))
    own_error = _max_diff(h_q, h_f)  # measured: 1.5e-3 (qint8), 2.8e-5 (float16)
    y = model.stream(batch=3).step(x)
    assert _max_diff(y, h_q) <= (ATOL if dtype == "float16" else 1.5 * own_error)
    with pytest.raises(ValueError, match=r"_packed_weight_ih' is a packed parameter of a dynamically quantised LSTM"):
        lstmgen.from_torch(q.state_dict())
    with pytest.raises(ValueError, match=r"_all_weight_values\.0\.param' is a packed parameter"):
        lstmgen.from_torch(_quantize(torch, torch.nn.LSTM(2, 3), getattr(torch, dtype)).state_dict())


# ---- subclasses, hooks and containers -------------------------------------------------------


def test_subclasses_overriding_forward_and_hooks_are_refused():
    torch = need_module("torch")

    class Doubled(torch.nn.LSTM):
        def forward(self, x, hx=None):
            out, state = super().forward(x, hx)
            return 2 * out, state

    class Cell(torch.nn.LSTMCell):
        def forward(self, x, hx=None):
            return super().forward(x.flip(-1), hx)

    class Named(torch.nn.LSTM):  # a subclass that keeps nn.LSTM's forward is fine
        pass

    with pytest.raises(TypeError, match=r"Doubled overrides forward; lstmgen compiles nn\.LSTM's own forward.*pass an nn\.LSTM"):
        lstmgen.from_torch(Doubled(3, 4))
    with pytest.raises(TypeError, match=r"Doubled overrides forward"):
        lstmgen.compile(Doubled(3, 4))
    with pytest.raises(TypeError, match=r"Cell overrides forward; lstmgen compiles nn\.LSTMCell's own forward"):
        lstmgen.from_torch(Cell(3, 4))
    named = Named(3, 4).eval()
    _check_lstm(lstmgen.compile(named, target="portable"), named, torch)
    m = torch.nn.LSTM(3, 4)
    m.register_forward_hook(lambda mod, inp, out: (out[0] * 2, out[1]))
    with pytest.raises(TypeError, match=r"LSTM has a forward hook \(.*<lambda>\)"):
        lstmgen.from_torch(m)
    m = torch.nn.LSTM(3, 4)
    m.register_forward_pre_hook(lambda mod, inp: None)
    with pytest.raises(TypeError, match=r"LSTM has a forward pre-hook \(.*<lambda>\) whose effect"):
        lstmgen.from_torch(m)


def test_modules_containing_lstms_are_refused_naming_them():
    torch = need_module("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = torch.nn.LSTM(3, 4)
            self.layers = torch.nn.ModuleList([torch.nn.Linear(4, 4), torch.nn.LSTMCell(4, 4)])
            self.head = torch.nn.Linear(4, 2)

    with pytest.raises(TypeError, match=r"got Net; it contains LSTMs at: net\.encoder, net\.layers\[1\] \(net being "
                                        r"the Net passed\); pass one of them, e.g\. from_torch\(net\.encoder\)"):
        lstmgen.from_torch(Net())
    with pytest.raises(TypeError, match=r"got Sequential; it contains LSTMs at: net\[0\]"):
        lstmgen.compile(torch.nn.Sequential(torch.nn.LSTM(3, 4), torch.nn.Identity()))
    quantised = _quantize(torch, torch.nn.LSTM(3, 4), torch.qint8)
    with pytest.raises(TypeError, match=r"contains LSTMs at: net\.rnn"):
        lstmgen.from_torch(torch.nn.ModuleDict({"rnn": quantised}))
    with pytest.raises(TypeError, match=r"got Linear, which contains no nn\.LSTM or nn\.LSTMCell"):
        lstmgen.from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match=r"got GRU, which contains no nn\.LSTM"):
        lstmgen.from_torch(torch.nn.GRU(3, 4))
    with pytest.raises(ValueError, match="prefix applies to state_dicts"):
        lstmgen.from_torch(torch.nn.LSTM(3, 4), prefix="x.")
