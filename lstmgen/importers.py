"""Importers: torch modules and state_dicts (and .pt/.pth/.npz files), Keras LSTM weights.

Input: a mapping of torch.nn.LSTM state_dict names to arrays or tensors (or a file holding one),
or the arrays of Keras LSTM layers (`layer.get_weights()`: kernel, recurrent_kernel, bias).
Output: (LSTMSpec, weights) with torch's state_dict names and layout, ready for compile().

State dicts: the spec is inferred from the keys and shapes (layers from the `_l{k}` suffixes,
bidirectional from `_reverse`, proj_size from weight_hr, peepholes from weight_ph). Only
batch_first cannot be inferred (it changes no weight): pass it. Keys of an enclosing module
("encoder.lstm.weight_ih_l0") are found by their common prefix, or chosen with `prefix=`.
Keys that fit no LSTM are refused by name.

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
from collections.abc import Mapping
from typing import Any

import numpy as np

from .spec import Activation, LSTMSpec
from .weights import check_weights

_KEY = re.compile(r"^(weight_ih|weight_hh|bias_ih|bias_hh|weight_hr|weight_ph)_l(\d+)(_reverse)?$")


def _to_numpy(name: str, value: Any) -> np.ndarray:
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor
        value = value.detach().cpu().float().numpy()
    arr = np.asarray(value)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name!r} must be a real array, got dtype {arr.dtype}")
    return arr


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A state_dict from .npz (always) or .pt/.pth (needs torch; loaded with weights_only=True).

    A checkpoint dict holding the weights under "state_dict" (as Lightning writes) is unwrapped.
    """
    path = os.fspath(path)
    if path.endswith((".pt", ".pth")):
        try:
            import torch
        except ImportError:
            raise ImportError(f"{path}: loading .pt/.pth files needs torch; save the state_dict as .npz instead") from None
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises pickle and runtime errors of many kinds
            raise ValueError(f"{path}: cannot load as a torch state_dict: {exc}") from None
        if isinstance(state, Mapping) and isinstance(state.get("state_dict"), Mapping):
            state = state["state_dict"]
        if not isinstance(state, Mapping):
            raise ValueError(f"{path}: expected a state_dict (a dict of tensors), got {type(state).__name__}")
        return dict(state)
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read weights as .npz: {exc}") from None


def load_weights(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """load_state_dict, every value as a numpy array (what the CLI's --weights reads)."""
    return {k: _to_numpy(k, v) for k, v in load_state_dict(path).items()}


def _pick_prefix(keys: list[str]) -> str:
    prefixes = sorted({k[:k.rfind(".") + 1] for k in keys if _KEY.match(k.rsplit(".", 1)[-1])})
    if not prefixes:
        raise ValueError(f"no key looks like an LSTM weight (weight_ih_l0, ...); keys: {', '.join(keys[:20])}"
                         + (" ..." if len(keys) > 20 else ""))
    if len(prefixes) > 1:
        raise ValueError(f"state_dict holds LSTM weights under several prefixes {prefixes}; choose one with prefix=")
    return prefixes[0]


def from_state_dict(state: Any, *, batch_first: bool = False, prefix: str | None = None,
                    dropout: float = 0.0) -> tuple[LSTMSpec, dict[str, np.ndarray]]:
    """(spec, weights) from a torch.nn.LSTM state_dict (a mapping, or a .pt/.pth/.npz path)."""
    if isinstance(state, (str, os.PathLike)):
        state = load_state_dict(state)
    if not isinstance(state, Mapping):
        raise TypeError(f"expected a state_dict mapping or a path, got {type(state).__name__}")
    if not isinstance(batch_first, bool):
        raise TypeError(f"batch_first must be a bool, got {type(batch_first).__name__}")
    keys = list(state)
    for k in keys:
        if not isinstance(k, str):
            raise TypeError(f"state_dict keys must be strings, got {k!r}")
    if prefix is None:
        prefix = "" if all(_KEY.match(k) for k in keys) else _pick_prefix(keys)
        outside = [k for k in keys if not k.startswith(prefix)]
        if outside:
            raise ValueError(f"state_dict keys that are not part of the LSTM under prefix {prefix!r}: "
                             f"{', '.join(outside)}; pass prefix={prefix!r} to take only the LSTM's weights")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
    mine = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not mine:
        raise ValueError(f"no state_dict key starts with prefix {prefix!r}")
    bad = [prefix + k for k in mine if not _KEY.match(k)]
    if bad:
        raise ValueError(f"state_dict keys that fit no LSTM weight name: {', '.join(bad)} (expected weight_ih_l{{k}}, "
                         "weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, weight_hr_l{k}, weight_ph_l{k}, optionally _reverse)")
    w = {k: _to_numpy(prefix + k, v) for k, v in mine.items()}
    parsed = [_KEY.match(k).groups() for k in w]  # type: ignore[union-attr]
    layers = sorted({int(layer) for _, layer, _ in parsed})
    num_layers = layers[-1] + 1
    if "weight_ih_l0" not in w:
        raise ValueError(f"state_dict has no {prefix}weight_ih_l0; keys: {', '.join(prefix + k for k in w)}")
    w_ih = w["weight_ih_l0"]
    if w_ih.ndim != 2 or w_ih.shape[0] % 4:
        raise ValueError(f"{prefix}weight_ih_l0 has shape {w_ih.shape}, expected (4*hidden_size, input_size)")
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
        raise ValueError(f"state_dict does not fit the LSTM inferred from it ({spec.summary()}): {exc}") from None
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


__all__ = ["from_keras_weights", "from_state_dict", "keras_activation", "load_state_dict"]


def from_torch(module: Any, *, batch_first: bool | None = None,
               prefix: str | None = None, head: Any = None) -> tuple[LSTMSpec, dict[str, Any]]:
    """(spec, weights) from a torch.nn.LSTM instance, a state_dict, or a .pt/.pth/.npz file of one.

    For a state_dict the spec is inferred from its keys and shapes (see lstmgen.importers);
    batch_first cannot be inferred and defaults to False; `prefix` picks the LSTM's keys out of an
    enclosing module's state_dict. torch is needed for modules and .pt/.pth files only.
    `head`: the torch module applied to every output step after the LSTM (see _torch_head).
    """
    if head is not None:
        spec, weights = from_torch(module, batch_first=batch_first, prefix=prefix)
        return _torch_head(spec, weights, head)
    if isinstance(module, (str, os.PathLike, Mapping)):
        return from_state_dict(module, batch_first=bool(batch_first), prefix=prefix)
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError("lstmgen.from_torch needs torch installed") from exc
    if not isinstance(module, torch.nn.LSTM):
        raise TypeError(f"from_torch expects a torch.nn.LSTM, a state_dict or a path, got {type(module).__name__}")
    if batch_first is not None and batch_first != module.batch_first:
        raise ValueError(f"batch_first={batch_first} contradicts the module's batch_first={module.batch_first}")
    if prefix is not None:
        raise ValueError("prefix applies to state_dicts, not to a torch.nn.LSTM module")
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
    weights = {k: v.detach().cpu().to(torch.float32).numpy().copy() for k, v in module.state_dict().items()}
    return spec, weights


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
