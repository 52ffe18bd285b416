"""Importers: torch modules, state_dicts and checkpoints (.pt/.pth/.ckpt/.npz files), Keras LSTM weights.

Input: a torch.nn.LSTM or nn.LSTMCell (also pruned, parametrised or dynamically quantised), a
mapping of state_dict names to arrays or tensors, a checkpoint dict holding one at any depth, or a
file of either; or the arrays of Keras LSTM layers (`layer.get_weights()`: kernel,
recurrent_kernel, bias). Output: (LSTMSpec, weights) with torch.nn.LSTM's state_dict names and
layout, ready for compile().

State dicts: the spec is inferred from the keys and shapes (layers from the `_l{k}` suffixes,
bidirectional from `_reverse`, proj_size from weight_hr, peepholes from weight_ph; an LSTMCell's
weight_ih/weight_hh/bias_ih/bias_hh are one layer). Only batch_first cannot be inferred (it
changes no weight): pass it. Keys of an enclosing module ("encoder.lstm.weight_ih_l0") are found
by their common prefix, or chosen with `prefix=`; a checkpoint's nested dicts ("state_dict",
"model", ...) are searched, and entries that are not tensors (epoch, optimizer settings) skipped.
Weights saved in the forms torch's utilities give them are computed into the weight the LSTM
uses: pruned (`<name>_orig` * `<name>_mask`), weight-normed (`parametrizations.<name>.original0/1`
or the older `<name>_g`/`<name>_v`). Other keys near the LSTM's are refused by name.

Keras (no TensorFlow needed): gate order i, f, c, o is torch's i, f, g, o, so the kernels are
only transposed. Keras's single bias goes to bias_ih with zeros in bias_hh (a CuDNN-style
(8H,) bias is split into both). Keras's input is (batch, time, features): the spec is
batch_first. `go_backwards=True` is spec.reverse, but Keras returns the sequence in processing
order: Keras's output[:, j] is lstmgen's out[:, T-1-j] (flip the time axis), while the final
state is the same. A Bidirectional(LSTM) with merge_mode="concat" is a bidirectional spec (Keras
flips the backward sequence back itself, as torch does).
"""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from .spec import Activation, LSTMSpec
from .weights import QuantizedMatrix, check_weights

_NAMES = "weight_ih|weight_hh|bias_ih|bias_hh|weight_hr|weight_ph"
_KEY = re.compile(rf"^({_NAMES})_l(\d+)(_reverse)?$")  # torch.nn.LSTM's names
_CELL_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh)$")  # torch.nn.LSTMCell's names
_WEIGHT = rf"(?:{_NAMES})(?:_l\d+(?:_reverse)?)?"
# the same names as torch's utilities leave them in a state_dict: (module prefix, name, part)
_PRUNED = re.compile(rf"^((?:.*\.)?)({_WEIGHT})_(orig|mask)$")  # torch.nn.utils.prune
_LEGACY_NORM = re.compile(rf"^((?:.*\.)?)({_WEIGHT})_(g|v)$")  # torch.nn.utils.weight_norm (deprecated)
_PARAMETRIZED = re.compile(rf"^((?:.*\.)?)parametrizations\.({_WEIGHT})\.(.+)$")  # torch.nn.utils.parametrize
_PACKED = re.compile(r"(^|\.)(_all_weight_values\.\d+\.param|_packed_weight_ih|_packed_weight_hh)$")  # quantized.dynamic
_TORCH_FILES = (".pt", ".pth", ".ckpt", ".tar")
_MAX_DEPTH = 32  # nesting of checkpoint dicts searched


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        if getattr(value, "is_quantized", False):
            value = value.dequantize()
        value = value.detach().cpu().float().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name!r} must be a real array, got dtype {arr.dtype}")
    return arr


def _short(items: list[str], n: int = 20) -> str:
    return ", ".join(items[:n]) + (" ..." if len(items) > n else "") if items else "(none)"


def _torch_load_error(exc: Exception) -> str:
    """torch.load's failure in one line: for a file of pickled objects (weights_only refuses them),
    the object it met and what to do instead."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found or "weights_only" in text:
        what = f" (it met {found[1]})" if found else ""
        return (f"the file holds pickled Python objects{what}, e.g. a whole module saved with torch.save(model), "
                "which lstmgen does not unpickle; if you trust the file, load it yourself with "
                "torch.load(path, weights_only=False) and pass the module, or save module.state_dict() instead")
    return (text.strip().splitlines() or [type(exc).__name__])[0][:300]


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The dict a file holds: .npz (always) or .pt/.pth/.ckpt/.tar (needs torch; loaded with
    weights_only=True, so no pickled code runs). That may be a state_dict or a checkpoint whose
    nested dicts hold one: from_state_dict finds the LSTM's keys in either."""
    path = os.fspath(path)
    if path.endswith(_TORCH_FILES):
        try:
            import torch
        except ImportError:
            raise ImportError(f"{path}: loading {os.path.splitext(path)[1]} files needs torch; "
                              "save the state_dict as .npz instead") from None
        if not os.path.isfile(path):
            raise ValueError(f"{path}: no such file")
        try:
            with warnings.catch_warnings():  # failures are reported below; torch's notes about them are noise
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises pickle, zip and runtime errors of many kinds
            raise ValueError(f"{path}: cannot load as a torch state_dict with torch.load(weights_only=True): "
                             f"{_torch_load_error(exc)}") from None
        if not isinstance(state, Mapping):
            raise ValueError(f"{path}: expected a state_dict or a checkpoint dict, got {type(state).__name__}")
        return dict(state)
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise ValueError("a single .npy array, not an .npz archive of named arrays")
            return {k: data[k] for k in data.files}
    except Exception as exc:  # OSError, ValueError, zipfile.BadZipFile, EOFError ...
        raise ValueError(f"{path}: cannot read weights as .npz: {exc}") from None


def load_weights(path: str | os.PathLike[str], prefix: str | None = None) -> dict[str, np.ndarray]:
    """The LSTM's weights in a file (what the CLI's --weights reads): from_state_dict's weights."""
    return from_state_dict(path, prefix=prefix)[1]


def _lstm_named(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    last = key.rsplit(".", 1)[-1]
    return bool(_KEY.match(last) or _CELL_KEY.match(last) or _PRUNED.match(key) or _LEGACY_NORM.match(key)
                or _PARAMETRIZED.match(key) or _PACKED.search(key))


def _is_array(value: Any) -> bool:
    return hasattr(value, "shape") and hasattr(value, "dtype")


def _lstm_dicts(obj: Mapping, path: tuple[Any, ...], out: list, depth: int) -> None:
    """Every dict inside obj (itself included) holding LSTM-named entries, with its path of keys."""
    if any(_lstm_named(k) and not isinstance(v, Mapping) for k, v in obj.items()):
        out.append((path, obj))
    if depth < _MAX_DEPTH:
        for k, v in obj.items():
            if isinstance(v, Mapping):
                _lstm_dicts(v, path + (k,), out, depth + 1)


def _dotted(path: tuple[Any, ...]) -> str:
    return "".join(f"{k}." for k in path)


def _locate(state: Mapping, prefix: str | None, where: str) -> tuple[Mapping, str | None]:
    """The dict holding the LSTM's keys (state itself or one nested in a checkpoint), and the
    prefix relative to it. A prefix may also start with the nested dict's path ("state_dict.")."""
    found: list[tuple[tuple[Any, ...], Mapping]] = []
    _lstm_dicts(state, (), found, 0)
    if not found:
        nested = [str(k) for k, v in state.items() if isinstance(v, Mapping)]
        raise ValueError(f"{where}: no key looks like an LSTM weight (weight_ih_l0, ... or an LSTMCell's weight_ih) "
                         f"at any depth; top-level keys: {_short([str(k) for k in state])}"
                         + (f" (dicts searched: {_short(nested)})" if nested else ""))
    if prefix is not None:
        relative = [inner for _, inner in found if any(isinstance(k, str) and k.startswith(prefix) for k in inner)]
        if len(relative) == 1:  # the prefix as relative to the one dict found with such keys
            return relative[0], prefix
        for path, inner in sorted(found, key=lambda f: -len(f[0])):  # or starting with a dict's path
            if path and prefix.startswith(_dotted(path)):
                return inner, prefix[len(_dotted(path)):]
        if len(found) == 1:
            return found[0][1], prefix  # refused below, naming the prefix
    if len(found) > 1:
        paths = [_dotted(p) or "(the top level)" for p, _ in found]
        raise ValueError(f"{where} holds LSTM weights in several dicts: {', '.join(paths)}; choose one with "
                         f"prefix= (the dict's path, then the LSTM's key prefix inside it, e.g. "
                         f"prefix={_dotted(found[-1][0])!r})")
    return found[0][1], prefix


def _weight_norm(key: str, g: Any, v: Any, where: str) -> np.ndarray:
    """torch's weight_norm: w = g * v / ||v||, the 2-norm over every axis but `dim`. g keeps v's
    rank with size 1 on the reduced axes (dim=None: g is a scalar, the norm over all of v)."""
    g64 = _to_numpy(f"{key} (g)", g).astype(np.float64)
    v64 = _to_numpy(f"{key} (v)", v).astype(np.float64)
    if g64.ndim == 0 or (g64.size == 1 and g64.ndim <= v64.ndim):
        axes: tuple[int, ...] = tuple(range(v64.ndim))
    elif (g64.ndim == v64.ndim and all(a in (1, b) for a, b in zip(g64.shape, v64.shape))
          and sum(a > 1 for a in g64.shape) <= 1):
        axes = tuple(i for i, a in enumerate(g64.shape) if a == 1)
    else:
        raise ValueError(f"{where}: {key}: a weight-norm magnitude g of shape {tuple(g64.shape)} does not fit the "
                         f"direction v of shape {tuple(v64.shape)} (g keeps one axis of v, weight_norm's dim)")
    norm = np.sqrt(np.sum(v64 * v64, axis=axes, keepdims=True))
    return (v64 * (g64.reshape(g64.shape if g64.ndim == v64.ndim else ()) / norm)).astype(np.float32)


def _effective(state: Mapping[str, Any], where: str) -> dict[str, Any]:
    """The weights as the LSTM uses them: pruned and weight-normed ones computed from their parts,
    parametrisations whose function a state_dict does not hold refused."""
    out: dict[str, Any] = {}
    parts: dict[tuple[str, str, str], dict[str, Any]] = {}
    for k, v in state.items():
        if _PACKED.search(k):
            raise ValueError(f"{where}: {k!r} is a packed parameter of a dynamically quantised LSTM "
                             "(torch.ao.nn.quantized.dynamic), which a state_dict cannot unpack: pass the module "
                             "itself, lstmgen.from_torch(qmodule), which reads its weights as torch holds them (int8 values and "
                             "scales, or float16)")
        for kind, rx in (("prune", _PRUNED), ("weight_norm", _LEGACY_NORM), ("parametrize", _PARAMETRIZED)):
            m = rx.match(k)
            if m:
                parts.setdefault((kind, m[1], m[2]), {})[m[3]] = v
                break
        else:
            out[k] = v
    for (kind, pre, name), got in parts.items():
        key = pre + name
        if kind == "prune":
            missing = {"orig", "mask"} - set(got)
            if missing:
                raise ValueError(f"{where}: {key}_{missing.pop()} is missing: a pruned weight "
                                 f"(torch.nn.utils.prune) is saved as {key}_orig and {key}_mask, and its value "
                                 "is their product")
            value: Any = _to_numpy(f"{key}_orig", got["orig"]) * _to_numpy(f"{key}_mask", got["mask"])
        elif kind == "weight_norm":
            missing = {"g", "v"} - set(got)
            if missing:
                raise ValueError(f"{where}: {key}_{missing.pop()} is missing: a weight-normed weight "
                                 f"(torch.nn.utils.weight_norm) is saved as {key}_g and {key}_v")
            value = _weight_norm(key, got["g"], got["v"], where)
        elif set(got) == {"original0", "original1"}:
            # two tensors are what torch.nn.utils.parametrizations.weight_norm saves: (g, v)
            value = _weight_norm(key, got["original0"], got["original1"], where)
        else:
            raise ValueError(f"{where}: {pre}parametrizations.{name}.{sorted(got)[0]}: {key} is computed by a "
                             "torch parametrization (torch.nn.utils.parametrize) whose function a state_dict does "
                             "not hold; pass the module itself (lstmgen.from_torch(module) reads the effective "
                             "weight) or call torch.nn.utils.parametrize.remove_parametrizations(module, "
                             f"{name!r}) before saving its state_dict")
        if key in out:
            raise ValueError(f"{where}: {key} is given twice, as itself and through torch.nn.utils.{kind}")
        out[key] = value
    return out


def _pick_prefix(keys: list[str], where: str) -> str:
    prefixes = sorted({k[:k.rfind(".") + 1] for k in keys
                       if _KEY.match(k.rsplit(".", 1)[-1]) or _CELL_KEY.match(k.rsplit(".", 1)[-1])})
    if not prefixes:
        raise ValueError(f"{where}: no key looks like an LSTM weight (weight_ih_l0, ...); keys: {_short(keys)}")
    if len(prefixes) > 1:
        raise ValueError(f"{where} holds LSTM weights under several prefixes {prefixes}; choose one with prefix=")
    return prefixes[0]


def from_state_dict(state: Any, *, batch_first: bool = False, prefix: str | None = None,
                    dropout: float = 0.0) -> tuple[LSTMSpec, dict[str, np.ndarray]]:
    """(spec, weights) from a torch.nn.LSTM or nn.LSTMCell state_dict, a checkpoint dict holding
    one (at any depth), or a .pt/.pth/.ckpt/.npz path of either."""
    where = "state_dict"
    if isinstance(state, (str, os.PathLike)):
        where = os.fspath(state)
        state = load_state_dict(state)
    if not isinstance(state, Mapping):
        raise TypeError(f"expected a state_dict mapping or a path, got {type(state).__name__}")
    if not isinstance(batch_first, bool):
        raise TypeError(f"batch_first must be a bool, got {type(batch_first).__name__}")
    if prefix is not None and not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
    inner, prefix = _locate(state, prefix, where)
    for k, v in inner.items():
        if not isinstance(k, str) and _is_array(v):
            raise TypeError(f"state_dict keys must be strings, got {k!r}")
    # tensors only: a checkpoint keeps epoch counters, settings and nested dicts beside them
    tensors = {k: v for k, v in inner.items()
               if isinstance(k, str) and not isinstance(v, Mapping) and (_is_array(v) or _lstm_named(k))}
    state = _effective(tensors, where)
    keys = list(state)
    if prefix is None:
        prefix = "" if all(_KEY.match(k) or _CELL_KEY.match(k) for k in keys) else _pick_prefix(keys, where)
        outside = [k for k in keys if not k.startswith(prefix)]
        if outside:
            raise ValueError(f"{where} keys that are not part of the LSTM under prefix {prefix!r}: "
                             f"{', '.join(outside)}; pass prefix={prefix!r} to take only the LSTM's weights")
    mine = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not mine:
        raise ValueError(f"{where}: no key starts with prefix {prefix!r}; keys: {_short(keys)}")
    bad = [prefix + k for k in mine if not (_KEY.match(k) or _CELL_KEY.match(k))]
    if bad:
        raise ValueError(f"{where} keys that fit no LSTM weight name: {', '.join(bad)} (expected weight_ih_l{{k}}, "
                         "weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, weight_hr_l{k}, weight_ph_l{k}, optionally "
                         "_reverse; or an LSTMCell's weight_ih, weight_hh, bias_ih, bias_hh)")
    cell = [k for k in mine if _CELL_KEY.match(k)]
    if cell:
        if len(cell) != len(mine):
            raise ValueError(f"{where} mixes an LSTMCell's keys ({', '.join(prefix + k for k in cell)}) with an "
                             f"LSTM's ({', '.join(prefix + k for k in mine if k not in cell)})")
        mine = {f"{k}_l0": v for k, v in mine.items()}  # an LSTMCell is one layer of an LSTM
    w = {k: _to_numpy(prefix + k, v) for k, v in mine.items()}
    parsed = [_KEY.match(k).groups() for k in w]  # type: ignore[union-attr]
    layers = sorted({int(layer) for _, layer, _ in parsed})
    num_layers = layers[-1] + 1
    first = "weight_ih" if cell else "weight_ih_l0"
    if "weight_ih_l0" not in w:
        raise ValueError(f"{where} has no {prefix}{first}; keys: {', '.join(prefix + k for k in mine)}")
    w_ih = w["weight_ih_l0"]
    if w_ih.ndim != 2 or w_ih.shape[0] % 4:
        raise ValueError(f"{prefix}{first} has shape {w_ih.shape}, expected (4*hidden_size, input_size)")
    proj = w.get("weight_hr_l0")
    spec = LSTMSpec(
        input_size=int(w_ih.shape[1]), hidden_size=int(w_ih.shape[0] // 4), num_layers=num_layers,
        bias=any(kind == "bias_ih" for kind, _, _ in parsed), batch_first=batch_first, dropout=dropout,
        bidirectional=any(rev for _, _, rev in parsed), proj_size=int(proj.shape[0]) if proj is not None and proj.ndim == 2 else 0,
        peepholes=any(kind == "weight_ph" for kind, _, _ in parsed),
    )
    try:
        checked = check_weights(spec, w)
    except ValueError as exc:
        raise ValueError(f"{where} does not fit the {'LSTMCell' if cell else 'LSTM'} inferred from it "
                         f"({spec.summary()}): {exc}") from None
    return spec, checked


# ---- Keras --------------------------------------------------------------------------------


def _check_keras_version(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise TypeError(f"keras_version must be the int 2 or 3, got {v!r} ({type(v).__name__})")
    if v not in (2, 3):
        raise ValueError(f"keras_version must be 2 or 3 (it picks hard_sigmoid's slope), got {v}")
    return v


def keras_activation(name: Any, keras_version: int = 3) -> Activation:
    """A Keras activation name as the ONNX-style Activation lstmgen's cell takes."""
    keras_version = _check_keras_version(keras_version)
    if name is None:
        name = "linear"
    if not isinstance(name, str):
        raise TypeError(f"a Keras activation is given by name, got {type(name).__name__}")
    key = name.lower()
    if key == "hard_sigmoid":
        # Keras 3: relu6(x + 3) / 6 = clip(x / 6 + 0.5, 0, 1); Keras 2: clip(0.2 x + 0.5, 0, 1)
        return Activation("HardSigmoid", 1.0 / 6.0 if keras_version >= 3 else 0.2, 0.5)
    table = {"sigmoid": Activation("Sigmoid"), "tanh": Activation("Tanh"), "relu": Activation("Relu"),
             "linear": Activation("Affine", 1.0, 0.0), "softsign": Activation("Softsign"),
             "softplus": Activation("Softplus"), "elu": Activation("Elu", 1.0)}
    if key not in table:
        raise ValueError(f"Keras activation {name!r} has no lstmgen equivalent; supported: hard_sigmoid, "
                         f"{', '.join(table)}")
    return table[key]


def _keras_layer(entry: Any, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if not isinstance(entry, (list, tuple)) or len(entry) not in (2, 3):
        raise TypeError(f"{where}: expected (kernel, recurrent_kernel[, bias]) as layer.get_weights() returns")
    kernel = _to_numpy(f"{where} kernel", entry[0])
    rec = _to_numpy(f"{where} recurrent_kernel", entry[1])
    bias = None if len(entry) == 2 or entry[2] is None else _to_numpy(f"{where} bias", entry[2])
    if kernel.ndim != 2 or kernel.shape[1] % 4:
        raise ValueError(f"{where}: kernel has shape {kernel.shape}, expected (input_size, 4*units)")
    H = kernel.shape[1] // 4
    if rec.shape != (H, 4 * H):
        raise ValueError(f"{where}: recurrent_kernel has shape {rec.shape}, expected {(H, 4 * H)} (units={H})")
    if bias is not None and bias.shape not in ((4 * H,), (8 * H,)):
        raise ValueError(f"{where}: bias has shape {bias.shape}, expected ({4 * H},) (or ({8 * H},) for CuDNN weights)")
    return kernel, rec, bias


def from_keras_weights(kernel: Any, recurrent_kernel: Any = None, bias: Any = None, *,
                       backward: Any = None, go_backwards: bool = False, activation: str | None = "tanh",
                       recurrent_activation: str | None = "sigmoid",
                       keras_version: int = 3) -> tuple[LSTMSpec, dict[str, np.ndarray]]:
    """(spec, weights) from Keras LSTM weights; no TensorFlow needed.

    One layer: from_keras_weights(kernel (I, 4H), recurrent_kernel (H, 4H), bias (4H,) or None).
    Bidirectional(LSTM(...), merge_mode="concat"): add backward=(kernel, recurrent_kernel, bias)
    of the backward layer. Stacked layers: pass a list of per-layer [kernel, recurrent_kernel,
    bias] as `kernel` (and a list for `backward`). `activation` / `recurrent_activation` are the
    layer's own (Keras defaults tanh / sigmoid; `keras_version` picks hard_sigmoid's slope).
    go_backwards=True gives spec.reverse; see the module docstring for the output order.
    """
    if not isinstance(go_backwards, bool):
        raise TypeError(f"go_backwards must be a bool, got {type(go_backwards).__name__}")
    stacked = isinstance(kernel, (list, tuple))
    if stacked:
        if recurrent_kernel is not None or bias is not None:
            raise TypeError("for stacked layers pass only a list of per-layer [kernel, recurrent_kernel, bias]")
        fwd = [_keras_layer(e, f"layer {i}") for i, e in enumerate(kernel)]
        if not fwd:
            raise ValueError("no layers given")
        if backward is not None and (not isinstance(backward, (list, tuple)) or len(backward) != len(fwd)):
            raise ValueError("backward must list one [kernel, recurrent_kernel, bias] per layer")
        bwd = None if backward is None else [_keras_layer(e, f"backward layer {i}") for i, e in enumerate(backward)]
    else:
        if recurrent_kernel is None:
            raise TypeError("recurrent_kernel is required")
        fwd = [_keras_layer((kernel, recurrent_kernel, bias), "layer 0")]
        bwd = None if backward is None else [_keras_layer(backward, "backward layer")]
    if go_backwards and (bwd is not None or len(fwd) > 1):
        raise ValueError("go_backwards is supported for a single unidirectional layer: in a Keras stack each "
                         "go_backwards layer also reverses the sequence it hands on, which lstmgen's reverse "
                         "direction (time-aligned output) does not model")
    H = fwd[0][0].shape[1] // 4
    has_bias = fwd[0][2] is not None
    cells = [[layer] + ([bwd[i]] if bwd else []) for i, layer in enumerate(fwd)]
    for i, cell in enumerate(cells):
        for d, (k, _, b) in enumerate(cell):
            want_in = fwd[0][0].shape[0] if i == 0 else (2 if bwd else 1) * H
            if k.shape != (want_in, 4 * H):
                raise ValueError(f"{'backward ' if d else ''}layer {i}: kernel has shape {k.shape}, expected {(want_in, 4 * H)}")
            if (b is not None) != has_bias:
                raise ValueError("all layers must either have a bias or not (use_bias)")
    keras_version = _check_keras_version(keras_version)
    f_act = keras_activation(recurrent_activation, keras_version)
    g_act = keras_activation(activation, keras_version)
    spec = LSTMSpec(input_size=int(fwd[0][0].shape[0]), hidden_size=int(H), num_layers=len(fwd), bias=has_bias,
                    batch_first=True, bidirectional=bwd is not None, reverse=go_backwards,
                    activations=(f_act, g_act, g_act))
    weights: dict[str, np.ndarray] = {}
    for i, cell in enumerate(cells):
        for d, (k, rk, b) in enumerate(cell):
            sfx = f"l{i}" + ("_reverse" if d else "")
            weights[f"weight_ih_{sfx}"] = np.ascontiguousarray(k.T, dtype=np.float32)  # (4H, I)
            weights[f"weight_hh_{sfx}"] = np.ascontiguousarray(rk.T, dtype=np.float32)  # (4H, H)
            if b is not None:
                b = b.astype(np.float32)
                if b.shape == (8 * H,):
                    weights[f"bias_ih_{sfx}"], weights[f"bias_hh_{sfx}"] = b[:4 * H].copy(), b[4 * H:].copy()
                else:
                    weights[f"bias_ih_{sfx}"] = b.copy()
                    weights[f"bias_hh_{sfx}"] = np.zeros(4 * H, np.float32)
    return spec, check_weights(spec, weights)


# ---- torch modules ------------------------------------------------------------------------


def _quantized_dynamic(torch: Any) -> Any:
    try:
        import torch.ao.nn.quantized.dynamic as qdyn
    except ImportError:  # pragma: no cover - a torch built without quantisation
        return None
    return qdyn


def _accessor(name: str) -> str:
    """A submodule's qualified name as Python: 'layers.0.rnn' -> 'net.layers[0].rnn'."""
    out = "net"
    for part in name.split("."):
        out += f"[{part}]" if part.isdigit() else (f".{part}" if part.isidentifier() else f"[{part!r}]")
    return out


def _refuse_container(module: Any, kinds: tuple[type, ...]) -> None:
    cls = type(module).__name__
    inside = [name for name, sub in module.named_modules() if name and isinstance(sub, kinds)]
    if not inside:
        hint = ""
        import torch

        if not isinstance(module, torch.nn.RNNBase) and any(_lstm_named(k) for k in module.state_dict()):
            # e.g. a TorchScript module (torch.jit.load): named like an LSTM, without nn.LSTM's class
            hint = ("; its state_dict has LSTM-named keys: if its forward is nn.LSTM's, pass "
                    "from_torch(net.state_dict()) (the spec is inferred from the keys)")
        raise TypeError(f"from_torch expects a torch.nn.LSTM or nn.LSTMCell, a state_dict or a path, got {cls}, "
                        f"which contains no nn.LSTM or nn.LSTMCell{hint}")
    where = ", ".join(_accessor(n) for n in inside)
    raise TypeError(f"from_torch expects a torch.nn.LSTM or nn.LSTMCell, got {cls}; it contains LSTMs at: {where} "
                    f"(net being the {cls} passed); pass one of them, e.g. from_torch({_accessor(inside[0])})")


def _refuse_overrides(module: Any, base: type) -> None:
    if type(module).forward is not base.forward:
        what = f"{base.__module__.split('.')[0]}.{base.__qualname__}" if "quantized" in base.__module__ else f"nn.{base.__name__}"
        raise TypeError(f"{type(module).__name__} overrides forward; lstmgen compiles {what}'s own forward, so "
                        f"this module would compute something else: pass an {what} (the one its forward runs)")


def _hook_name(hook: Any) -> str:
    return str(getattr(hook, "__qualname__", None) or type(hook).__name__)


def _module_weights(module: Any, names: dict[str, str], torch: Any) -> dict[str, np.ndarray]:
    """The weights as the module's own forward sees them: `names` maps each of the module's
    attribute names to lstmgen's. Pruning and the old weight_norm recompute the attribute in a
    forward pre-hook, so it is computed here the same way; a parametrised attribute
    (torch.nn.utils.parametrize) is computed by reading it. Other hooks are refused."""
    import torch.nn.utils.prune as prune
    from torch.nn.utils.weight_norm import WeightNorm

    computed: dict[str, Any] = {}
    for hook in module._forward_pre_hooks.values():
        if isinstance(hook, prune.BasePruningMethod):
            computed[hook._tensor_name] = hook.apply_mask(module)  # orig * mask, as the hook sets it
        elif isinstance(hook, WeightNorm):
            computed[hook.name] = hook.compute_weight(module)
        else:
            raise TypeError(f"{type(module).__name__} has a forward pre-hook ({_hook_name(hook)}) whose effect "
                            "lstmgen cannot see; remove it, or pass a plain module with the weights it would use")
    if module._forward_hooks:
        hook = next(iter(module._forward_hooks.values()))
        raise TypeError(f"{type(module).__name__} has a forward hook ({_hook_name(hook)}) "
                        "that changes or observes its output, which lstmgen's C does not run; remove it first")
    out = {}
    with torch.no_grad():
        for attr, name in names.items():
            value = computed[attr] if attr in computed else getattr(module, attr)
            out[name] = value.detach().cpu().to(torch.float32).numpy().copy()
    return out


def _from_quantized(module: Any, qdyn: Any, batch_first: bool | None,
                    torch: Any) -> tuple[LSTMSpec, dict[str, np.ndarray]]:
    """A dynamically quantised LSTM / LSTMCell: the float model's spec, and its weights as torch
    holds them.

    torch 2.13 keeps the weights packed (fbgemm/qnnpack CellParams, or LinearPackedParams for the
    cell); `get_weight()` / `get_bias()` (RNNBase._weight_bias, LSTMCell._weight_bias) unpack them
    into tensors with the float module's state_dict names: qint8 tensors (per-tensor, or per-row
    with a per-channel qconfig) for dtype=torch.qint8, and float32 tensors holding float16 values
    for dtype=torch.float16. A qint8 weight becomes a QuantizedMatrix: torch's int8 values and
    float32 scales as they are (zero point 0, else ValueError), and as an array its dequantised
    values, so weights_dtype="int8" (compile(module)'s default for such a module) runs torch's
    very int8 weights and any other dtype the float LSTM with the dequantised ones. float16
    weights are exact float16 values, which weights_dtype="float16" stores without rounding.
    The qint8 module also quantises each input and state vector to uint8 on the fly, which
    lstmgen does not (its sums are float32): its outputs are those of a float LSTM with these
    weights, and differ from the quantised module's by about that rounding."""
    is_cell = isinstance(module, qdyn.LSTMCell)
    _refuse_overrides(module, qdyn.LSTMCell if is_cell else qdyn.LSTM)
    weights = {**module.get_weight(), **module.get_bias()}
    sfx = "_l0" if is_cell else ""
    out: dict[str, Any] = {}
    for k, v in weights.items():
        if v is None:
            continue
        if getattr(v, "is_quantized", False):  # torch's int8 values and scales, not requantised
            out[k + sfx] = QuantizedMatrix.from_torch(v, k + sfx)
        else:
            out[k + sfx] = _to_numpy(k, v).astype(np.float32).copy()
    w_hh = out.get("weight_hh_l0")
    if w_hh is not None and np.shape(w_hh)[-1] != module.hidden_size:
        raise ValueError(f"{type(module).__name__}: weight_hh_l0 has {np.shape(w_hh)[-1]} columns for hidden_size="
                         f"{module.hidden_size}: the float LSTM had proj_size={np.shape(w_hh)[-1]}, which torch's dynamic "
                         "quantisation drops (the quantised module cannot run it); compile the float module, "
                         "with weights_dtype='int8' for int8 weights")
    if is_cell:
        spec = LSTMSpec(input_size=module.input_size, hidden_size=module.hidden_size, num_layers=1,
                        bias=bool(module.bias), batch_first=bool(batch_first))
    else:
        if batch_first is not None and batch_first != module.batch_first:
            raise ValueError(f"batch_first={batch_first} contradicts the module's batch_first={module.batch_first}")
        spec = LSTMSpec(input_size=module.input_size, hidden_size=module.hidden_size, num_layers=module.num_layers,
                        bias=bool(module.bias), batch_first=module.batch_first, dropout=float(module.dropout),
                        bidirectional=module.bidirectional)
    return spec, check_weights(spec, out)


def quantized_weights_dtype(module: Any) -> str | None:
    """The weights_dtype that keeps a torch dynamically quantised LSTM / LSTMCell's weights as
    they are ("int8" for dtype=torch.qint8, "float16" for torch.float16); None for anything else
    (a float module, a state_dict). torch is imported only when already loaded."""
    torch = sys.modules.get("torch")
    if torch is None:
        return None
    qdyn = _quantized_dynamic(torch)
    if qdyn is None or not isinstance(module, (qdyn.LSTM, qdyn.LSTMCell)):
        return None
    dtype = getattr(module, "dtype", None) if isinstance(module, qdyn.LSTM) else getattr(module, "weight_dtype", None)
    return {torch.qint8: "int8", torch.float16: "float16"}.get(dtype)


def from_torch(module: Any, *, batch_first: bool | None = None,
               prefix: str | None = None, head: Any = None) -> tuple[LSTMSpec, dict[str, Any]]:
    """(spec, weights) from a torch.nn.LSTM or nn.LSTMCell, a state_dict, a checkpoint, or a
    .pt/.pth/.ckpt/.npz file of one.

    Modules: pruned and parametrised ones give the weights their forward uses; a dynamically
    quantised one (torch.ao.nn.quantized.dynamic.LSTM / LSTMCell) its weights as torch holds them:
    for qint8, QuantizedMatrix values (torch's int8 values and scales; as arrays, the dequantised
    weights), which compile(..., weights_dtype="int8") stores unchanged; for float16, float32
    arrays of exact float16 values (see _from_quantized). An
    LSTMCell is a one-layer spec: `model.stream().step(x_t)` is `cell(x_t, (h, c))`. A subclass
    that overrides forward, or a module that only contains LSTMs, is refused (the latter naming
    them). For a state_dict the spec is inferred from its keys and shapes (see lstmgen.importers);
    batch_first cannot be inferred and defaults to False; `prefix` picks the LSTM's keys out of an
    enclosing module's state_dict. torch is needed for modules and .pt/.pth files only.
    `head`: the torch module applied to every output step after the LSTM (see _torch_head).
    """
    if head is not None:
        spec, weights = from_torch(module, batch_first=batch_first, prefix=prefix)
        return _torch_head(spec, weights, head)
    if isinstance(module, (str, os.PathLike, Mapping)):
        if batch_first is not None and not isinstance(batch_first, bool):
            raise TypeError(f"batch_first must be a bool, got {type(batch_first).__name__}")
        return from_state_dict(module, batch_first=bool(batch_first), prefix=prefix)
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError("lstmgen.from_torch needs torch installed") from exc
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"from_torch expects a torch.nn.LSTM, a state_dict or a path, got {type(module).__name__}")
    if prefix is not None:
        raise ValueError("prefix applies to state_dicts, not to a torch module")
    if batch_first is not None and not isinstance(batch_first, bool):
        raise TypeError(f"batch_first must be a bool, got {type(batch_first).__name__}")
    qdyn = _quantized_dynamic(torch)
    quantized = (qdyn.LSTM, qdyn.LSTMCell) if qdyn is not None else ()
    if quantized and isinstance(module, quantized):
        return _from_quantized(module, qdyn, batch_first, torch)
    if isinstance(module, torch.nn.LSTMCell):
        _refuse_overrides(module, torch.nn.LSTMCell)
        spec = LSTMSpec(input_size=module.input_size, hidden_size=module.hidden_size, num_layers=1,
                        bias=module.bias, batch_first=bool(batch_first))
        names = {k[:-3]: k for k in spec.weight_shapes()}  # weight_ih -> weight_ih_l0, ...
        return spec, check_weights(spec, _module_weights(module, names, torch))
    if not isinstance(module, torch.nn.LSTM):
        _refuse_container(module, (torch.nn.LSTM, torch.nn.LSTMCell) + quantized)
    _refuse_overrides(module, torch.nn.LSTM)
    if batch_first is not None and batch_first != module.batch_first:
        raise ValueError(f"batch_first={batch_first} contradicts the module's batch_first={module.batch_first}")
    spec = LSTMSpec(
        input_size=module.input_size,
        hidden_size=module.hidden_size,
        num_layers=module.num_layers,
        bias=module.bias,
        batch_first=module.batch_first,
        dropout=float(module.dropout),
        bidirectional=module.bidirectional,
        proj_size=module.proj_size,
    )
    return spec, _module_weights(module, {k: k for k in spec.weight_shapes()}, torch)


def _torch_head(spec: LSTMSpec, weights: dict[str, Any], head: Any) -> tuple[LSTMSpec, dict[str, Any]]:
    """spec and weights with `head` added: an nn.Linear, or an nn.Sequential (nested ones are
    flattened) of Linear, ReLU, Tanh, Sigmoid, Softmax over the last axis, Identity and Dropout
    (an Identity at inference). Linear k of the flattened list gives head.{k}.weight/bias."""
    import torch

    nn = torch.nn
    if not isinstance(head, nn.Module):
        raise TypeError(f"head must be a torch.nn.Linear or torch.nn.Sequential, got {type(head).__name__}")

    def flat(mod: Any, where: str) -> list[tuple[str, Any]]:
        if type(mod) is nn.Sequential:
            return [item for name, child in mod.named_children() for item in flat(child, f"{where}.{name}")]
        return [(where, mod)]

    simple = {nn.ReLU: "ReLU", nn.Tanh: "Tanh", nn.Sigmoid: "Sigmoid", nn.Identity: "Identity", nn.Dropout: "Identity"}
    layers: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    for where, mod in flat(head, "head"):
        kind = type(mod)
        if kind is nn.Linear:
            i = len(layers)
            layers.append({"type": "Linear", "in_features": mod.in_features, "out_features": mod.out_features,
                           "bias": mod.bias is not None})
            extra[f"head.{i}.weight"] = mod.weight.detach().cpu().to(torch.float32).numpy().copy()
            if mod.bias is not None:
                extra[f"head.{i}.bias"] = mod.bias.detach().cpu().to(torch.float32).numpy().copy()
        elif kind in simple:
            layers.append({"type": simple[kind]})
        elif kind is nn.Softmax:
            if mod.dim not in (-1, 2):
                raise ValueError(f"{where}: Softmax(dim={mod.dim}) is not over the features; lstmgen's head "
                                 "takes Softmax(dim=-1) (or dim=2 on the LSTM's 3-D output)")
            layers.append({"type": "Softmax"})
        else:
            raise ValueError(f"{where}: unsupported head module {kind.__name__}; a head holds Linear, ReLU, Tanh, "
                             "Sigmoid, Softmax(dim=-1), Identity and Dropout (nested nn.Sequential is flattened)")
    spec = LSTMSpec.from_dict({**spec.to_dict(), "head": layers})
    return spec, {**weights, **extra}


__all__ = ["from_keras_weights", "from_state_dict", "from_torch", "keras_activation", "load_state_dict", "load_weights",
           "quantized_weights_dtype"]
