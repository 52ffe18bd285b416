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

Vector kernels (kernels.py) read a gate-blocked variant, `unit_block` = U > 0 units per block
(U divides H; NB = H / U blocks); the 4H axis is then ordered block-major:

    w_ih  (NB, I_k, 4U)  block b, row k: [i, f, g, o] weights of units b*U .. b*U+U-1
    w_hh  (NB, R, 4U)    the same for W_hh; each block's panel is contiguous
    bias  (NB, 4U)       the same column order (and the gate buffer of the C follows it)

so one pass over a block's panel yields the four gate vectors of U units. unit_block = 0 is the
plain layout above (one block holding all H units, in torch's order). w_hr and w_ph never change.

The portable kernels (kernels.py, vw = 0) read a row-panel layout instead, `panel` = Q > 0 rows
per panel: the rows of W (N, K) in torch's order (N = 4H for w_ih and w_hh, P for w_hr), cut into
panels of Q consecutive rows, the last N % Q rows forming one smaller panel (`panel_rows`). A
panel of q rows starting at row n0 is stored (K, q) at offset n0 * K of a flat array:

    w[n0 * K + k * q + r] = W[n0 + r, k]      (r < q)

so a panel's dot products load each input x[k] once for its q rows and read their weights in
order. Nothing is padded: each array holds N * K floats. bias and w_ph keep torch's order.

A spec with a head adds, after the cells, one `PackedLinear` per Linear of the head, in head order:

    weight (out, in)   torch's own layout: row o is output feature o's weights (a dot product)
    bias   (out,)      None for Linear(bias=False)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    unit_block: int = 0  # 0: torch gate order; U > 0: gate-blocked layout (see above)
    panel: int = 0  # Q > 0: w_ih, w_hh and w_hr in Q-row panels, flat (see above)


@dataclass(frozen=True)
class PackedLinear:
    """A Linear layer of the head: weight (out, in) float32, bias (out,) float32 or None."""

    index: int  # position in spec.head (torch name head.{index}.weight)
    weight: np.ndarray
    bias: np.ndarray | None


def split_packed(packed: Any) -> tuple[list[PackedCell], list[PackedLinear]]:
    """pack()'s list (or one given back by the caller) -> (cells, head Linears), refusing anything else."""
    cells = [c for c in packed if isinstance(c, PackedCell)]
    linears = [c for c in packed if isinstance(c, PackedLinear)]
    if len(cells) + len(linears) != len(packed):
        bad = next(c for c in packed if not isinstance(c, (PackedCell, PackedLinear)))
        raise TypeError(f"packed weights hold PackedCell and PackedLinear entries, got {type(bad).__name__}")
    return cells, linears


def suffix(layer: int, direction: int) -> str:
    return f"l{layer}" + ("_reverse" if direction == 1 else "")


def as_numpy(value: Any, must: str) -> np.ndarray:
    """np.asarray of an array-like or a torch tensor (no copy when possible). A torch tensor of any
    floating dtype becomes float32 first (numpy has no bfloat16; the C reads float32 anyway), on
    the CPU, detached; torch is never imported here. `must` starts the TypeError raised for what
    numpy cannot make an array of (ragged nested lists and the like)."""
    if type(value).__module__.startswith("torch") and hasattr(value, "detach"):  # a torch tensor
        value = value.detach()
        if value.is_floating_point():
            value = value.float()  # bfloat16, float16, float64 -> float32 (float32: no copy)
        value = value.cpu().numpy()
    elif hasattr(value, "detach") and hasattr(value, "cpu"):  # tensor-like from elsewhere
        value = value.detach().cpu().numpy()
    try:
        return np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise TypeError(f"{must}, got {type(value).__name__} ({exc})") from None


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
        arr = as_numpy(weights[key], f"weight {key!r} must be a real floating array")
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


def aligned_copy(arr: np.ndarray, align: int = 64) -> np.ndarray:
    """A C-contiguous copy whose data starts on an `align`-byte boundary (numpy only promises 16):
    a vector load must not straddle two cache lines."""
    flat = np.empty(arr.size + align // arr.itemsize, dtype=arr.dtype)
    skip = (-flat.ctypes.data % align) // arr.itemsize
    out = flat[skip: skip + arr.size].reshape(arr.shape)
    out[...] = arr
    return out


def _blocked(gates_first: np.ndarray, unit_block: int) -> np.ndarray:
    """(4H, K) or (4H,) in torch order -> the gate-blocked layout (NB, K, 4U) or (NB, 4U), 64-byte aligned."""
    U = unit_block
    H = gates_first.shape[0] // 4
    if gates_first.ndim == 1:
        return aligned_copy(gates_first.reshape(4, H // U, U).transpose(1, 0, 2).reshape(H // U, 4 * U))
    K = gates_first.shape[1]
    return aligned_copy(gates_first.reshape(4, H // U, U, K).transpose(1, 3, 0, 2).reshape(H // U, K, 4 * U))


def panel_rows(n: int, panel: int) -> list[int]:
    """Rows of each panel of an n-row matrix in the `panel`-row layout (see above), in order:
    n // panel panels of `panel` rows, then one of the n % panel left (n = 40, panel = 16:
    [16, 16, 8])."""
    return [panel] * (n // panel) + ([n % panel] if n % panel else [])


def _panelled(rows_first: np.ndarray, panel: int) -> np.ndarray:
    """(N, K) in torch's row order -> the flat row-panel layout (N * K,) (see above)."""
    N, K = rows_first.shape
    out = np.empty(N * K, dtype=np.float32)
    n0 = 0
    for q in panel_rows(N, panel):
        out[n0 * K:(n0 + q) * K] = rows_first[n0:n0 + q].T.ravel()  # (K, q)
        n0 += q
    return out


def pack(spec: LSTMSpec, weights: Mapping[str, Any], *, allow_nonfinite: bool = False,
         unit_block: int = 0, panel: int = 0) -> list[PackedCell | PackedLinear]:
    """State-dict weights -> kernel layout, one PackedCell per (layer, direction), in order l*D+d,
    then one PackedLinear per Linear of the head (none without a head).

    unit_block: 0 for the plain transposed layout, or U > 0 dividing hidden_size for the
    gate-blocked layout the vector kernels read (kernels.KernelPlan.unit_block).
    panel: 0, or Q > 0 rows per panel for the row-panel layout the portable kernels read
    (kernels.KernelPlan.panel; needs unit_block = 0)."""
    if isinstance(unit_block, bool) or not isinstance(unit_block, int) or unit_block < 0 or (
            unit_block and spec.hidden_size % unit_block):
        raise ValueError(f"unit_block must be 0 or a positive divisor of hidden_size={spec.hidden_size}, got {unit_block!r}")
    if isinstance(panel, bool) or not isinstance(panel, int) or panel < 0 or (panel and unit_block):
        raise ValueError(f"panel must be an int >= 0, and 0 with a gate-blocked unit_block, got {panel!r} "
                         f"(unit_block={unit_block})")
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
            w_hr = None
            if unit_block:
                w_ih, w_hh = _blocked(w[f"weight_ih_{s}"], unit_block), _blocked(w[f"weight_hh_{s}"], unit_block)
                bias = _blocked(bias, unit_block) if bias is not None else None
                w_hr = aligned_copy(t(f"weight_hr_{s}")) if spec.proj_size else None
            elif panel:
                w_ih, w_hh = _panelled(w[f"weight_ih_{s}"], panel), _panelled(w[f"weight_hh_{s}"], panel)
                w_hr = _panelled(w[f"weight_hr_{s}"], panel) if spec.proj_size else None
            else:
                w_ih, w_hh = t(f"weight_ih_{s}"), t(f"weight_hh_{s}")
                w_hr = t(f"weight_hr_{s}") if spec.proj_size else None
            cells.append(
                PackedCell(
                    layer=layer,
                    direction=d,
                    w_ih=w_ih,
                    w_hh=w_hh,
                    bias=bias,
                    w_hr=w_hr,
                    w_ph=w[f"weight_ph_{s}"] if spec.peepholes else None,
                    unit_block=unit_block,
                    panel=panel,
                )
            )
    head: list[PackedCell | PackedLinear] = [PackedLinear(i, w[f"head.{i}.weight"], w[f"head.{i}.bias"] if h.bias else None)
                       for i, h in spec.head_linears()]
    return cells + head


def random_weights(spec: LSTMSpec, seed: int = 0, scale: float | None = None) -> dict[str, np.ndarray]:
    """Uniform(-k, k) weights with k = 1/sqrt(H), like torch's default init (for demos and tests)."""
    rng = np.random.default_rng(seed)
    k = scale if scale is not None else 1.0 / np.sqrt(spec.hidden_size)
    return {name: rng.uniform(-k, k, size=shape).astype(np.float32) for name, shape in spec.weight_shapes().items()}
