"""lstmgen in the Python ecosystem: pickle and copy, spawn pools, Dask, a drop-in torch module,
readable reprs and logging."""

from __future__ import annotations

import copy
import logging
import multiprocessing
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, need_module

import lstmgen

SPEC = lstmgen.LSTMSpec(input_size=3, hidden_size=16, num_layers=2, proj_size=4)
W = lstmgen.random_weights(SPEC, seed=7)


@pytest.fixture(scope="module")
def model():
    return lstmgen.compile(SPEC, W, plan=None)


def _x(T=6, B=2, seed=0, I=3):
    return np.random.default_rng(seed).standard_normal((T, B, I)).astype(np.float32)


def _same(a, b):
    for u, v in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)):
        if isinstance(u, tuple):
            _same(u, v)
        else:
            assert np.array_equal(u, v)


def test_pickle_and_deepcopy_round_trip(model):
    x = _x()
    want = model(x)
    for clone in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model), copy.copy(model)):
        assert clone.spec == model.spec and clone.schedule == model.schedule and clone.prefix == model.prefix
        assert clone.program.plan == model.program.plan
        _same(clone(x), want)


def test_plan_overrides_survive_pickling():
    m = lstmgen.compile(SPEC, W, plan=dict(mr=3, kc=5)) if lstmgen.kernels.native_isa() != "portable" else None
    if m is None:
        pytest.skip("no vector kernels on this host")
    clone = pickle.loads(pickle.dumps(m))
    assert (clone.program.plan.mr, clone.program.plan.kc) == (3, 5)


def test_stream_pickles_with_its_state(model):
    x = _x(T=5)
    s = model.stream(batch=2)
    s.step(x[0])
    s.step(x[1])
    for clone in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s)):
        _same(clone.state, s.state)
        assert clone.batch == 2
    clone = copy.deepcopy(s)
    for t in range(2, 5):
        assert np.array_equal(clone.step(x[t]), s.step(x[t]))


def test_unpickled_in_a_fresh_process(model, tmp_path):
    x = _x(T=4)
    blob = tmp_path / "m.pkl"
    blob.write_bytes(pickle.dumps((model, x)))
    code = ("import pickle, sys, numpy as np; m, x = pickle.load(open(sys.argv[1], 'rb')); "
            "y, (h, c) = m(x); np.save(sys.argv[2], y)")
    env = dict(os.environ, PYTHONPATH=ROOT)
    subprocess.run([sys.executable, "-c", code, str(blob), str(tmp_path / "y.npy")], check=True, env=env)
    assert np.array_equal(np.load(tmp_path / "y.npy"), model(x)[0])


def _first_row(m_x):
    m, x = m_x
    return m(x)[0]


def test_spawn_pool_maps_a_model(model):
    xs = [_x(T=3 + i, seed=i) for i in range(4)]
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        got = pool.map(model, xs)
    for x, y in zip(xs, got):
        _same(y, model(x))


def test_dask_local_cluster_maps_a_model(model):
    distributed = need_module("distributed")
    xs = [_x(T=2 + i, seed=10 + i) for i in range(6)]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        futures = client.map(model, xs)
        got = client.gather(futures)
    for x, y in zip(xs, got):
        _same(y, model(x))


def test_repr_says_what_it_is(model):
    r = repr(model)
    assert r.startswith("lstmgen.Model(LSTM(3, 16, num_layers=2, proj_size=4)")
    assert "schedule=looped" in r and "math=approx" in r and "target=" in r and "prefix='lstm'" in r
    bi = lstmgen.compile(lstmgen.LSTMSpec(input_size=2, hidden_size=5, bidirectional=True, batch_first=True),
                         lstmgen.random_weights(lstmgen.LSTMSpec(input_size=2, hidden_size=5, bidirectional=True)),
                         target="portable", math="libm", chunk=0)
    assert "LSTM(2, 5, batch_first=True, bidirectional=True)" in repr(bi) and "portable scalar" in repr(bi)
    s = model.stream(batch=3)
    assert repr(s).startswith("lstmgen.Stream(batch=3, input_size=3, output_size=4, model=lstmgen.Model(")


def test_logging_reports_cache_miss_and_hit(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(tmp_path / "cache"))
    spec = lstmgen.LSTMSpec(input_size=2, hidden_size=3)
    w = lstmgen.random_weights(spec)
    with caplog.at_level(logging.DEBUG, logger="lstmgen"):
        lstmgen.compile(spec, w, prefix="logged", target="portable")
        lstmgen.compile(spec, w, prefix="logged", target="portable")
    msgs = [r.getMessage() for r in caplog.records if r.name == "lstmgen"]
    assert any(m.startswith("cache miss: compiled logged") and " s" in m for m in msgs), msgs
    assert any(m.startswith("cache hit: logged") for m in msgs), msgs


# ---- as_torch ---------------------------------------------------------------------------------


def _torch():
    return need_module("torch")


def test_compile_accepts_a_torch_module_and_swaps_in():
    torch = _torch()
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(5, 12, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(12, 3)

        def forward(self, x):
            y, _ = self.lstm(x)
            return self.fc(y)

    net = Net().eval()
    x = torch.randn(4, 9, 5)
    with torch.inference_mode():
        want = net(x)
        net.lstm = lstmgen.compile(net.lstm).as_torch()
        got = net(x)
    assert isinstance(net.lstm, torch.nn.Module) and got.shape == want.shape and got.dtype == torch.float32
    assert float((got - want).abs().max()) < 1e-5
    with torch.no_grad():
        assert float((net(x) - want).abs().max()) < 1e-5
    with pytest.raises(TypeError, match="drop the weights"):
        lstmgen.compile(torch.nn.LSTM(2, 3), {"weight_ih_l0": np.zeros((12, 2))})


@pytest.mark.parametrize("cfg", [dict(), dict(batch_first=True), dict(bidirectional=True, num_layers=2), dict(proj_size=3)])
def test_as_torch_matches_nn_lstm(cfg):
    torch = _torch()
    torch.manual_seed(1)
    lstm = torch.nn.LSTM(4, 6, **cfg).eval()
    mod = lstmgen.compile(lstm).as_torch()
    D, L = 2 if cfg.get("bidirectional") else 1, cfg.get("num_layers", 1)
    R = cfg.get("proj_size") or 6
    x = torch.randn((3, 7, 4) if cfg.get("batch_first") else (7, 3, 4))
    hx = (torch.randn(L * D, 3, R), torch.randn(L * D, 3, 6))
    with torch.inference_mode():
        for args in ((x,), (x, hx), (x[0] if cfg.get("batch_first") else x[:, 0],)):  # unbatched too
            (y, (h, c)), (ty, (th, tc)) = mod(*args), lstm(*args)
            assert y.shape == ty.shape and h.shape == th.shape and c.shape == tc.shape
            assert max(float((a - b).abs().max()) for a, b in ((y, ty), (h, th), (c, tc))) < 1e-5
        # PackedSequence in, PackedSequence out, sorted or not
        lengths = torch.tensor([7, 2, 5])
        for enforce_sorted in (False, True):
            lens = lengths if not enforce_sorted else torch.tensor([7, 5, 2])
            p = torch.nn.utils.rnn.pack_padded_sequence(x, lens, batch_first=bool(cfg.get("batch_first")),
                                                        enforce_sorted=enforce_sorted)
            (py, (ph, pc)), (tpy, (tph, tpc)) = mod(p, hx), lstm(p, hx)
            assert isinstance(py, torch.nn.utils.rnn.PackedSequence)
            assert torch.equal(py.batch_sizes, tpy.batch_sizes)
            for a, b in ((py.sorted_indices, tpy.sorted_indices), (py.unsorted_indices, tpy.unsorted_indices)):
                assert (a is None and b is None) or torch.equal(a, b)
            assert max(float((a - b).abs().max()) for a, b in ((py.data, tpy.data), (ph, tph), (pc, tpc))) < 1e-5


def test_as_torch_refuses_gradients_and_other_devices():
    torch = _torch()
    mod = lstmgen.compile(torch.nn.LSTM(2, 3)).as_torch()
    x = torch.randn(4, 1, 2, requires_grad=True)
    with pytest.raises(RuntimeError, match="inference-only"):
        mod(x)
    with torch.no_grad():
        assert mod(x)[0].shape == (4, 1, 3)
    with pytest.raises(TypeError, match="torch.Tensor"):
        mod(np.zeros((4, 1, 2), np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        mod(torch.zeros(4, 1, 2, dtype=torch.int64))
    y64 = mod(torch.randn(4, 1, 2, dtype=torch.float64))[0]
    assert y64.dtype == torch.float64
    assert "lstmgen.Model(LSTM(2, 3)" in repr(mod)
