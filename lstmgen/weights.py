"""Weights: check a state_dict against a spec, and pack it into the layout the C kernels read.

Input: an `LSTMSpec` and a mapping name -> array with exactly torch.nn.LSTM.state_dict()'s
names and shapes. Output: `check_weights` gives float32 C-contiguous arrays under the same
names; `pack` gives one `PackedCell` per (layer, direction) in kernel layout:

    w_ih  (I_k, 4H)  W_ih transposed: row k holds input feature k's weight for all 4H gates
    w_hh  (R, 4H)    W_hh transposed
    bias  (4H,)      b_ih + b_hh, folded once (None when bias=False)
    w_hr  (H, P)     W_hr transposed (None without projection)
    w_ph  (3H,)      peepholes i, f, o (None without peepholes)

Gate order stays torch's i, f, g, o. The transposed layout makes every product an AXPY over
the contiguous 4H axis, which vectorizes without horizontal sums.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .spec import LSTMSpec


@dataclass(frozen=True)
class PackedCell:
    layer: int
    direction: int
    w_ih: np.ndarray  # (I_k, 4H) float32
    w_hh: np.ndarray  # (R, 4H) float32
    bias: np.ndarray | None  # (4H,) float32
    w_hr: np.ndarray | None  # (H, P) float32
    w_ph: np.ndarray | None  # (3H,) float32


def suffix(layer: int, direction: int) -> str:
    return f"l{layer}" + ("_reverse" if direction == 1 else "")


def check_weights(spec: LSTMSpec, weights: Mapping[str, Any], *, allow_nonfinite: bool = False) -> dict[str, np.ndarray]:
    """Validate names, shapes, dtypes and values; return float32 C-contiguous copies."""
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must be a mapping of state_dict names to arrays, got {type(weights).__name__}")
    expected = spec.weight_shapes()
    for key in weights:
        if not isinstance(key, str):
            raise TypeError(f"weight names must be strings, got {key!r}")
    missing = [k for k in expected if k not in weights]
    extra = [k for k in weights if k not in expected]
    if missing:
        shapes = ", ".join(f"{k} {expected[k]}" for k in missing)
        raise ValueError(f"missing weight(s) for spec ({spec.summary()}): {shapes}")
    if extra:
        raise ValueError(f"unexpected weight(s) for spec ({spec.summary()}): {', '.join(sorted(extra))}; expected keys: {', '.join(expected)}")
    out: dict[str, np.ndarray] = {}
    for key, shape in expected.items():
        value = weights[key]
        if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
            value = value.detach().cpu().numpy()
        try:
            arr = np.asarray(value)
        except (ValueError, TypeError) as exc:  # ragged nested lists and the like
            raise TypeError(f"weight {key!r} must be a real floating array, got {type(value).__name__} ({exc})") from None
        if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
            raise TypeError(f"weight {key!r} must be a real floating array, got dtype {arr.dtype}")
        if arr.shape != shape:
            raise ValueError(f"weight {key!r} has shape {arr.shape}, expected {shape}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if not allow_nonfinite and not np.isfinite(arr).all():
            bad = int((~np.isfinite(arr)).sum())
            raise ValueError(f"weight {key!r} has {bad} NaN/Inf value(s) (as float32); pass allow_nonfinite=True to keep them")
        out[key] = arr
    return out


def pack(spec: LSTMSpec, weights: Mapping[str, Any], *, allow_nonfinite: bool = False) -> list[PackedCell]:
    """State-dict weights -> kernel layout, one PackedCell per (layer, direction), in order l*D+d."""
    w = check_weights(spec, weights, allow_nonfinite=allow_nonfinite)
    cells = []
    for layer in range(spec.num_layers):
        for d in range(spec.num_directions):
            s = suffix(layer, d)

            def t(name: str) -> np.ndarray:
                return np.ascontiguousarray(w[name].T)

            bias = None
            if spec.bias:
                folded = w[f"bias_ih_{s}"].astype(np.float64) + w[f"bias_hh_{s}"].astype(np.float64)
                bias = folded.astype(np.float32)
            cells.append(
                PackedCell(
                    layer=layer,
                    direction=d,
                    w_ih=t(f"weight_ih_{s}"),
                    w_hh=t(f"weight_hh_{s}"),
                    bias=bias,
                    w_hr=t(f"weight_hr_{s}") if spec.proj_size else None,
                    w_ph=w[f"weight_ph_{s}"] if spec.peepholes else None,
                )
            )
    return cells


def random_weights(spec: LSTMSpec, seed: int = 0, scale: float | None = None) -> dict[str, np.ndarray]:
    """Uniform(-k, k) weights with k = 1/sqrt(H), like torch's default init (for demos and tests)."""
    rng = np.random.default_rng(seed)
    k = scale if scale is not None else 1.0 / np.sqrt(spec.hidden_size)
    return {name: rng.uniform(-k, k, size=shape).astype(np.float32) for name, shape in spec.weight_shapes().items()}
