"""The importer's vocabulary: what a graph value means, and the axes those meanings share.

Input: nothing from the graph directly; the importer builds these values from initializers,
graph inputs and nodes. Output: frozen value classes (Const, Dims, Zeros, Input, Out, Lens,
SortIdx, InvPerm, Arange) and `ValueScope`, the base of the importer: a union-find over axis
labels with their static sizes (`match` unifies two sizes or says they differ), the shape of
any value, and the small readers of node attributes and constant operands every op uses.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np


def _tensor_type_kind(elem_type: int) -> str:
    from onnx import TensorProto

    if elem_type in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16, TensorProto.BFLOAT16):
        return "f"
    if elem_type in (TensorProto.INT32, TensorProto.INT64, TensorProto.INT16, TensorProto.INT8,
                     TensorProto.UINT8, TensorProto.UINT16, TensorProto.UINT32, TensorProto.UINT64):
        return "i"
    return "?"


# ---- abstract values --------------------------------------------------------------------
# Axis labels: "T?"-like roles are not fixed up front. Graph-input axes are labelled
# ("in", input name, position); "I" is x's feature axis; "D", "H", "DH" the direction, hidden
# and merged direction*hidden axes of an LSTM output; "S" the stacked (layer, direction) axis of
# a state; "1" an axis of size one that Unsqueeze inserted.
Label = Hashable


@dataclass(frozen=True)
class Const:
    value: np.ndarray


@dataclass(frozen=True)
class Dims:
    """A small integer vector (or scalar) of sizes; items are ints or axis labels."""

    items: tuple
    scalar: bool = False


@dataclass(frozen=True)
class Zeros:
    dims: tuple  # ints or labels
    kind: str = "f"


@dataclass(frozen=True)
class Input:
    """A float graph input (x or a state), possibly transposed, unsqueezed, sliced, permuted."""

    name: str
    axes: tuple
    slices: tuple = ()  # ((label, start, end), ...)
    perm: bool = False


@dataclass(frozen=True)
class Out:
    """An LSTM node's output: kind 'y' (sequence) or 'h'/'c' (states) of `layers`."""

    kind: str
    layers: tuple
    axes: tuple
    perm: bool = False


@dataclass(frozen=True)
class Lens:
    name: str
    label: Label  # the lengths' axis (batch)
    perm: bool = False


@dataclass(frozen=True)
class SortIdx:
    label: Label


@dataclass(frozen=True)
class InvPerm:
    label: Label


@dataclass(frozen=True)
class Arange:
    n: Any  # int or label


class ValueScope:
    """Axis labels and value helpers; `_Importer` (importer.py) owns the state they read."""

    parent: dict[Label, Label]
    static: dict[Label, int]
    notes: list[str]
    where: str

    # -- union-find over axis labels, with static sizes ------------------------------------
    def find(self, a: Label) -> Label:
        while self.parent.get(a, a) != a:
            a = self.parent[a]
        return a

    def static_of(self, a: Label) -> int | None:
        if a == "1":
            return 1
        return self.static.get(self.find(a))

    def match(self, a: Any, b: Any) -> bool:
        """Unify two sizes (ints or labels); False when they provably differ."""
        if isinstance(a, (int, np.integer)) and isinstance(b, (int, np.integer)):
            return int(a) == int(b)
        if isinstance(a, (int, np.integer)):
            a, b = b, a
        if isinstance(b, (int, np.integer)):
            s = self.static_of(a)
            if s is None:
                self.static[self.find(a)] = int(b)
                self.notes.append(f"{self.where} fixes a dynamic size to {int(b)}; the imported model accepts any size")
                return True
            return s == int(b)
        if a == "1" or b == "1":
            other = b if a == "1" else a
            return other == "1" or self.static_of(other) in (None, 1)
        ra, rb = self.find(a), self.find(b)
        if ra == rb:
            return True
        sa, sb = self.static.get(ra), self.static.get(rb)
        if sa is not None and sb is not None and sa != sb:
            return False
        self.parent[ra] = rb
        if sa is not None:
            self.static[rb] = sa
        return True

    # -- helpers -----------------------------------------------------------------------------
    def fail(self, msg: str) -> None:
        raise ValueError(f"{self.where}: {msg}")

    def label_dim(self, label: Label, value: Any = None) -> Any:
        if label == "1":
            return 1
        if label == "D":
            return self.D
        if label == "H":
            return self.H
        if label == "DH":
            return self.D * self.H
        if label == "S":
            return len(value.layers) * self.D
        return label

    def dims_of(self, v: Any) -> tuple:
        if isinstance(v, Const):
            return tuple(int(d) for d in v.value.shape)
        if isinstance(v, Zeros):
            return v.dims
        if isinstance(v, (Input, Out)):
            return tuple(self.label_dim(a, v) for a in v.axes)
        if isinstance(v, (Lens, SortIdx, InvPerm)):
            return (v.label,)
        if isinstance(v, Dims):
            return () if v.scalar else (len(v.items),)
        if isinstance(v, Arange):
            return (v.n,)
        self.fail(f"cannot take the shape of {type(v).__name__}")

    def as_dims(self, v: Any, what: str) -> Dims:
        if isinstance(v, Dims):
            return v
        if isinstance(v, Const) and v.value.dtype.kind in "iu" and v.value.ndim <= 1:
            return Dims(tuple(int(i) for i in v.value.reshape(-1)), scalar=v.value.ndim == 0)
        self.fail(f"{what} must be a constant or a shape computation, got {type(v).__name__}")

    def const_ints(self, v: Any, what: str) -> list[int]:
        if isinstance(v, Const) and v.value.dtype.kind in "iu":
            return [int(i) for i in v.value.reshape(-1)]
        self.fail(f"{what} must be a constant integer tensor")

    def attr(self, node: Any, name: str, default: Any = None) -> Any:
        from onnx import helper

        for a in node.attribute:
            if a.name == name:
                v = helper.get_attribute_value(a)
                if isinstance(v, bytes):
                    return v.decode("utf-8")
                if isinstance(v, list) and v and isinstance(v[0], bytes):
                    return [s.decode("utf-8") for s in v]
                if isinstance(v, self.onnx.TensorProto):
                    return self.numpy_helper.to_array(v)
                return v
        return default

    def norm_axis(self, axis: int, rank: int) -> int:
        if not -rank <= axis < rank:
            self.fail(f"axis {axis} is out of range for rank {rank}")
        return axis % rank

    def _axes_str(self, axes) -> str:
        def one(a):
            if isinstance(a, tuple):
                return f"{a[1]!r}[{a[2]}]"
            return str(a)
        return "(" + ", ".join(one(a) for a in axes) + ")"
