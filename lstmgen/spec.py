"""LSTM specification: the model's shape and cell variant, validated.

Input: keyword arguments (torch.nn.LSTM's own names), a dict, or a JSON/TOML file.
Output: a frozen `LSTMSpec`, every field type-checked, that the rest of lstmgen trusts.

The torch knobs are input_size, hidden_size, num_layers, bias, batch_first, dropout,
bidirectional and proj_size. The ONNX LSTM extras (activations with alpha/beta, peepholes,
clip, input_forget, a single reverse direction) default to the plain torch cell.

An optional `head` is a stack of layers applied to every output step, in order: Linear (with or
without bias), ReLU, Tanh, Sigmoid, Softmax (over the features) and Identity, e.g.
`head=[{"type": "Linear", "in_features": 64, "out_features": 12}, {"type": "Softmax"}]`. Its
weights are torch.nn.Sequential's: `head.{i}.weight` (out, in) and `head.{i}.bias` (out) for the
Linear at index i. Without a head (the default) y is the LSTM's output, as before.
"""

from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

# Largest size accepted for any one dimension, and for the total parameter count. Beyond
# these the C would not fit anything lstmgen targets; the error says what it would need.
MAX_DIM = 1 << 16
MAX_LAYERS = 64
MAX_PARAMS = 1 << 28  # 256 Mi floats = 1 GiB of float32 weights
MAX_SPEC_BYTES = 1 << 20  # a spec file is a few lines; refuse to parse megabytes
MAX_HEAD_LAYERS = 64

# Head layer types (torch.nn's class names): the fields each takes beyond "type".
HEAD_TYPES: dict[str, tuple[str, ...]] = {
    "Linear": ("in_features", "out_features", "bias"),
    "ReLU": (),
    "Tanh": (),
    "Sigmoid": (),
    "Softmax": (),
    "Identity": (),
}
_HEAD_BY_LOWER = {k.lower(): k for k in HEAD_TYPES}

# ONNX activation functions: name -> (default alpha, default beta); None = not used.
ACTIVATIONS: dict[str, tuple[float | None, float | None]] = {
    "Sigmoid": (None, None),
    "Tanh": (None, None),
    "Relu": (None, None),
    "Affine": (1.0, 0.0),
    "LeakyRelu": (0.01, None),
    "ThresholdedRelu": (1.0, None),
    "ScaledTanh": (1.0, 1.0),
    "HardSigmoid": (0.2, 0.5),
    "Elu": (1.0, None),
    "Softsign": (None, None),
    "Softplus": (None, None),
}
_ACT_BY_LOWER = {k.lower(): k for k in ACTIVATIONS}


@dataclass(frozen=True)
class Activation:
    """One gate activation as ONNX defines it: name plus its alpha/beta (None if unused)."""

    name: str
    alpha: float | None = None
    beta: float | None = None

    def __str__(self) -> str:
        args = [f"{v:g}" for v in (self.alpha, self.beta) if v is not None]
        return f"{self.name}({', '.join(args)})" if args else self.name


DEFAULT_ACTIVATIONS = (Activation("Sigmoid"), Activation("Tanh"), Activation("Tanh"))


def make_activation(value: Any, where: str) -> Activation:
    """An Activation from a name, a (name, alpha, beta) sequence, a dict or an Activation."""
    if isinstance(value, Activation):
        name, alpha, beta = value.name, value.alpha, value.beta
    elif isinstance(value, str):
        name, alpha, beta = value, None, None
    elif isinstance(value, Mapping):
        unknown = set(value) - {"name", "alpha", "beta"}
        if unknown:
            raise ValueError(f"{where}: unknown activation field(s) {sorted(unknown)}")
        if "name" not in value:
            raise ValueError(f"{where}: activation needs a 'name'")
        name, alpha, beta = value["name"], value.get("alpha"), value.get("beta")
    elif isinstance(value, (list, tuple)) and 1 <= len(value) <= 3:
        name, alpha, beta = (list(value) + [None, None])[:3]
    else:
        raise TypeError(f"{where}: an activation is a name, (name, alpha, beta) or dict, got {value!r}")
    if not isinstance(name, str):
        raise TypeError(f"{where}: activation name must be a string, got {type(name).__name__}")
    canonical = _ACT_BY_LOWER.get(name.lower())
    if canonical is None:
        raise ValueError(f"{where}: unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    dalpha, dbeta = ACTIVATIONS[canonical]
    alpha = _opt_float(alpha, f"{where}.alpha") if dalpha is not None else None
    beta = _opt_float(beta, f"{where}.beta") if dbeta is not None else None
    return Activation(canonical, dalpha if alpha is None else alpha, dbeta if beta is None else beta)


@dataclass(frozen=True)
class HeadLayer:
    """One layer of the head. kind: a HEAD_TYPES name; in/out features and bias for Linear only
    (0, 0, False otherwise)."""

    kind: str
    in_features: int = 0
    out_features: int = 0
    bias: bool = False

    def __str__(self) -> str:
        if self.kind == "Linear":
            return f"Linear({self.in_features}, {self.out_features}{'' if self.bias else ', bias=False'})"
        return self.kind

    def to_dict(self) -> dict[str, Any]:
        if self.kind == "Linear":
            return {"type": "Linear", "in_features": self.in_features, "out_features": self.out_features, "bias": self.bias}
        return {"type": self.kind}


def make_head_layer(value: Any, where: str) -> HeadLayer:
    """A HeadLayer from a dict ({"type": "Linear", "in_features": .., "out_features": .., "bias": ..}),
    a type name (for the layers without fields) or a HeadLayer. Sizes are checked, not widths."""
    if isinstance(value, HeadLayer):
        value = value.to_dict()
    elif isinstance(value, str):
        value = {"type": value}
    if not isinstance(value, Mapping):
        raise TypeError(f"{where}: a head layer is a dict with a 'type' (or a type name), got {type(value).__name__}")
    if "type" not in value:
        raise ValueError(f"{where}: a head layer needs a 'type'; known: {', '.join(HEAD_TYPES)}")
    kind = value["type"]
    if not isinstance(kind, str):
        raise TypeError(f"{where}.type must be a string, got {type(kind).__name__}")
    canonical = _HEAD_BY_LOWER.get(kind.lower())
    if canonical is None:
        raise ValueError(f"{where}: unsupported head layer type {kind!r}; supported: {', '.join(HEAD_TYPES)}")
    allowed = HEAD_TYPES[canonical]
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{where}: field names must be strings, got {key!r}")
    unknown = sorted(set(value) - {"type", *allowed})
    if unknown:
        have = f"fields {', '.join(allowed)}" if allowed else "no fields"
        raise ValueError(f"{where}: unknown field(s) {unknown} for a {canonical} layer ({canonical} takes {have})")
    if canonical != "Linear":
        return HeadLayer(canonical)
    for key in ("in_features", "out_features"):
        if key not in value:
            raise ValueError(f"{where}: a Linear layer needs {key!r}")
    n_in = _check_int(f"{where}.in_features", value["in_features"], 1, MAX_DIM)
    n_out = _check_int(f"{where}.out_features", value["out_features"], 1, MAX_DIM)
    bias = _check_bool(f"{where}.bias", value.get("bias", True))
    return HeadLayer("Linear", n_in, n_out, bias)


def head_parameters(head: tuple[HeadLayer, ...]) -> int:
    return sum(h.in_features * h.out_features + (h.out_features if h.bias else 0) for h in head if h.kind == "Linear")


FLOAT32_MAX = 3.4028234663852886e38  # these numbers are written into the C as float32


def _opt_float(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{where} must be a number, got {type(value).__name__}")
    try:
        value = float(value)
    except OverflowError:  # an int too large for any float
        raise ValueError(f"{where} must be a finite float32, got an integer of {int(value).bit_length()} bits") from None
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise ValueError(f"{where} must be a finite float32 (|v| <= {FLOAT32_MAX:.7g}), got {value!r}")
    return value


def _check_int(name: str, value: Any, lo: int, hi: int) -> int:
    # numpy integers are accepted; bools and floats are not.
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return int(value)


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
    return value


def _count_parameters(NI: int, H: int, L: int, D: int, P: int, bias: bool, peepholes: bool) -> int:
    """state_dict floats, by formula (no per-layer loop: L may be absurd here)."""
    R = P or H
    per_direction_first = 4 * H * (NI + R)
    per_direction_rest = 4 * H * (D * R + R)
    extra = (8 * H if bias else 0) + P * H + (3 * H if peepholes else 0)
    return D * (per_direction_first + (L - 1) * per_direction_rest) + L * D * extra


def _refuse_absurd_sizes(spec: Any) -> None:
    """Say what an absurd model would need before anything else looks at it (no allocation, no
    loop over layers). Only sizes that already passed their type check are considered; the field
    checks that follow report the rest."""
    names = ("input_size", "hidden_size", "num_layers", "proj_size")
    vals = [getattr(spec, n) for n in names]
    if not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0 for v in vals):
        return
    NI, H, L, P = (int(v) for v in vals)
    if min(NI, H, L) < 1:
        return
    D = 2 if spec.bidirectional is True else 1
    n = _count_parameters(NI, H, L, D, P, spec.bias is True, spec.peepholes is True)
    if n > MAX_PARAMS:
        given = ", ".join(f"{k}={v}" for k, v in zip(names, (NI, H, L, P)) if k != "proj_size" or v)
        raise ValueError(
            f"model too large: {given}{', bidirectional' if D == 2 else ''} means {n} parameters, "
            f"{_human_bytes(4 * n)} of float32 weights (limit {MAX_PARAMS} parameters, "
            f"{_human_bytes(4 * MAX_PARAMS)})"
        )


def _human_bytes(n: int) -> str:
    if n >= 2**70:  # beyond a float's comfort: say it in powers of two
        return f"about 2^{n.bit_length() - 1} bytes"
    for unit, size in (("EiB", 2**60), ("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n} bytes"


@dataclass(frozen=True)
class LSTMSpec:
    """The shape of a torch.nn.LSTM (plus ONNX's cell variants). Validated on construction."""

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0  # training-only in torch; accepted and ignored at inference
    bidirectional: bool = False
    proj_size: int = 0
    # ONNX LSTM extras (defaults are the torch cell)
    reverse: bool = False  # a single direction that walks time backwards (ONNX direction="reverse")
    activations: tuple[Activation, ...] = DEFAULT_ACTIVATIONS  # (f, g, h) per direction
    peepholes: bool = False  # weight_ph_l{k}: (3*H,) gates i, f, o
    clip: float | None = None  # clamp gate pre-activations to [-clip, clip]
    input_forget: bool = False  # coupled gates: f = 1 - i
    # layers applied to every output step (empty: y is the LSTM's output)
    head: tuple[HeadLayer, ...] = ()

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _refuse_absurd_sizes(self)
        set_(self, "input_size", _check_int("input_size", self.input_size, 1, MAX_DIM))
        set_(self, "hidden_size", _check_int("hidden_size", self.hidden_size, 1, MAX_DIM))
        set_(self, "num_layers", _check_int("num_layers", self.num_layers, 1, MAX_LAYERS))
        set_(self, "proj_size", _check_int("proj_size", self.proj_size, 0, MAX_DIM))
        for name in ("bias", "batch_first", "bidirectional", "reverse", "peepholes", "input_forget"):
            _check_bool(name, getattr(self, name))
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)):
            raise TypeError(f"dropout must be a number, got {type(self.dropout).__name__}")
        if not (math.isfinite(self.dropout) and 0.0 <= self.dropout <= 1.0):
            raise ValueError(f"dropout must be in [0, 1], got {self.dropout!r}")
        set_(self, "dropout", float(self.dropout))
        if self.proj_size and self.proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size must be smaller than hidden_size (torch's rule), got proj_size="
                f"{self.proj_size} >= hidden_size={self.hidden_size}"
            )
        if self.reverse and self.bidirectional:
            raise ValueError("reverse=True is a single backward direction; it cannot be combined with bidirectional=True")
        if self.clip is not None:
            clip = _opt_float(self.clip, "clip")
            if clip is None or clip <= 0:
                raise ValueError(f"clip must be a positive finite number or None, got {self.clip!r}")
            set_(self, "clip", clip)
        acts = self.activations
        if isinstance(acts, (str, bytes)) or not isinstance(acts, (list, tuple)):
            raise TypeError(f"activations must be a list of 3 (or 6 when bidirectional), got {acts!r}")
        acts = tuple(make_activation(a, f"activations[{i}]") for i, a in enumerate(acts))
        allowed = (3, 6) if self.bidirectional else (3,)
        if len(acts) not in allowed:
            raise ValueError(f"activations must have {' or '.join(map(str, allowed))} entries (f, g, h per direction), got {len(acts)}")
        if len(acts) == 6 and acts[:3] == acts[3:]:
            acts = acts[:3]
        set_(self, "activations", acts)
        set_(self, "head", self._check_head(self.head))
        _refuse_absurd_sizes(self)  # again with the validated values (peepholes, bias are bools now)

    def _check_head(self, head: Any) -> tuple[HeadLayer, ...]:
        if head is None:
            return ()
        if isinstance(head, (str, bytes, Mapping)) or not isinstance(head, (list, tuple)):
            raise TypeError(f"head must be a list of layers (dicts with a 'type'), got {type(head).__name__}")
        if len(head) > MAX_HEAD_LAYERS:
            raise ValueError(f"head has {len(head)} layers; at most {MAX_HEAD_LAYERS}")
        layers = tuple(make_head_layer(v, f"head[{i}]") for i, v in enumerate(head))
        width = self.num_directions * self.output_size
        for i, layer in enumerate(layers):
            if layer.kind == "Linear":
                if layer.in_features != width:
                    src = "the LSTM's output (num_directions * (proj_size or hidden_size))" if all(
                        h.kind != "Linear" for h in layers[:i]) else "the previous Linear's out_features"
                    raise ValueError(f"head[{i}]: Linear in_features={layer.in_features}, but its input has "
                                     f"{width} features ({src})")
                width = layer.out_features
        n = head_parameters(layers)
        if n > MAX_PARAMS:
            raise ValueError(f"head too large: {n} parameters (limit {MAX_PARAMS})")
        return layers

    # ---- derived sizes -------------------------------------------------------------------
    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def output_size(self) -> int:
        """R: size of h (proj_size if projecting, else hidden_size)."""
        return self.proj_size or self.hidden_size

    @property
    def head_output_size(self) -> int:
        """Features of y per step: the last Linear's out_features, or D*R (no Linear in the head)."""
        width = self.num_directions * self.output_size
        for layer in self.head:
            if layer.kind == "Linear":
                width = layer.out_features
        return width

    def head_linears(self) -> list[tuple[int, HeadLayer]]:
        """(index in the head, layer) of every Linear: torch names head.{index}.weight/bias."""
        return [(i, h) for i, h in enumerate(self.head) if h.kind == "Linear"]

    def layer_input_size(self, layer: int) -> int:
        return self.input_size if layer == 0 else self.num_directions * self.output_size

    def direction_activations(self, direction: int) -> tuple[Activation, Activation, Activation]:
        a = self.activations
        return (a[0], a[1], a[2]) if len(a) == 3 or direction == 0 else (a[3], a[4], a[5])

    @property
    def is_torch_cell(self) -> bool:
        """True when the cell is exactly torch's (no ONNX extras)."""
        return (
            self.activations == DEFAULT_ACTIVATIONS
            and not self.peepholes
            and self.clip is None
            and not self.input_forget
        )

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every weight's name and shape, exactly as torch.nn.LSTM.state_dict() has them."""
        H, R, P = self.hidden_size, self.output_size, self.proj_size
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in range(self.num_layers):
            for d in range(self.num_directions):
                sfx = f"l{layer}" + ("_reverse" if d == 1 else "")
                shapes[f"weight_ih_{sfx}"] = (4 * H, self.layer_input_size(layer))
                shapes[f"weight_hh_{sfx}"] = (4 * H, R)
                if self.bias:
                    shapes[f"bias_ih_{sfx}"] = (4 * H,)
                    shapes[f"bias_hh_{sfx}"] = (4 * H,)
                if P:
                    shapes[f"weight_hr_{sfx}"] = (P, H)
                if self.peepholes:
                    shapes[f"weight_ph_{sfx}"] = (3 * H,)
        for i, h in self.head_linears():
            shapes[f"head.{i}.weight"] = (h.out_features, h.in_features)
            if h.bias:
                shapes[f"head.{i}.bias"] = (h.out_features,)
        return shapes

    @property
    def num_parameters(self) -> int:
        return sum(math.prod(s) for s in self.weight_shapes().values())

    def macs_per_step(self) -> int:
        """Multiply-accumulates per time step and batch row over all layers and directions."""
        H, R, P = self.hidden_size, self.output_size, self.proj_size
        total = 0
        for layer in range(self.num_layers):
            total += self.num_directions * (4 * H * (self.layer_input_size(layer) + R) + P * H)
        return total + sum(h.in_features * h.out_features for _, h in self.head_linears())

    # ---- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "activations":
                if v == DEFAULT_ACTIVATIONS:
                    continue
                v = [{k: x for k, x in (("name", a.name), ("alpha", a.alpha), ("beta", a.beta)) if x is not None} for a in v]
            elif f.name == "head":
                if not v:
                    continue
                v = [h.to_dict() for h in v]
            elif f.default is not None and v == f.default and f.name not in _TORCH_FIELDS:
                continue
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "spec") -> "LSTMSpec":
        if not isinstance(data, Mapping):
            raise TypeError(f"{where}: a spec is a mapping of field names, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        for key in data:
            if not isinstance(key, str):
                raise TypeError(f"{where}: field names must be strings, got {key!r}")
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{where}: unknown field(s) {unknown}; known fields: {sorted(known)}")
        for required in ("input_size", "hidden_size"):
            if required not in data:
                raise ValueError(f"{where}: missing required field {required!r}")
        kwargs = dict(data)
        if "activations" in kwargs and isinstance(kwargs["activations"], list):
            kwargs["activations"] = tuple(kwargs["activations"])
        if "head" in kwargs and isinstance(kwargs["head"], list):
            kwargs["head"] = tuple(kwargs["head"])
        return cls(**kwargs)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> "LSTMSpec":
        """Read a spec from a .json or .toml file with LSTMSpec's field names."""
        path = os.fspath(path)
        with open(path, "rb") as fh:
            raw = fh.read(MAX_SPEC_BYTES + 1)
        return cls.loads(raw, fmt="toml" if path.endswith(".toml") else "json", where=path)

    @classmethod
    def loads(cls, raw: bytes | str, fmt: str = "json", where: str = "spec") -> "LSTMSpec":
        """Parse spec text (JSON or TOML, UTF-8). Any malformed input raises ValueError or TypeError."""
        if fmt not in ("json", "toml"):
            raise ValueError(f"spec format must be 'json' or 'toml', got {fmt!r}")
        if len(raw) > MAX_SPEC_BYTES:
            raise ValueError(f"{where}: a spec file is a few lines; this one is over {MAX_SPEC_BYTES} bytes")
        try:
            text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
            if fmt == "toml":
                import tomllib

                data = tomllib.loads(text)
            else:
                data = json.loads(text)
        except (ValueError, UnicodeError, RecursionError) as exc:  # RecursionError: absurd nesting
            raise ValueError(f"{where}: not a valid {fmt.upper()} spec: {type(exc).__name__}: {exc}"[:2000]) from None
        return cls.from_dict(data, where=where)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def summary(self) -> str:
        """One line, e.g. 'I=40 H=64 L=2 D=1' (used in banners; contains no user strings)."""
        parts = [f"I={self.input_size}", f"H={self.hidden_size}"]
        if self.proj_size:
            parts.append(f"P={self.proj_size}")
        parts += [f"L={self.num_layers}", f"D={self.num_directions}"]
        if not self.bias:
            parts.append("nobias")
        if self.batch_first:
            parts.append("batch_first")
        if self.reverse:
            parts.append("reverse")
        if not self.is_torch_cell:
            parts.append("onnx-cell")
        if self.head:
            parts.append("head=" + ",".join(h.kind if h.kind != "Linear" else f"Linear{h.out_features}" for h in self.head))
        return " ".join(parts)


_TORCH_FIELDS = {"input_size", "hidden_size", "num_layers", "bias", "batch_first", "dropout", "bidirectional", "proj_size"}


def as_spec(spec: Any) -> LSTMSpec:
    """An LSTMSpec from an LSTMSpec, a dict of its fields, or a path to a JSON/TOML spec file."""
    if isinstance(spec, LSTMSpec):
        return spec
    if isinstance(spec, Mapping):
        return LSTMSpec.from_dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        return LSTMSpec.load(spec)
    raise TypeError(f"spec must be an LSTMSpec, a dict or a path to a JSON/TOML spec, got {type(spec).__name__}")
