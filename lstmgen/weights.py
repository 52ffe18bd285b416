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
order. Nothing is padded (but see kgroup below): each array holds N * K floats. bias and w_ph keep
torch's order.

bfloat16 in the gate-blocked layout interleaves each row's gate vectors in pairs (`_paired`): the 4U
values of a row are stored u0[0], u1[0], u0[1], u1[1], ... for the pairs of gate vectors (i, f) and
(g, o), so one 32-bit lane holds a weight of each and the kernels widen two vectors from one load
with one shift and one mask.

int8 on integer dot products (kernels.py: VNNI, PMADD, IDOT; ScheduledProgram.kgroup = g, 4 or 2)
groups g consecutive k of each output side by side, the bytes one lane of the dot-product
instruction multiplies, K padded with zero weights to a multiple of g (`_kgroups`):

    gate-blocked   w (NB, ceil(K / g), 4U, g)   w[b, i, n, j] = W[b's column n, g i + j]
    row panels     each panel (ceil(K / g), q, g) at offset n0 * g ceil(K / g)
    w_hr           (ceil(H / g), P, g)

Low-precision weights (`weights_dtype`, kernels.WEIGHT_DTYPES): w_ih, w_hh and w_hr are stored
as float16 (np.float16 bits, viewed as uint16), bfloat16 (the top 16 bits of each float32, rounded
to nearest even, as uint16) or int8 (symmetric, one float32 scale per output row of the torch
matrix: s_ih, s_hh (4H,) in the same column order as bias, s_hr (P,)); `quantize` and
`dequantize` convert one matrix, `dequantized_weights` gives the float32 state_dict the C
effectively computes with (what reference.py should run to check the C, not the quantisation).

A weight matrix may also be given already quantised, as a `QuantizedMatrix` (what from_torch reads
out of a torch dynamically quantised LSTM): an ndarray of the dequantised float32 values q * s, so
everything that reads weights as arrays (reference.py, torch.from_numpy, the float32 and float16
kernels) sees exactly what it stands for, that also carries the int8 values q (out, in) and the
float32 row scales s (out,). With weights_dtype="int8", quantize and pack store q and s as they are
(no requantisation: torch's int8 values, -128 included, reach the C unchanged); any other dtype
rounds the dequantised values as it would any float32 matrix.

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
    s_ih: np.ndarray | None = None  # int8 weights: float32 scale per output column of w_ih
    s_hh: np.ndarray | None = None
    s_hr: np.ndarray | None = None
    weights_dtype: str = "float32"  # what w_ih, w_hh and w_hr hold (kernels.WEIGHT_DTYPES)
    kgroup: int = 0  # g > 0: int8 in groups of g consecutive k per output for the integer kernels (see above)


@dataclass(frozen=True)
class PackedLinear:
    """A Linear layer of the head: weight (out, in) float32, bias (out,) float32 or None."""

    index: int  # position in spec.head (torch name head.{index}.weight)
    weight: np.ndarray
    bias: np.ndarray | None


class QuantizedMatrix(np.ndarray):
    """An int8 weight matrix with one float32 scale per row, w = q * scale[:, None].

    As an array it is those dequantised float32 values (out, in), computed the way torch's
    dequantize() does (one float32 product per element); `.q` (int8, out x in) and `.scale`
    (float32, out) are the quantised form itself, read-only. A per-tensor scale (a scalar) is
    given to every row. Only the object made here carries q and scale: views, copies and results
    of arithmetic are plain float matrices (their .q is None), and `int8_form()` hands out q and
    scale only while the values still equal q * scale (writing into the array drops them)."""

    q: np.ndarray | None
    scale: np.ndarray | None

    def __new__(cls, q: Any, scale: Any) -> "QuantizedMatrix":
        q = np.asarray(q)
        if q.dtype != np.int8 or q.ndim != 2:
            raise TypeError(f"QuantizedMatrix needs a 2-D int8 array q (out, in), got {q.dtype} of shape {q.shape}")
        s = np.asarray(scale, dtype=np.float64)
        if s.ndim == 0:
            s = np.full(q.shape[0], float(s))
        if s.shape != (q.shape[0],):
            raise ValueError(f"QuantizedMatrix scale has shape {s.shape}, expected () or ({q.shape[0]},) (one per row)")
        s32 = s.astype(np.float32)
        if not (np.isfinite(s32).all() and (s32 > 0).all()):
            raise ValueError("QuantizedMatrix scales must be finite and positive (float32)")
        q = np.array(q, order="C")
        q.flags.writeable = False
        s32.flags.writeable = False
        obj = np.ascontiguousarray(q.astype(np.float32) * s32[:, None], dtype=np.float32).view(cls)
        obj.q, obj.scale = q, s32
        return obj

    def __array_finalize__(self, obj: Any) -> None:
        self.q = None  # views and results: plain float values
        self.scale = None

    def __reduce__(self):
        if self.q is None:
            return np.asarray(self).copy().__reduce__()
        return (QuantizedMatrix, (self.q, self.scale))

    def int8_form(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(q, scale) when this is the matrix they stand for, else None (a view, a copy, or values
        written since)."""
        if self.q is None or self.scale is None or self.shape != self.q.shape:
            return None
        if not np.array_equal(np.asarray(self), self.q.astype(np.float32) * self.scale[:, None]):
            return None
        return self.q, self.scale

    @classmethod
    def from_torch(cls, tensor: Any, name: str = "weight") -> "QuantizedMatrix":
        """A torch qint8 tensor (out, in), per-tensor or per-channel along the rows (axis 0), with
        zero point 0 (symmetric, as torch's default weight observers make it): its int_repr()
        and scales, unchanged (torch keeps the scales as float32; they are read as such).
        torch is not imported here."""
        if str(getattr(tensor, "dtype", "")) != "torch.qint8":
            raise ValueError(f"{name}: a quantised weight must be torch.qint8, got {tensor.dtype}")
        scheme = str(tensor.qscheme())
        if scheme in ("torch.per_tensor_affine", "torch.per_tensor_symmetric"):
            scale, zero = tensor.q_scale(), np.asarray([tensor.q_zero_point()])
        elif scheme in ("torch.per_channel_affine", "torch.per_channel_symmetric"):
            if tensor.q_per_channel_axis() != 0:
                raise ValueError(f"{name}: per-channel scales along axis {tensor.q_per_channel_axis()}; lstmgen's int8 "
                                 "weights have one scale per row (output feature), axis 0")
            scale = tensor.q_per_channel_scales().double().cpu().numpy()
            zero = tensor.q_per_channel_zero_points().cpu().numpy()
        else:
            raise ValueError(f"{name}: quantisation scheme {scheme} is not supported (per-tensor or per-row qint8 only)")
        if np.any(zero != 0):
            bad = int(np.flatnonzero(zero != 0)[0])
            raise ValueError(f"{name}: zero point {int(zero[bad])} (row {bad} of its scales); lstmgen's int8 weights are "
                             "symmetric, w = q * s: quantise with a symmetric weight observer (torch's default dynamic "
                             "qconfigs are), or compile the float module")
        q = tensor.int_repr().cpu().numpy()
        return cls(q, scale)


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
        value = weights[key]
        if getattr(value, "is_quantized", False) and hasattr(value, "int_repr"):  # a torch qint8 tensor
            value = QuantizedMatrix.from_torch(value, key)
        if isinstance(value, QuantizedMatrix) and value.int8_form() is not None:
            if value.shape != shape:
                raise ValueError(f"weight {key!r} has shape {value.shape}, expected {shape}")
            out[key] = value  # float32, C-contiguous and finite by construction; q and scale kept for pack
            continue
        arr = as_numpy(value, f"weight {key!r} must be a real floating array")
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


def quantize(w: np.ndarray, dtype: str, name: str = "weight") -> tuple[np.ndarray, np.ndarray | None]:
    """A float32 matrix (out, in) in torch's layout -> (values in dtype's storage, per-row float32
    scales for int8 else None). float16 and bfloat16 round to nearest even; int8 is symmetric,
    q = rint(w / s) with s = max |row| / 127 (1 for an all-zero row). A QuantizedMatrix gives its own
    q and scales for int8 (no requantisation) and is rounded from its float values otherwise."""
    if dtype == "int8" and isinstance(w, QuantizedMatrix):
        form = w.int8_form()
        if form is not None:
            return np.array(form[0]), np.array(form[1])
    w = np.ascontiguousarray(w, dtype=np.float32)
    if dtype == "float32":
        return w, None
    if dtype == "float16":
        big = np.abs(w[np.isfinite(w)]).max(initial=0.0)
        if big > 65504.0:
            raise ValueError(f"weight {name!r} has |w| = {big:g}, past float16's largest value 65504: use bfloat16, int8 or float32")
        return w.astype(np.float16).view(np.uint16), None
    if dtype == "bfloat16":
        u = w.view(np.uint32).astype(np.uint64)
        r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        nan = np.isnan(w)
        r[nan] = ((u[nan] >> 16) | 0x40).astype(np.uint16)  # stays a (quiet) NaN
        return r, None
    if dtype == "int8":
        if not np.isfinite(w).all():
            raise ValueError(f"weight {name!r} has NaN/Inf values: int8 cannot hold them (use float32)")
        amax = np.abs(w).max(axis=1)
        scale = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
        q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
        return q, scale
    raise ValueError(f"weights_dtype must be one of float32, float16, bfloat16, int8, got {dtype!r}")


def dequantize(values: np.ndarray, scale: np.ndarray | None, dtype: str) -> np.ndarray:
    """quantize's output -> the float32 matrix the kernels compute with (int8: q * s per row)."""
    if dtype == "float32":
        return np.asarray(values, np.float32)
    if dtype == "float16":
        return values.view(np.float16).astype(np.float32)
    if dtype == "bfloat16":
        return (values.astype(np.uint32) << 16).view(np.float32)
    return (values.astype(np.float32) * scale[:, None]).astype(np.float32)


_MATRICES = ("weight_ih_", "weight_hh_", "weight_hr_")


def dequantized_weights(spec: LSTMSpec, weights: Mapping[str, Any], dtype: str) -> dict[str, np.ndarray]:
    """The state_dict with W_ih, W_hh and W_hr replaced by what dtype keeps of them (float32)."""
    w = check_weights(spec, weights, allow_nonfinite=True)
    return {k: dequantize(*quantize(v, dtype, k), dtype) if k.startswith(_MATRICES) else v for k, v in w.items()}


def _blocked(gates_first: np.ndarray, unit_block: int) -> np.ndarray:
    """(4H, K) or (4H,) in torch order -> the gate-blocked layout (NB, K, 4U) or (NB, 4U), 64-byte aligned."""
    U = unit_block
    H = gates_first.shape[0] // 4
    if gates_first.ndim == 1:
        return aligned_copy(gates_first.reshape(4, H // U, U).transpose(1, 0, 2).reshape(H // U, 4 * U))
    K = gates_first.shape[1]
    return aligned_copy(gates_first.reshape(4, H // U, U, K).transpose(1, 3, 0, 2).reshape(H // U, K, 4 * U))


def _paired(blocked: np.ndarray) -> np.ndarray:
    """(NB, K, 4U) gate-blocked bfloat16 bits -> the same with gate vectors 0, 1 and 2, 3 of each
    row interleaved (u0[0], u1[0], u0[1], u1[1], ...): one 32-bit lane of a load holds a weight of
    each, so the kernels widen two vectors with one shift and one mask (the top half is a float32)."""
    NB, K, G4 = blocked.shape
    return aligned_copy(blocked.reshape(NB, K, 2, 2, G4 // 4).swapaxes(-1, -2).reshape(NB, K, G4))


def _kgroups(kn: np.ndarray, g: int) -> np.ndarray:
    """(..., K, N) -> (..., ceil(K / g), N, g): each output's weights for k = g i .. g i + g - 1 side
    by side (the bytes one lane of an integer dot product multiplies: VNNI and SMLAD 4, pmaddwd 2),
    K padded with zero weights; 64-byte aligned."""
    *lead, K, N = kn.shape
    Kg = -(-K // g)
    padded = np.zeros((*lead, g * Kg, N), kn.dtype)
    padded[..., :K, :] = kn
    return aligned_copy(padded.reshape(*lead, Kg, g, N).swapaxes(-1, -2))


def panel_rows(n: int, panel: int) -> list[int]:
    """Rows of each panel of an n-row matrix in the `panel`-row layout (see above), in order:
    n // panel panels of `panel` rows, then one of the n % panel left (n = 40, panel = 16:
    [16, 16, 8])."""
    return [panel] * (n // panel) + ([n % panel] if n % panel else [])


def _panelled(rows_first: np.ndarray, panel: int, kgroup: int = 0) -> np.ndarray:
    """(N, K) in torch's row order -> the flat row-panel layout (N * K,) (see above); kgroup g: each
    panel (ceil(K / g), q, g) instead, K padded with zero weights (N * g ceil(K / g),)."""
    N, K = rows_first.shape
    Kp = kgroup * -(-K // kgroup) if kgroup else K
    out = np.empty(N * Kp, dtype=rows_first.dtype)
    n0 = 0
    for q in panel_rows(N, panel):
        kq = rows_first[n0:n0 + q].T  # (K, q)
        out[n0 * Kp:(n0 + q) * Kp] = (_kgroups(kq, kgroup) if kgroup else kq).ravel()
        n0 += q
    return out


def pack(spec: LSTMSpec, weights: Mapping[str, Any], *, allow_nonfinite: bool = False,
         unit_block: int = 0, panel: int = 0, weights_dtype: str = "float32",
         kgroup: int = 0) -> list[PackedCell | PackedLinear]:
    """State-dict weights -> kernel layout, one PackedCell per (layer, direction), in order l*D+d,
    then one PackedLinear per Linear of the head (none without a head).

    unit_block: 0 for the plain transposed layout, or U > 0 dividing hidden_size for the
    gate-blocked layout the vector kernels read (kernels.KernelPlan.unit_block).
    panel: 0, or Q > 0 rows per panel for the row-panel layout the portable kernels read
    (kernels.KernelPlan.panel; needs unit_block = 0).
    weights_dtype: how w_ih, w_hh and w_hr are stored (quantize); the head stays float32.
    kgroup: 0, or g: int8 matrices in groups of g consecutive k (the integer kernels:
    ScheduledProgram.kgroup)."""
    if isinstance(unit_block, bool) or not isinstance(unit_block, int) or unit_block < 0 or (
            unit_block and spec.hidden_size % unit_block):
        raise ValueError(f"unit_block must be 0 or a positive divisor of hidden_size={spec.hidden_size}, got {unit_block!r}")
    if isinstance(panel, bool) or not isinstance(panel, int) or panel < 0 or (panel and unit_block):
        raise ValueError(f"panel must be an int >= 0, and 0 with a gate-blocked unit_block, got {panel!r} "
                         f"(unit_block={unit_block})")
    if kgroup not in (0, 2, 4) or (kgroup and not ((unit_block or panel) and weights_dtype == "int8")):
        raise ValueError(f"kgroup must be 0, 2 or 4, and needs int8 weights in the gate-blocked or panel layout "
                         f"(got {kgroup!r}, {weights_dtype}, unit_block={unit_block}, panel={panel})")
    w = check_weights(spec, weights, allow_nonfinite=allow_nonfinite)
    cells = []
    for layer in range(spec.num_layers):
        for d in range(spec.num_directions):
            s = suffix(layer, d)

            q = {m: quantize(w[f"{m}{s}"], weights_dtype, f"{m}{s}") for m in _MATRICES if f"{m}{s}" in w}

            def t(name: str, q: dict = q) -> np.ndarray:
                return np.ascontiguousarray(q[name][0].T)

            bias = None
            if spec.bias:
                folded = w[f"bias_ih_{s}"].astype(np.float64) + w[f"bias_hh_{s}"].astype(np.float64)
                bias = folded.astype(np.float32)
            s_ih, s_hh = q["weight_ih_"][1], q["weight_hh_"][1]
            w_hr = None
            if unit_block:
                w_ih, w_hh = _blocked(q["weight_ih_"][0], unit_block), _blocked(q["weight_hh_"][0], unit_block)
                bias = _blocked(bias, unit_block) if bias is not None else None
                s_ih, s_hh = (None, None) if s_ih is None else (_blocked(s_ih, unit_block), _blocked(s_hh, unit_block))
                w_hr = aligned_copy(t("weight_hr_")) if spec.proj_size else None
                if weights_dtype == "bfloat16":
                    w_ih, w_hh = _paired(w_ih), _paired(w_hh)
                if kgroup:
                    w_ih, w_hh = _kgroups(w_ih, kgroup), _kgroups(w_hh, kgroup)
                    w_hr = _kgroups(w_hr, kgroup) if w_hr is not None else None
            elif panel:
                w_ih, w_hh = _panelled(q["weight_ih_"][0], panel, kgroup), _panelled(q["weight_hh_"][0], panel, kgroup)
                w_hr = _panelled(q["weight_hr_"][0], panel, kgroup) if spec.proj_size else None
            else:
                w_ih, w_hh = t("weight_ih_"), t("weight_hh_")
                w_hr = t("weight_hr_") if spec.proj_size else None
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
                    s_ih=s_ih,
                    s_hh=s_hh,
                    s_hr=q["weight_hr_"][1] if spec.proj_size else None,
                    weights_dtype=weights_dtype,
                    kgroup=kgroup,
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
