"""Golden reference LSTM forward pass in numpy float64, written straight from the equations.

Input: an `LSTMSpec`, a weight mapping with exactly the names and shapes of
`spec.weight_shapes()` (torch state_dict names and layout, gate order i, f, g, o), the input
sequence `x`, optionally the initial state `hx = (h0, c0)` and per-sequence `lengths`.
Output: `(out, (h_n, c_n))` as float64 numpy arrays, laid out like torch.nn.LSTM's outputs.

This module is the definition of correctness for everything lstmgen generates. It shares no
code with the rest of lstmgen (only `LSTMSpec` for sizes and flags) and favours plain,
readable loops over layers, directions and time; only the batch is vectorized.

Notation: T time steps, B batch, I input size, H hidden size, P proj size, R = P or H (size
of h), L layers, D directions (2 if bidirectional else 1).

Per layer k, direction d and step t (ONNX extras in brackets, all off for a torch cell):
    z = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh;  zi, zf, zg, zo = split(z, 4)   (torch order)
    zi += p_i * c_{t-1};  zf += p_f * c_{t-1}                                  [peepholes]
    zi, zf, zg = clamp(zi, zf, zg, -clip, clip)                                 [clip]
    i = f_act(zi);  f = f_act(zf)  [or f = 1 - i with input_forget];  g = g_act(zg)
    c_t = f * c_{t-1} + i * g
    zo += p_o * c_t [peepholes];  zo = clamp(zo, -clip, clip) [clip];  o = f_act(zo)
    h_t = o * h_act(c_t);  h_t = W_hr h_t  (if proj_size > 0)
The reverse direction walks t = T-1 .. 0 (from t = lengths[b]-1 with `lengths`) and writes
its output back at t. Layer k > 0 reads [forward out, reverse out] of layer k-1.

A head (spec.head) then maps every step's output, zeros past a length included, layer by layer:
    Linear: y = W y + b (W (out, in), b (out) from head.{i}.weight / head.{i}.bias);  ReLU: max(y, 0);
    Tanh: tanh(y);  Sigmoid: 1 / (1 + exp(-y));  Softmax: exp(y - max y) / sum(exp(y - max y))
    over the features;  Identity: y.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lstmgen.spec import LSTMSpec

__all__ = ["activation", "apply_head", "lstm_forward"]


# ---- activations (as the ONNX operator spec defines them) ---------------------------------


def _sigmoid(x: np.ndarray) -> np.ndarray:
    # 1 / (1 + exp(-x)) computed without overflow: exp(-log(1 + exp(-x)))
    return np.exp(-np.logaddexp(0.0, -x))


def activation(name: str, alpha: float | None, beta: float | None, x: np.ndarray) -> np.ndarray:
    """Apply the ONNX activation `name` (with its alpha/beta) elementwise to float64 `x`."""
    if name == "Sigmoid":
        return _sigmoid(x)
    if name == "Tanh":
        return np.tanh(x)
    if name == "Relu":
        return np.maximum(x, 0.0)
    if name == "Affine":
        return alpha * x + beta
    if name == "LeakyRelu":
        return np.where(x >= 0.0, x, alpha * x)
    if name == "ThresholdedRelu":
        return np.where(x > alpha, x, 0.0)
    if name == "ScaledTanh":
        return alpha * np.tanh(beta * x)
    if name == "HardSigmoid":
        return np.maximum(0.0, np.minimum(1.0, alpha * x + beta))
    if name == "Elu":
        # expm1 of min(x, 0) so the unused branch never overflows
        return np.where(x >= 0.0, x, alpha * np.expm1(np.minimum(x, 0.0)))
    if name == "Softsign":
        return x / (1.0 + np.abs(x))
    if name == "Softplus":
        return np.logaddexp(0.0, x)  # log(1 + exp(x)), stable for large |x|
    raise ValueError(f"unknown activation {name!r}")


def apply_head(spec: LSTMSpec, weights: Mapping[str, object], y: np.ndarray) -> np.ndarray:
    """The head of `spec` on float64 y (..., D*R) -> (..., spec.head_output_size), every step alike."""
    for i, layer in enumerate(spec.head):
        if layer.kind == "Linear":
            W = np.asarray(weights[f"head.{i}.weight"], dtype=np.float64)  # (out, in)
            y = y @ W.T
            if layer.bias:
                y = y + np.asarray(weights[f"head.{i}.bias"], dtype=np.float64)  # (out,)
        elif layer.kind == "ReLU":
            y = np.maximum(y, 0.0)
        elif layer.kind == "Tanh":
            y = np.tanh(y)
        elif layer.kind == "Sigmoid":
            y = _sigmoid(y)
        elif layer.kind == "Softmax":
            e = np.exp(y - y.max(axis=-1, keepdims=True))
            y = e / e.sum(axis=-1, keepdims=True)
        elif layer.kind != "Identity":
            raise ValueError(f"unknown head layer {layer.kind!r}")
    return y


# ---- validation -------------------------------------------------------------------------


def _check_weights(spec: LSTMSpec, weights: Mapping[str, object]) -> dict[str, np.ndarray]:
    expected = spec.weight_shapes()
    extra = sorted(set(weights) - set(expected))
    if extra:
        raise ValueError(
            f"unexpected weight {extra[0]!r} (not part of this spec; expected keys: {sorted(expected)})"
        )
    out: dict[str, np.ndarray] = {}
    for name, shape in expected.items():
        if name not in weights:
            raise ValueError(f"missing weight {name!r} (expected shape {shape})")
        w = np.asarray(weights[name], dtype=np.float64)
        if w.shape != shape:
            raise ValueError(f"weight {name!r} has shape {w.shape}, expected {shape}")
        out[name] = w
    return out


def _check_state(name: str, value: object, shape: tuple[int, ...]) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.shape != shape:
        raise ValueError(f"{name} has shape {a.shape}, expected {shape}")
    return a


def _check_lengths(lengths: object, B: int, T: int) -> np.ndarray:
    a = np.asarray(lengths)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.shape != (B,):
        raise ValueError(f"lengths has shape {a.shape}, expected ({B},) (one length per batch row)")
    if a.dtype.kind not in "iu":
        raise ValueError(f"lengths must be integers, got dtype {a.dtype}")
    if a.min() < 1 or a.max() > T:
        raise ValueError(f"lengths must be in [1, T={T}], got {a.tolist()}")
    return a.astype(np.int64)


# ---- forward ----------------------------------------------------------------------------


def quantize_rows(x: np.ndarray, q: int) -> np.ndarray:
    """Each row of x (..., K) rounded to a multiple of max|row| / q, as int8's integer kernels round
    a product's inputs (kernels.py: VNNI, PMADD, IDOT; q = kernels.KernelPlan.input_q): a row with a
    NaN or an infinity becomes NaN, one whose max|x| is below 1e-30 becomes zeros."""
    m = np.max(np.abs(x), axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        step = m / q
        out = np.rint(x / np.where(m >= 1e-30, step, 1.0)) * step
    out = np.where(m >= 1e-30, out, 0.0)
    return np.where(np.isfinite(m), out, np.nan)


def _run_direction(
    spec: LSTMSpec,
    w: dict[str, np.ndarray],
    layer: int,
    direction: int,
    inp: np.ndarray,  # (T, B, I_k)
    h0: np.ndarray,  # (B, R)
    c0: np.ndarray,  # (B, H)
    lengths: np.ndarray,  # (B,)
    input_q: int = 0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One layer, one direction. Returns out (T, B, R), h_n (B, R), c_n (B, H)."""
    T, B, _ = inp.shape
    H, R = spec.hidden_size, spec.output_size
    sfx = f"l{layer}" + ("_reverse" if direction == 1 else "")
    W_ih = w[f"weight_ih_{sfx}"]  # (4H, I_k), rows: i, f, g, o
    W_hh = w[f"weight_hh_{sfx}"]  # (4H, R)
    b = np.zeros(4 * H)  # (4H,)
    if spec.bias:
        b = w[f"bias_ih_{sfx}"] + w[f"bias_hh_{sfx}"]
    W_hr = w.get(f"weight_hr_{sfx}")  # (P, H) or None
    if spec.peepholes:
        p_i, p_f, p_o = np.split(w[f"weight_ph_{sfx}"], 3)  # each (H,)
    f_act, g_act, h_act = spec.direction_activations(direction)
    clip = spec.clip

    def act(a, x):
        return activation(a.name, a.alpha, a.beta, x)

    def clamp(x):
        return x if clip is None else np.clip(x, -clip, clip)

    backwards = direction == 1 or spec.reverse
    steps = range(T - 1, -1, -1) if backwards else range(T)
    h, c = h0.copy(), c0.copy()  # (B, R), (B, H)
    out = np.zeros((T, B, R))  # (T, B, R); stays 0 past each sequence's length
    def rows(v):  # a product's input, as the kernels see it
        return quantize_rows(v, input_q) if input_q else v

    for t in steps:
        z = rows(inp[t]) @ W_ih.T + rows(h) @ W_hh.T + b  # (B, 4H)
        zi, zf, zg, zo = np.split(z, 4, axis=1)  # each (B, H)
        if spec.peepholes:
            zi = zi + p_i * c
            zf = zf + p_f * c
        i = act(f_act, clamp(zi))
        f = 1.0 - i if spec.input_forget else act(f_act, clamp(zf))
        g = act(g_act, clamp(zg))
        c_new = f * c + i * g  # (B, H)
        if spec.peepholes:
            zo = zo + p_o * c_new
        o = act(f_act, clamp(zo))
        h_new = o * act(h_act, c_new)  # (B, H)
        if W_hr is not None:
            h_new = rows(h_new) @ W_hr.T  # (B, P)
        valid = (t < lengths)[:, None]  # (B, 1): rows whose sequence covers step t
        h = np.where(valid, h_new, h)
        c = np.where(valid, c_new, c)
        out[t] = np.where(valid, h_new, 0.0)
    return out, h, c


def lstm_forward(spec: LSTMSpec, weights: Mapping[str, object], x, hx=None, lengths=None, *, input_q: int = 0):
    """Run the LSTM described by `spec` on `x`.

    x: (T, B, I), or (B, T, I) when spec.batch_first, or unbatched (T, I).
    hx: optional (h0, c0) with h0 (L*D, B, R), c0 (L*D, B, H) (never batch_first), or
        (L*D, R), (L*D, H) for unbatched x. Defaults to zeros.
    lengths: optional ints (B,), 1 <= lengths[b] <= T: PyTorch packed-sequence semantics
        (outputs 0 for t >= lengths[b]; h_n/c_n taken at each sequence's last valid step).
    Returns out (T, B, D*R) (or (B, T, D*R) batch_first, (T, D*R) unbatched) and
    (h_n (L*D, B, R), c_n (L*D, B, H)), indexed layer*D + direction; all float64. With a head,
    out is the head's output (..., spec.head_output_size) instead (h_n, c_n unchanged).
    input_q: 0, or q > 0 to round the input rows of every W_ih, W_hh and W_hr product as int8's
        integer kernels do (quantize_rows; kernels.KernelPlan.input_q), for checking them tightly.
    """
    if not isinstance(spec, LSTMSpec):
        raise TypeError(f"spec must be an LSTMSpec, got {type(spec).__name__}")
    w = _check_weights(spec, weights)
    L, D, H, R = spec.num_layers, spec.num_directions, spec.hidden_size, spec.output_size

    x = np.asarray(x, dtype=np.float64)
    if x.ndim not in (2, 3):
        raise ValueError(f"x must be 3-D (T, B, I) / (B, T, I) or unbatched 2-D (T, I), got shape {x.shape}")
    if x.shape[-1] != spec.input_size:
        raise ValueError(f"x has feature size {x.shape[-1]}, expected input_size={spec.input_size}")
    unbatched = x.ndim == 2
    if unbatched:
        x = x[:, None, :]  # (T, 1, I)
    elif spec.batch_first:
        x = x.transpose(1, 0, 2)  # (B, T, I) -> (T, B, I)
    T, B, _ = x.shape
    if T < 1 or B < 1:
        raise ValueError(f"x must have at least one time step and one batch row, got shape {x.shape}")

    if hx is None:
        h0 = np.zeros((L * D, B, R))  # (L*D, B, R)
        c0 = np.zeros((L * D, B, H))  # (L*D, B, H)
    else:
        if not isinstance(hx, (tuple, list)) or len(hx) != 2:
            raise ValueError("hx must be a pair (h0, c0)")
        if unbatched:
            h0 = _check_state("h0", hx[0], (L * D, R))[:, None, :]
            c0 = _check_state("c0", hx[1], (L * D, H))[:, None, :]
        else:
            h0 = _check_state("h0", hx[0], (L * D, B, R))
            c0 = _check_state("c0", hx[1], (L * D, B, H))

    lens = np.full(B, T, dtype=np.int64) if lengths is None else _check_lengths(lengths, B, T)  # (B,)

    h_n = np.zeros((L * D, B, R))  # (L*D, B, R)
    c_n = np.zeros((L * D, B, H))  # (L*D, B, H)
    inp = x  # (T, B, I_k)
    for layer in range(L):
        outs = []
        for d in range(D):
            idx = layer * D + d
            out_d, h_n[idx], c_n[idx] = _run_direction(spec, w, layer, d, inp, h0[idx], c0[idx], lens, input_q)
            outs.append(out_d)  # (T, B, R)
        inp = np.concatenate(outs, axis=2)  # (T, B, D*R)
    out = apply_head(spec, w, inp)  # (T, B, D*R), or the head's (T, B, O)

    if unbatched:
        return out[:, 0, :], (h_n[:, 0, :], c_n[:, 0, :])
    if spec.batch_first:
        out = out.transpose(1, 0, 2)  # (B, T, D*R)
    return out, (h_n, c_n)
