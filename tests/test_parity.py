"""Compiled C vs the float64 numpy reference over many seeded configs; schedules and streaming agree.

Tolerance: 1e-5 absolute on out, h_n and c_n (float32 C vs float64 reference; inputs ~N(0,1),
weights U(-1/sqrt(H), 1/sqrt(H)) as torch initialises them).
"""

from __future__ import annotations

import numpy as np
import pytest

import lstmgen
from lstmgen import reference

ATOL = 1e-5
N_CONFIGS = 32


def random_config(seed: int) -> dict:
    """A seeded config covering every torch knob, some ONNX cell extras, lengths and h0/c0."""
    rng = np.random.default_rng(1000 + seed)
    H = int(rng.integers(1, 24))
    bidirectional = bool(rng.random() < 0.4)
    spec = dict(
        input_size=int(rng.integers(1, 12)),
        hidden_size=H,
        num_layers=int(rng.integers(1, 4)),
        bias=bool(rng.random() < 0.8),
        batch_first=bool(rng.random() < 0.4),
        bidirectional=bidirectional,
        proj_size=int(rng.integers(1, H)) if H > 1 and rng.random() < 0.35 else 0,
    )
    if seed % 8 == 7:  # every eighth config: an ONNX cell
        spec.update(peepholes=bool(rng.random() < 0.7), clip=float(rng.choice([None, 0.5, 3.0]) or 0) or None,
                    input_forget=bool(rng.random() < 0.4),
                    activations=[str(rng.choice(["Sigmoid", "HardSigmoid"])), str(rng.choice(["Tanh", "Softsign", "Relu"])),
                                 str(rng.choice(["Tanh", "ScaledTanh", "Softplus"]))])
        if not bidirectional and rng.random() < 0.5:
            spec["reverse"] = True
    T = int(rng.integers(1, 9))
    B = int(rng.integers(1, 5))
    return dict(
        spec=spec,
        T=T,
        B=B,
        unbatched=bool(rng.random() < 0.15),
        lengths=bool(rng.random() < 0.4),
        hx=bool(rng.random() < 0.5),
        seed=seed,
    )


def make_inputs(spec: lstmgen.LSTMSpec, T: int, B: int, unbatched: bool, lengths: bool, hx: bool, seed: int):
    rng = np.random.default_rng(seed)
    D, L, H, R, I = spec.num_directions, spec.num_layers, spec.hidden_size, spec.output_size, spec.input_size
    if unbatched:
        B = 1
        x = rng.standard_normal((T, I)).astype(np.float32)
        h = (rng.standard_normal((L * D, R)).astype(np.float32), rng.standard_normal((L * D, H)).astype(np.float32))
    else:
        shape = (B, T, I) if spec.batch_first else (T, B, I)
        x = rng.standard_normal(shape).astype(np.float32)
        h = (rng.standard_normal((L * D, B, R)).astype(np.float32), rng.standard_normal((L * D, B, H)).astype(np.float32))
    lens = rng.integers(1, T + 1, size=B) if lengths and not unbatched else None
    return x, (h if hx else None), lens


def max_err(a, b) -> float:
    out, (h, c) = a
    rout, (rh, rc) = b
    assert out.shape == rout.shape and h.shape == rh.shape and c.shape == rc.shape
    return max(float(np.abs(out - rout).max()), float(np.abs(h - rh).max()), float(np.abs(c - rc).max()))


CONFIGS = [random_config(s) for s in range(N_CONFIGS)]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[f"cfg{c['seed']}" for c in CONFIGS])
def test_c_matches_reference(cfg):
    spec = lstmgen.LSTMSpec(**cfg["spec"])
    weights = lstmgen.random_weights(spec, seed=cfg["seed"])
    model = lstmgen.compile(spec, weights)
    x, hx, lens = make_inputs(spec, cfg["T"], cfg["B"], cfg["unbatched"], cfg["lengths"], cfg["hx"], cfg["seed"])
    got = model(x, hx, lengths=lens)
    want = reference.lstm_forward(spec, weights, x, hx, lengths=lens)
    assert max_err(got, want) <= ATOL


# Schedules: unrolled and chunked must give the same numbers as looped (bit for bit: same kernels,
# ISO C without FMA contraction).
SCHEDULE_CONFIGS = [c for c in CONFIGS if not c["unbatched"]][:10]


@pytest.mark.parametrize("cfg", SCHEDULE_CONFIGS, ids=[f"cfg{c['seed']}" for c in SCHEDULE_CONFIGS])
def test_schedules_agree(cfg):
    spec = lstmgen.LSTMSpec(**cfg["spec"])
    weights = lstmgen.random_weights(spec, seed=cfg["seed"])
    x, hx, lens = make_inputs(spec, cfg["T"], cfg["B"], False, cfg["lengths"], cfg["hx"], cfg["seed"])
    looped = lstmgen.compile(spec, weights)(x, hx, lengths=lens)
    unrolled = lstmgen.compile(spec, weights, time_loop="unrolled", seq_len=cfg["T"])(x, hx, lengths=lens)
    for a, b in zip((looped[0], *looped[1]), (unrolled[0], *unrolled[1])):
        np.testing.assert_array_equal(a, b)
    if not spec.bidirectional:
        chunked = lstmgen.compile(spec, weights, chunk=3)(x, hx, lengths=lens)
        for a, b in zip((looped[0], *looped[1]), (chunked[0], *chunked[1])):
            np.testing.assert_array_equal(a, b)
    want = reference.lstm_forward(spec, weights, x, hx, lengths=lens)
    assert max_err(unrolled, want) <= ATOL


@pytest.mark.parametrize("proj", [0, 3])
def test_stream_equals_forward(proj):
    spec = lstmgen.LSTMSpec(input_size=5, hidden_size=7, num_layers=3, proj_size=proj)
    weights = lstmgen.random_weights(spec, seed=3)
    model = lstmgen.compile(spec, weights)
    rng = np.random.default_rng(0)
    T, B = 11, 3
    x = rng.standard_normal((T, B, 5)).astype(np.float32)
    out, (h_n, c_n) = model(x)
    s = model.stream(batch=B)
    ys = np.stack([s.step(x[t]) for t in range(T)])
    np.testing.assert_array_equal(ys, out)  # same cell code, same order: bit-identical
    h, c = s.state
    np.testing.assert_array_equal(h, h_n)
    np.testing.assert_array_equal(c, c_n)
    # reset(row) restarts one channel only
    s.reset(1)
    h2, c2 = s.state
    assert not h2[:, 1].any() and not c2[:, 1].any()
    np.testing.assert_array_equal(h2[:, [0, 2]], h_n[:, [0, 2]])
    y_row1 = s.step(x[0])[1]
    fresh = model.stream(batch=1)
    np.testing.assert_array_equal(y_row1, fresh.step(x[0, 1]))
    s.reset()
    assert not s.state[0].any()


def test_stream_unrolled_model_and_state_setter():
    spec = lstmgen.LSTMSpec(input_size=2, hidden_size=4)
    weights = lstmgen.random_weights(spec, seed=9)
    model = lstmgen.compile(spec, weights, time_loop="unrolled", seq_len=5)
    x = np.random.default_rng(1).standard_normal((5, 1, 2)).astype(np.float32)
    out, _ = model(x)
    s = model.stream()
    np.testing.assert_array_equal(np.stack([s.step(x[t, 0]) for t in range(5)]), out[:, 0])
    h, c = s.state
    s.state = (h * 0, c * 0)
    assert not s.state[0].any()


def test_stream_refuses_bidirectional_and_reverse():
    for kw in (dict(bidirectional=True), dict(reverse=True)):
        spec = lstmgen.LSTMSpec(input_size=2, hidden_size=3, **kw)
        model = lstmgen.compile(spec, lstmgen.random_weights(spec))
        with pytest.raises(ValueError, match="unidirectional"):
            model.stream()


def test_one_build_any_T_and_B_and_weight_sets():
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=5, num_layers=2)
    w1, w2 = lstmgen.random_weights(spec, seed=1), lstmgen.random_weights(spec, seed=2)
    m1 = lstmgen.compile(spec, w1)
    m2 = m1.with_weights(w2)
    assert m2.artifact.module is m1.artifact.module
    rng = np.random.default_rng(5)
    for T, B in [(1, 1), (17, 1), (3, 9), (40, 2)]:
        x = rng.standard_normal((T, B, 3)).astype(np.float32)
        for m, w in ((m1, w1), (m2, w2)):
            assert max_err(m(x), reference.lstm_forward(spec, w, x)) <= ATOL


def test_long_sequence_stays_accurate():
    spec = lstmgen.LSTMSpec(input_size=4, hidden_size=16, num_layers=2, bidirectional=True, proj_size=6)
    weights = lstmgen.random_weights(spec, seed=4)
    model = lstmgen.compile(spec, weights)
    x = np.random.default_rng(2).standard_normal((1000, 2, 4)).astype(np.float32)
    assert max_err(model(x), reference.lstm_forward(spec, weights, x)) <= ATOL
