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
from conftest import need_module, quantize_dynamic

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
    q = quantize_dynamic(torch, float_lstm, getattr(torch, dtype))
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
    q = quantize_dynamic(torch, cell, getattr(torch, dtype))
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
        lstmgen.from_torch(quantize_dynamic(torch, torch.nn.LSTM(2, 3), getattr(torch, dtype)).state_dict())


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


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated")
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
    quantised = quantize_dynamic(torch, torch.nn.LSTM(3, 4), torch.qint8)
    with pytest.raises(TypeError, match=r"contains LSTMs at: net\.rnn"):
        lstmgen.from_torch(torch.nn.ModuleDict({"rnn": quantised}))
    with pytest.raises(TypeError, match=r"got Linear, which contains no nn\.LSTM or nn\.LSTMCell"):
        lstmgen.from_torch(torch.nn.Linear(3, 4))
    with pytest.raises(TypeError, match=r"got GRU, which contains no nn\.LSTM or nn\.LSTMCell$"):
        lstmgen.from_torch(torch.nn.GRU(3, 4))
    lstm = torch.nn.LSTM(3, 4).eval()
    scripted = torch.jit.script(lstm)  # what torch.jit.load gives back
    with pytest.raises(TypeError, match=r"contains no nn\.LSTM or nn\.LSTMCell; its state_dict has LSTM-named keys.*"
                                        r"from_torch\(net\.state_dict\(\)\)"):
        lstmgen.from_torch(scripted)
    spec, w = lstmgen.from_torch(scripted.state_dict())
    _check_lstm(lstmgen.compile(spec, w, target="portable"), lstm, torch)
    with pytest.raises(ValueError, match="prefix applies to state_dicts"):
        lstmgen.from_torch(torch.nn.LSTM(3, 4), prefix="x.")


# ---- checkpoints as people save them --------------------------------------------------------


def _lstm_and_optimizer_state(torch):
    torch.manual_seed(13)
    lstm = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True).eval()
    opt = torch.optim.Adam(lstm.parameters())
    lstm(torch.randn(4, 2, 3))[0].sum().backward()
    opt.step()  # the optimizer's state now holds tensors (exp_avg, ...) of the same shapes
    return lstm, opt.state_dict()


def _checkpoints(torch):
    lstm, opt = _lstm_and_optimizer_state(torch)
    sd = lstm.state_dict()

    class Lit(torch.nn.Module):  # a LightningModule keeps its net under its attribute name
        def __init__(self):
            super().__init__()
            self.model = lstm

    return lstm, {
        "flat_with_epoch": {**sd, "epoch": 7, "note": "best"},
        "state_dict": {"state_dict": sd, "epoch": 3, "optimizer": opt},
        "model_state_dict": {"model_state_dict": sd, "optimizer_state_dict": opt, "loss": 0.25},
        "model_state": {"model_state": sd, "step": 100},
        "model": {"model": sd, "args": {"lr": 1e-3}},
        "net": {"net": sd},
        "module": {"module": sd},
        "lightning": {"state_dict": Lit().state_dict(), "epoch": 2, "global_step": 40, "pytorch-lightning_version": "2.4.0",
                      "optimizer_states": [opt], "lr_schedulers": [], "hyper_parameters": {"hidden": 5}},
        "data_parallel": {"state_dict": torch.nn.DataParallel(lstm).state_dict()},
        "deep": {"run": {"best": {"weights": {"module.rnn." + k: v for k, v in sd.items()}}}, "epoch": 1},
    }


def test_checkpoints_are_searched_for_the_lstms_state_dict(tmp_path):
    torch = need_module("torch")
    lstm, cases = _checkpoints(torch)
    spec_m, w_m = lstmgen.from_torch(lstm)
    assert "module.weight_ih_l0" in cases["data_parallel"]["state_dict"]
    for name, ckpt in cases.items():
        path = tmp_path / (f"{name}.ckpt" if name == "lightning" else f"{name}.pt")  # Lightning writes .ckpt
        torch.save(ckpt, path)
        for source in (ckpt, path, str(path)):
            spec, w = lstmgen.from_torch(source)
            assert spec == spec_m, name
            for k in w_m:
                np.testing.assert_array_equal(w[k], w_m[k])
        assert from_state_dict(path, batch_first=True)[0].batch_first
    spec, w = lstmgen.from_torch(tmp_path / "deep.pt")
    _check_lstm(lstmgen.compile(spec, w, target="portable"), lstm, torch)


def test_checkpoints_with_several_lstms_or_none_and_files_that_are_not_state_dicts(tmp_path):
    torch = need_module("torch")
    lstm, _ = _lstm_and_optimizer_state(torch)
    sd = lstm.state_dict()
    spec_m = lstmgen.from_torch(lstm)[0]
    two = {"state_dict": {**{f"enc.{k}": v for k, v in sd.items()}, **{f"dec.{k}": v for k, v in sd.items()}}}
    with pytest.raises(ValueError, match=r"several prefixes \['dec\.', 'enc\.'\]; choose one with prefix="):
        lstmgen.from_torch(two)
    for prefix in ("enc.", "state_dict.enc."):  # relative to the dict found, or with its path
        assert lstmgen.from_torch(two, prefix=prefix)[0] == spec_m
    ema = {"model": sd, "ema": {"module": {f"module.{k}": v for k, v in sd.items()}}}
    with pytest.raises(ValueError, match=r"holds LSTM weights in several dicts: model\., ema\.module\.; choose one with prefix="):
        lstmgen.from_torch(ema)
    assert lstmgen.from_torch(ema, prefix="ema.module.module.")[0] == spec_m
    assert lstmgen.from_torch(ema, prefix="model.")[0] == spec_m
    with pytest.raises(ValueError, match=r"several dicts: model\., ema\.module\."):
        lstmgen.from_torch({"model": sd, "ema": {"module": sd}}, prefix="")  # matches both: ambiguous
    with pytest.raises(ValueError, match=r"no key looks like an LSTM weight .* at any depth; top-level keys: epoch, "
                                         r"optimizer, fc\.weight \(dicts searched: optimizer\)"):
        lstmgen.from_torch({"epoch": 3, "optimizer": {"state": {}}, "fc.weight": torch.zeros(2, 2)})
    with pytest.raises(ValueError, match=r"no key starts with prefix 'nope\.'"):
        lstmgen.from_torch({"state_dict": sd}, prefix="nope.")
    torch.save(lstm, tmp_path / "whole.pt")  # a pickled module, not a state_dict
    with pytest.raises(ValueError, match=r"whole\.pt: cannot load as a torch state_dict with torch\.load\(weights_only=True\).*"
                                         r"pickled Python objects .*torch\.save\(model\)"):
        lstmgen.from_torch(tmp_path / "whole.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match=r"junk\.pt: cannot load as a torch state_dict"):
        lstmgen.from_torch(tmp_path / "junk.pt")
    torch.save([sd], tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"list\.pth: expected a state_dict or a checkpoint dict, got list"):
        lstmgen.from_torch(tmp_path / "list.pth")
    with pytest.raises(ValueError, match=r"missing\.pt: no such file"):
        lstmgen.from_torch(tmp_path / "missing.pt")
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(ValueError, match=r"junk\.npz: cannot read weights as \.npz"):
        lstmgen.from_torch(tmp_path / "junk.npz")


# ---- the CLI over state_dict files ----------------------------------------------------------


def _read_dir(path):
    import os
    return {n: open(os.path.join(path, n), encoding="utf-8").read() for n in sorted(os.listdir(path))}


def test_cli_takes_a_checkpoint_as_the_spec_source(tmp_path, capsys):
    torch = need_module("torch")
    from lstmgen.cli import main

    lstm, cases = _checkpoints(torch)
    spec, w = lstmgen.from_torch(lstm)
    (tmp_path / "spec.json").write_text(spec.to_json())
    np.savez(tmp_path / "w.npz", **w)
    assert main(["generate", str(tmp_path / "spec.json"), "--weights", str(tmp_path / "w.npz"),
                 "--out", str(tmp_path / "ref"), "-q"]) == 0
    want = _read_dir(tmp_path / "ref")
    assert "lstm_weights.c" in want
    for name in ("lightning", "data_parallel", "deep"):
        torch.save(cases[name], tmp_path / f"{name}.pt")
        assert main(["generate", str(tmp_path / f"{name}.pt"), "--out", str(tmp_path / name), "-q"]) == 0
        assert _read_dir(tmp_path / name) == want, name  # the same C as spec + weights
        assert main(["generate", str(tmp_path / "spec.json"), "--weights", str(tmp_path / f"{name}.pt"),
                     "--out", str(tmp_path / f"{name}_w"), "-q"]) == 0  # --weights reads checkpoints too
        assert _read_dir(tmp_path / f"{name}_w") == want, name
    np.savez(tmp_path / "sd.npz", **{f"enc.{k}": v for k, v in w.items()})
    assert main(["inspect", str(tmp_path / "sd.npz"), "--target", "portable", "-q"]) == 0
    assert "Recurrence" in capsys.readouterr().out
    # batch_first, which a state_dict cannot say
    bf = lstmgen.LSTMSpec.from_dict({**spec.to_dict(), "batch_first": True})
    (tmp_path / "bf.json").write_text(bf.to_json())
    assert main(["generate", str(tmp_path / "bf.json"), "--weights", str(tmp_path / "w.npz"), "--out", str(tmp_path / "bf"), "-q"]) == 0
    assert main(["generate", str(tmp_path / "deep.pt"), "--batch-first", "--out", str(tmp_path / "bf2"), "-q"]) == 0
    assert _read_dir(tmp_path / "bf2") == _read_dir(tmp_path / "bf") != want
    # several LSTMs: --state-prefix picks one (--prefix stays the C symbol prefix)
    two = {"state_dict": {**{f"enc.{k}": v for k, v in lstm.state_dict().items()},
                          **{f"dec.{k}": v for k, v in lstm.state_dict().items()}}, "epoch": 1}
    torch.save(two, tmp_path / "two.pt")
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "two.pt"), "--out", str(tmp_path / "x"), "-q"]) == 2
    assert "several prefixes ['dec.', 'enc.']" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "two.pt"), "--state-prefix", "dec.", "--prefix", "dec",
                 "--out", str(tmp_path / "dec"), "-q"]) == 0
    assert "dec_forward" in _read_dir(tmp_path / "dec")["dec.h"]
    assert main(["report", str(tmp_path / "two.pt"), "--state-prefix", "enc.", "--seq-len", "8", "--no-measure", "-q"]) == 0
    assert "parameters" in capsys.readouterr().out


def test_cli_refuses_bad_state_dict_input_without_a_traceback(tmp_path, capsys):
    torch = need_module("torch")
    from lstmgen.cli import main

    lstm, _ = _lstm_and_optimizer_state(torch)
    torch.save(lstm, tmp_path / "whole.pt")
    torch.save({"epoch": 1}, tmp_path / "empty.pt")
    net = torch.nn.ModuleDict({"enc": lstm, "fc": torch.nn.Linear(5, 2)})
    torch.save({"model": net.state_dict()}, tmp_path / "net.pt")
    (tmp_path / "junk.pth").write_bytes(b"\x80\x04junk")
    (tmp_path / "spec.json").write_text(lstmgen.from_torch(lstm)[0].to_json())
    np.savez(tmp_path / "w.npz", **lstmgen.from_torch(lstm)[1])
    out = str(tmp_path / "o")
    cases = [
        (["generate", str(tmp_path / "whole.pt"), "--out", out], "weights_only=True"),
        (["generate", str(tmp_path / "empty.pt"), "--out", out], "top-level keys: epoch"),
        (["generate", str(tmp_path / "net.pt"), "--out", out], "fc.weight, fc.bias; pass --state-prefix 'enc.' to"),
        (["generate", str(tmp_path / "junk.pth"), "--out", out], "junk.pth: cannot load"),
        (["generate", str(tmp_path / "missing.pt"), "--out", out], "missing.pt: no such file"),
        (["generate", str(tmp_path / "spec.json"), "--weights", str(tmp_path / "whole.pt"), "--out", out], "whole.pt"),
        (["generate", str(tmp_path / "spec.json"), "--batch-first", "--out", out], "--batch-first only applies"),
        (["generate", str(tmp_path / "spec.json"), "--state-prefix", "a.", "--out", out], "--state-prefix chooses"),
        (["generate", str(tmp_path / "w.npz"), "--weights", str(tmp_path / "w.npz"), "--out", out], "drop --weights"),
        (["generate", str(tmp_path / "w.npz"), "--state-prefix", "zz.", "--out", out], "no key starts with prefix 'zz.'"),
        (["bench", str(tmp_path / "whole.pt")], "weights_only=True"),
        (["inspect", str(tmp_path / "junk.pth")], "junk.pth"),
    ]
    for argv, message in cases:
        capsys.readouterr()
        assert main(argv + ["-q"]) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)


# ---- torch's own module test inputs ---------------------------------------------------------


def _module_db_samples(torch, cls, dtype):
    """torch's ModuleInfo samples for cls: (constructor args, kwargs, forward args)."""
    # torch.testing._internal imports expecttest (a test dependency of torch, not of lstmgen)
    common = pytest.importorskip("torch.testing._internal.common_modules",
                                 reason="torch's module_db needs expecttest (pip install expecttest)")
    infos = [info for info in common.module_db if info.module_cls is cls]
    assert infos, f"module_db has no ModuleInfo for {cls.__name__}"
    for info in infos:
        for sample in info.module_inputs_func(info, device="cpu", dtype=dtype, requires_grad=False, training=False):
            yield sample.constructor_input.args, sample.constructor_input.kwargs, sample.forward_input.args


def _np(t):
    return t.detach().float().numpy()  # float64 samples as the float32 lstmgen computes in


# float64 samples run in float32 in lstmgen (from_torch casts the weights, Model casts the
# input): compared with the float64 module within the same ATOL.
@pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_module_db_lstm_samples(dtype):
    torch = need_module("torch")
    n = 0
    for args, kwargs, fwd in _module_db_samples(torch, torch.nn.LSTM, getattr(torch, dtype)):
        torch.manual_seed(n)
        module = torch.nn.LSTM(*args, **kwargs).to(getattr(torch, dtype)).eval()
        model = lstmgen.compile(module, target="portable")
        with torch.no_grad():
            want, (want_h, want_c) = module(*fwd)
        x = _np(fwd[0])
        hx = tuple(_np(t) for t in fwd[1]) if len(fwd) > 1 else None
        out, (h_n, c_n) = model(x, hx)  # unbatched samples: x (T, I), states (L*D, H)
        for got, ref in ((out, want), (h_n, want_h), (c_n, want_c)):
            assert got.shape == tuple(ref.shape), (kwargs, got.shape, ref.shape)
            assert _max_diff(got, _np(ref)) < ATOL, kwargs
        n += 1
    assert n == 32  # torch 2.13: every combination of proj_size, bidirectional, batch_first, bias, with and without hx


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_torch_module_db_lstm_cell_samples(dtype):
    torch = need_module("torch")
    n = 0
    for args, kwargs, fwd in _module_db_samples(torch, torch.nn.LSTMCell, getattr(torch, dtype)):
        torch.manual_seed(n)
        cell = torch.nn.LSTMCell(*args, **kwargs).to(getattr(torch, dtype)).eval()
        model = lstmgen.compile(cell, target="portable")
        x, (h, c) = fwd  # unbatched: x (I,), h and c (H,)
        with torch.no_grad():
            want_h, want_c = cell(x, (h, c))
        stream = model.stream(batch=1)
        stream.state = (_np(h)[None, None], _np(c)[None, None])
        y = stream.step(_np(x))  # an unbatched step returns (H,)
        got_h, got_c = stream.state
        assert y.shape == tuple(want_h.shape)
        assert _max_diff(y, _np(want_h)) < ATOL
        assert _max_diff(got_h[0, 0], _np(want_h)) < ATOL and _max_diff(got_c[0, 0], _np(want_c)) < ATOL
        n += 1
    assert n == 2


def test_pruned_and_weight_normed_lstm_cell():
    torch = need_module("torch")
    import torch.nn.utils.parametrizations as P
    import torch.nn.utils.prune as prune
    torch.manual_seed(14)
    cell = torch.nn.LSTMCell(4, 6).eval()
    prune.l1_unstructured(cell, "weight_ih", amount=0.4)
    P.weight_norm(cell, "weight_hh")
    with torch.no_grad():
        cell.parametrizations.weight_hh.original0.mul_(0.8)
    xs = np.random.default_rng(5).standard_normal((20, 2, 4)).astype(np.float32)
    hs, _ = _step_cell(cell, torch, xs)
    for source in (cell, cell.state_dict(), {f"vad.cell.{k}": v for k, v in cell.state_dict().items()}):
        spec, w = lstmgen.from_torch(source)
        assert _max_diff(lstmgen.compile(spec, w, target="portable")(xs)[0], hs) < ATOL
