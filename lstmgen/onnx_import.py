"""ONNX in and out: LSTM graphs -> (LSTMSpec, weights), and (LSTMSpec, weights) -> an ONNX graph.

Input (import): an `onnx.ModelProto`, or a path to a .onnx file, holding one or more ONNX `LSTM`
nodes (default domain, opset 7..22) with the glue torch.onnx.export writes around them (both the
legacy TorchScript exporter and the dynamo exporter), or a bare hand-built node.
Output: `import_onnx` gives an `OnnxImport`: the spec, weights with torch.nn.LSTM's state_dict
names (gate order i, f, g, o), and how the graph's inputs and outputs relate to `Model`'s
arguments and results. `from_onnx` gives just (spec, weights).

How the import works. The graph is not executed. Every value is given an abstract meaning drawn
from a small fixed vocabulary — a constant, a vector of symbolic sizes (what Shape/Gather/Concat
compute), zeros of a symbolic shape (the exporters' zero initial state), the graph input x or
a state input (with its axes labelled), an LSTM output (with its axes labelled), the lengths,
the permutation torch's packed-sequence export sorts rows by — and each glue op is accepted
only when it maps meanings to meanings. Any other op, attribute or combination raises
ValueError naming the node (its index, op type and, via repr, its name) and what is wrong.
A constant non-zero initial state, a projection, a graph output that is not the last layer's
sequence or a run of layers' states, or layers that disagree on the cell are all refused.

Export: `to_onnx(spec, weights)` writes one LSTM node per layer plus Slice/Transpose/Reshape/
Concat glue (opset 14), for models without projection.

Gate orders: ONNX stores W, R and both biases in order i, o, f, c, and peepholes in order
i, o, f; torch (and lstmgen) use i, f, g(=c), o and peepholes i, f, o. ONNX's B is [Wb, Rb]
per direction: Wb becomes bias_ih, Rb bias_hh.
"""

from __future__ import annotations

import os
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .spec import ACTIVATIONS, Activation, LSTMSpec, make_activation

OPSET_MIN, OPSET_MAX = 7, 22
EXPORT_OPSET = 14

# ONNX gate block k (i, o, f, c) <-> torch block (i, f, g, o)
_ONNX_FROM_TORCH = [0, 3, 1, 2]  # onnx blocks, taken from torch blocks
_TORCH_FROM_ONNX = [0, 2, 3, 1]  # torch blocks, taken from onnx blocks
_PH_TORCH_FROM_ONNX = [0, 2, 1]  # peepholes: torch (i, f, o) from onnx (i, o, f); its own inverse

# onnxruntime reads activation_alpha/activation_beta as holding values only for the activations
# that take them, in (f, g, h[, f, g, h]) order; lstmgen reads and writes them the same way.
USES_ALPHA = frozenset(n for n, (a, _) in ACTIVATIONS.items() if a is not None)
USES_BETA = frozenset(n for n, (_, b) in ACTIVATIONS.items() if b is not None)

_LSTM_ATTRS = {"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
               "input_forget", "layout"}
_GLUE_ATTRS: dict[str, set[str]] = {
    "Identity": set(), "Constant": {"value", "value_float", "value_floats", "value_int", "value_ints"},
    "Cast": {"to", "saturate", "round_mode"}, "Shape": {"start", "end"}, "Gather": {"axis"},
    "Unsqueeze": {"axes"}, "Squeeze": {"axes"}, "Concat": {"axis"}, "Slice": {"starts", "ends", "axes"},
    "Transpose": {"perm"}, "Reshape": {"allowzero"}, "Expand": set(), "ConstantOfShape": {"value"},
    "Mul": set(), "ReduceProd": {"keepdims", "axes", "noop_with_empty_axes"}, "Range": set(),
    "TopK": {"axis", "largest", "sorted", "k"}, "ScatterElements": {"axis", "reduction"},
}


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


# ---- the result -------------------------------------------------------------------------


@dataclass(frozen=True)
class StateSource:
    """Where layer k's initial h or c comes from: a graph input's rows, or zeros (name None)."""

    name: str | None = None
    stack_axis: int | None = None  # positions in the graph input
    batch_axis: int | None = None  # None: the input has no batch axis (unbatched graph)
    hidden_axis: int | None = None
    row: int = 0


@dataclass
class OnnxImport:
    """What from_onnx found: spec, weights and the graph's input/output relation to Model."""

    spec: LSTMSpec
    weights: dict[str, np.ndarray]
    x: str  # name of the graph input that is x
    unbatched: bool  # x is (T, I): Model is called unbatched
    lengths: str | None  # graph input feeding sequence_lens, passed as Model's `lengths`
    h0: tuple[StateSource, ...]  # per layer
    c0: tuple[StateSource, ...]
    outputs: dict[str, tuple]  # graph output name -> ("out"|"h_n"|"c_n", axes roles, rows)
    notes: list[str] = field(default_factory=list)

    def model_inputs(self, feeds: dict[str, Any]) -> tuple[np.ndarray, tuple | None, np.ndarray | None]:
        """(x, hx, lengths) for Model (or reference.lstm_forward) from the graph's input feeds."""
        spec = self.spec
        x = np.asarray(feeds[self.x], dtype=np.float32)
        if self.unbatched:
            B = 1
        else:
            B = x.shape[0] if spec.batch_first else x.shape[1]
        L, D, H = spec.num_layers, spec.num_directions, spec.hidden_size
        hx = None
        if any(s.name for s in self.h0 + self.c0):
            states = []
            for sources in (self.h0, self.c0):
                arr = np.zeros((L * D, B, H), dtype=np.float32)  # (L*D, B, H)
                for k, s in enumerate(sources):
                    if s.name is None:
                        continue
                    a = np.asarray(feeds[s.name], dtype=np.float32)
                    if s.batch_axis is None:
                        a = np.expand_dims(a.transpose(s.stack_axis, s.hidden_axis), 1)
                    else:
                        a = a.transpose(s.stack_axis, s.batch_axis, s.hidden_axis)
                    arr[k * D:(k + 1) * D] = a[s.row:s.row + D]
                states.append(arr[:, 0] if self.unbatched else arr)
            hx = (states[0], states[1])
        lengths = None
        if self.lengths is not None:
            lengths = np.asarray(feeds[self.lengths]).astype(np.int64)
        return x, hx, lengths

    def graph_outputs(self, out: Any, hx_n: tuple[Any, Any]) -> dict[str, np.ndarray]:
        """The graph's outputs computed from Model's (out, (h_n, c_n))."""
        spec = self.spec
        D, H = spec.num_directions, spec.hidden_size
        out = np.asarray(out)
        h_n, c_n = (np.asarray(a) for a in hx_n)
        if self.unbatched:
            out, h_n, c_n = out[:, None], h_n[:, None], c_n[:, None]
        elif spec.batch_first:
            out = out.transpose(1, 0, 2)
        T, B = out.shape[:2]
        canon = {"out": (out.reshape(T, B, D, H), ("T", "B", "D", "H")),
                 "h_n": (h_n, ("S", "B", "H")), "c_n": (c_n, ("S", "B", "H"))}
        result = {}
        for name, (what, roles, rows) in self.outputs.items():
            arr, axes = canon[what]
            if rows is not None:
                arr = arr[rows[0]:rows[1]]
            axes = list(axes)
            if "DH" in roles:
                arr = arr.reshape(arr.shape[:2] + (D * H,))
                axes = axes[:2] + ["DH"]
            for ax in [a for a in axes if a not in roles]:  # squeezed away in the graph
                i = axes.index(ax)
                arr = arr.squeeze(i)
                axes.pop(i)
            kept = [r for r in roles if r != "1"]
            arr = arr.transpose([axes.index(r) for r in kept])
            for i, r in enumerate(roles):
                if r == "1":
                    arr = np.expand_dims(arr, i)
            result[name] = arr
        return result

    def describe(self) -> str:
        """Readable mapping (graph names shown with repr)."""
        s = self.spec
        lines = [f"spec: {s.summary()}  ({s.num_parameters} parameters)"]
        shape = "(T, I)" if self.unbatched else ("(B, T, I)" if s.batch_first else "(T, B, I)")
        lines.append(f"x       <- graph input {self.x!r} {shape}")
        for label, sources in (("h0", self.h0), ("c0", self.c0)):
            names = sorted({src.name for src in sources if src.name})
            lines.append(f"{label}      <- " + (", ".join(repr(n) for n in names) if names else "zeros"))
        lines.append("lengths <- " + (f"graph input {self.lengths!r}" if self.lengths else "none (all T)"))
        for name, (what, roles, rows) in self.outputs.items():
            sub = f"[{rows[0]}:{rows[1]}]" if rows else ""
            lines.append(f"graph output {name!r} = {what}{sub} as ({', '.join(roles)})")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


# ---- the importer -----------------------------------------------------------------------


class _Importer:
    def __init__(self, model: Any):
        import onnx
        from onnx import numpy_helper

        self.onnx = onnx
        self.numpy_helper = numpy_helper
        self.model = model
        self.graph = model.graph
        self.values: dict[str, Any] = {}
        self.parent: dict[Label, Label] = {}
        self.static: dict[Label, int] = {}
        self.notes: list[str] = []
        self.layers: list[dict] = []  # per LSTM layer: its parameters
        self.time_label: Label | None = None
        self.batch_label: Label | None = None
        self.x_name: str | None = None
        self.input_rank: dict[str, int] = {}
        self.roles: dict[str, str] = {}  # graph input name -> x | h | c | lengths
        self.lens_name: str | None = None
        self.where = "graph"

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

    # -- entry ---------------------------------------------------------------------------------
    def run(self) -> OnnxImport:
        opset = None
        for o in self.model.opset_import:
            if o.domain in ("", "ai.onnx"):
                opset = o.version
        if opset is None:
            self.fail("the model imports no default-domain opset")
        if not OPSET_MIN <= opset <= OPSET_MAX:
            self.fail(f"opset {opset} is not supported (LSTM import covers opset {OPSET_MIN}..{OPSET_MAX})")
        self.opset = opset
        g = self.graph
        for init in g.initializer:
            self.values[init.name] = Const(self.numpy_helper.to_array(init))
        for vi in g.input:
            if vi.name in self.values:
                continue  # an initializer listed as an input (old IR): a constant
            self.values[vi.name] = self.graph_input(vi)
        for i, node in enumerate(g.node):
            self.where = f"node #{i} {node.op_type}" + (f" {node.name!r}" if node.name else "")
            self.visit(node)
        self.where = "graph"
        return self.finish()

    def graph_input(self, vi: Any) -> Any:
        t = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not t.HasField("shape"):
            self.fail(f"graph input {vi.name!r} must be a tensor of known rank")
        dims = []
        for k, d in enumerate(t.shape.dim):
            label = ("in", vi.name, k)
            if d.HasField("dim_value") and d.dim_value > 0:
                self.static[label] = int(d.dim_value)
            dims.append(label)
        kind = _tensor_type_kind(t.elem_type)
        self.input_rank[vi.name] = len(dims)
        if kind == "i":
            if len(dims) != 1:
                self.fail(f"integer graph input {vi.name!r} must be 1-D lengths, got rank {len(dims)}")
            return Lens(vi.name, dims[0])
        if kind != "f":
            self.fail(f"graph input {vi.name!r} has an unsupported element type {t.elem_type}")
        if len(dims) not in (2, 3):
            self.fail(f"graph input {vi.name!r} must have rank 2 or 3, got {len(dims)}")
        return Input(vi.name, tuple(dims))

    def visit(self, node: Any) -> None:
        op = node.op_type
        if node.domain not in ("", "ai.onnx"):
            self.fail(f"op domain {node.domain!r} is not supported (only ONNX LSTM and its glue are)")
        if op == "LSTM":
            allowed = _LSTM_ATTRS
        elif op in _GLUE_ATTRS:
            allowed = _GLUE_ATTRS[op]
        else:
            self.fail(f"op {op} is not supported: lstmgen imports LSTM nodes and the glue exporters put "
                      f"around them ({', '.join(sorted(_GLUE_ATTRS))})")
        for a in node.attribute:
            if a.name not in allowed:
                self.fail(f"attribute {a.name!r} is not supported")
        ins = []
        for name in node.input:
            if name == "":
                ins.append(None)
            elif name not in self.values:
                self.fail(f"input {name!r} is not produced by any earlier node (graph not topologically sorted?)")
            else:
                ins.append(self.values[name])
        outs = getattr(self, f"op_{op}")(node, ins)
        if not isinstance(outs, list):
            outs = [outs]
        for name, v in zip(node.output, outs):
            if name:
                self.values[name] = v
        for name in list(node.output)[len(outs):]:
            if name:
                self.fail(f"output {name!r} is not supported")

    # -- glue ops ------------------------------------------------------------------------------
    def op_Identity(self, node, ins):
        return ins[0]

    def op_Constant(self, node, ins):
        for key in ("value", "value_float", "value_floats", "value_int", "value_ints"):
            v = self.attr(node, key)
            if v is not None:
                return Const(np.asarray(v))
        self.fail("Constant without a value")

    def op_Cast(self, node, ins):
        from onnx import TensorProto, helper

        to = self.attr(node, "to")
        v = ins[0]
        if isinstance(v, Const):
            return Const(v.value.astype(helper.tensor_dtype_to_np_dtype(to)))
        if isinstance(v, (Input, Out)) or (isinstance(v, Zeros) and v.kind == "f"):
            if to != TensorProto.FLOAT:
                self.fail("casting the LSTM's float data to another type is not supported (lstmgen computes in float32)")
            return v
        if _tensor_type_kind(to) != "i":
            self.fail(f"cast of {type(v).__name__} to a non-integer type is not supported")
        return v

    def op_Shape(self, node, ins):
        d = self.dims_of(ins[0])
        start, end = self.attr(node, "start", 0), self.attr(node, "end", None)
        n = len(d)
        s = max(0, min(n, start + n if start < 0 else start))
        e = n if end is None else max(0, min(n, end + n if end < 0 else end))
        return Dims(tuple(d[s:e]))

    def op_Gather(self, node, ins):
        data, idx = ins
        axis = self.attr(node, "axis", 0)
        if isinstance(data, Const) and isinstance(idx, Const):
            return Const(np.take(data.value, idx.value, axis=axis))
        if isinstance(data, Dims) and isinstance(idx, Const):
            if data.scalar:
                self.fail("Gather on a scalar")
            if idx.value.ndim > 1:
                self.fail("Gather of a shape vector by a matrix")
            n = len(data.items)
            picked = []
            for i in np.asarray(idx.value, dtype=np.int64).reshape(-1):
                if not -n <= i < n:
                    self.fail(f"Gather index {int(i)} out of range for a shape of length {n}")
                picked.append(data.items[int(i)])
            return Dims(tuple(picked), scalar=idx.value.ndim == 0)
        if isinstance(data, (Input, Out)) and isinstance(idx, (SortIdx, InvPerm)):
            axis = self.norm_axis(axis, len(data.axes))
            if not self.match(data.axes[axis], idx.label):
                self.fail("the batch permutation is applied along an axis that is not the batch axis")
            want = isinstance(idx, SortIdx)
            if data.perm == want:
                self.fail("batch rows permuted twice (expected: sort by length, then the inverse)")
            return type(data)(**{**data.__dict__, "perm": want})
        self.fail(f"Gather of {type(data).__name__} by {type(idx).__name__} is not supported")

    def op_Unsqueeze(self, node, ins):
        v = ins[0]
        axes = self.attr(node, "axes") if self.opset < 13 else self.const_ints(ins[1], "Unsqueeze axes")
        if axes is None:
            self.fail("Unsqueeze without axes")
        if isinstance(v, Const):
            rank = v.value.ndim + len(axes)
            return Const(np.expand_dims(v.value, tuple(self.norm_axis(a, rank) for a in axes)))
        if isinstance(v, Dims):
            if v.scalar and [self.norm_axis(a, 1) for a in axes] == [0]:
                return Dims(v.items)
            self.fail("Unsqueeze of a shape vector other than scalar -> [n]")
        if isinstance(v, (Input, Out)):
            rank = len(v.axes) + len(axes)
            new = sorted(self.norm_axis(a, rank) for a in axes)
            labels = list(v.axes)
            for a in new:
                labels.insert(a, "1")
            return type(v)(**{**v.__dict__, "axes": tuple(labels)})
        self.fail(f"Unsqueeze of {type(v).__name__} is not supported")

    def op_Squeeze(self, node, ins):
        v = ins[0]
        if self.opset < 13:
            axes = self.attr(node, "axes")
        else:
            axes = self.const_ints(ins[1], "Squeeze axes") if len(ins) > 1 and ins[1] is not None else None
        if isinstance(v, Const):
            return Const(np.squeeze(v.value, axis=None if axes is None else tuple(axes)))
        if isinstance(v, Dims):
            if not v.scalar and len(v.items) == 1:
                return Dims(v.items, scalar=True)
            self.fail("Squeeze of a shape vector other than [n] -> scalar")
        if isinstance(v, (Input, Out)):
            if axes is None:
                self.fail("Squeeze without axes on LSTM data is ambiguous; give the axes")
            labels = list(v.axes)
            drop = sorted({self.norm_axis(a, len(labels)) for a in axes}, reverse=True)
            for a in drop:
                lab = labels[a]
                if lab == "1" or (lab == "D" and self.D == 1) or (isinstance(lab, tuple) and self.match(lab, 1)):
                    labels.pop(a)
                else:
                    self.fail(f"Squeeze of axis {a}, which is not of size 1")
            if isinstance(v, Out) and v.kind == "y" and "H" in labels and "D" not in labels and self.D != 1:
                self.fail("Squeeze removed the direction axis of a bidirectional output")
            return type(v)(**{**v.__dict__, "axes": tuple(labels)})
        self.fail(f"Squeeze of {type(v).__name__} is not supported")

    def op_Concat(self, node, ins):
        axis = self.attr(node, "axis")
        if all(isinstance(v, Const) for v in ins):
            return Const(np.concatenate([v.value for v in ins], axis=axis))
        if all(isinstance(v, (Dims, Const)) for v in ins):
            items: tuple = ()
            for v in ins:
                d = self.as_dims(v, "Concat input")
                if d.scalar:
                    self.fail("Concat of a scalar")
                items += d.items
            return Dims(items)
        if all(isinstance(v, Out) and v.kind == ins[0].kind and v.kind in "hc" for v in ins):
            first = ins[0]
            a = self.norm_axis(axis, len(first.axes))
            if first.axes[a] != "S":
                self.fail("Concat of LSTM states along an axis other than the layer/direction axis")
            layers: tuple = ()
            for v in ins:
                if v.axes != first.axes or v.perm != first.perm:
                    self.fail("Concat of LSTM states laid out differently")
                layers += v.layers
            return Out(first.kind, layers, first.axes, first.perm)
        self.fail(f"Concat of {', '.join(type(v).__name__ for v in ins)} is not supported")

    def _slice_args(self, node, ins, rank):
        if self.opset < 10:
            starts, ends = self.attr(node, "starts"), self.attr(node, "ends")
            axes, steps = self.attr(node, "axes"), None
        else:
            starts = self.const_ints(ins[1], "Slice starts")
            ends = self.const_ints(ins[2], "Slice ends")
            axes = self.const_ints(ins[3], "Slice axes") if len(ins) > 3 and ins[3] is not None else None
            steps = self.const_ints(ins[4], "Slice steps") if len(ins) > 4 and ins[4] is not None else None
        axes = list(range(len(starts))) if axes is None else [self.norm_axis(a, rank) for a in axes]
        steps = [1] * len(starts) if steps is None else steps
        return list(zip(axes, starts, ends, steps))

    def op_Slice(self, node, ins):
        v = ins[0]
        if isinstance(v, Const):
            index = [slice(None)] * v.value.ndim
            for a, s, e, st in self._slice_args(node, ins, v.value.ndim):
                index[a] = slice(s, e, st)
            return Const(v.value[tuple(index)])
        if isinstance(v, Dims):
            if v.scalar:
                self.fail("Slice of a scalar")
            items = list(v.items)
            for _a, s, e, st in self._slice_args(node, ins, 1):
                items = items[slice(s, e, st)]
            return Dims(tuple(items))
        if isinstance(v, (Zeros, Input)):
            dims = list(self.dims_of(v))
            slices = list(v.slices) if isinstance(v, Input) else []
            for a, s, e, st in self._slice_args(node, ins, len(dims)):
                if st != 1:
                    self.fail("Slice with a step other than 1 on LSTM data")
                size = dims[a] if isinstance(dims[a], int) else self.static_of(dims[a])
                lo, hi = slice(s, e).indices(size if size is not None else 1 << 62)[:2]
                if isinstance(v, Input):
                    if any(lab == v.axes[a] for lab, _, _ in slices):
                        self.fail("the same axis of a state input is sliced twice")
                    if v.axes[a] == "1" or not isinstance(v.axes[a], tuple):
                        self.fail("Slice on an axis of a state input that is not one of its own axes")
                    slices.append((v.axes[a], lo, hi))
                else:
                    if size is None and (lo, hi) != (0, 1 << 62):
                        self.fail("Slice of a dynamic-size axis of the zero state")
                    dims[a] = hi - lo
            if isinstance(v, Input):
                return Input(v.name, v.axes, tuple(slices), v.perm)
            return Zeros(tuple(dims), v.kind)
        self.fail(f"Slice of {type(v).__name__} is not supported")

    def op_Transpose(self, node, ins):
        v = ins[0]
        rank = v.value.ndim if isinstance(v, Const) else len(self.dims_of(v))
        perm = self.attr(node, "perm") or list(range(rank))[::-1]
        if sorted(perm) != list(range(rank)):
            self.fail(f"perm {perm} is not a permutation of rank {rank}")
        if isinstance(v, Const):
            return Const(v.value.transpose(perm))
        if isinstance(v, Zeros):
            return Zeros(tuple(v.dims[p] for p in perm), v.kind)
        if isinstance(v, (Input, Out)):
            return type(v)(**{**v.__dict__, "axes": tuple(v.axes[p] for p in perm)})
        self.fail(f"Transpose of {type(v).__name__} is not supported")

    def op_Reshape(self, node, ins):
        v, shape = ins
        allowzero = self.attr(node, "allowzero", 0)
        if isinstance(v, Const) and isinstance(shape, Const):
            target = [int(s) for s in shape.value.reshape(-1)]
            if not allowzero:
                target = [v.value.shape[i] if s == 0 else s for i, s in enumerate(target)]
            return Const(v.value.reshape(target))
        if isinstance(v, Dims):
            if self.const_ints(shape, "Reshape shape") in ([-1], [1]):
                return Dims(v.items)
            self.fail("Reshape of a shape vector other than to [-1]")
        target = self.as_dims(shape, "Reshape shape").items
        if isinstance(v, Out) and v.kind == "y":
            cands = [v.axes]
            for i in range(len(v.axes) - 1):
                if v.axes[i:i + 2] == ("D", "H"):
                    cands.insert(0, v.axes[:i] + ("DH",) + v.axes[i + 2:])
            src = self.dims_of(v)
            for cand in cands:
                if self._reshape_fits(src, v.axes, cand, target, allowzero):
                    return Out(v.kind, v.layers, cand, v.perm)
            self.fail(f"Reshape to {list(target)} of an LSTM output with axes {self._axes_str(v.axes)} is "
                      "not a merge of its direction and hidden axes")
        self.fail(f"Reshape of {type(v).__name__} is not supported")

    def _reshape_fits(self, src, src_axes, cand, target, allowzero) -> bool:
        if len(target) != len(cand):
            return False
        want = [self.label_dim(a) for a in cand]
        if sum(1 for t in target if isinstance(t, int) and t == -1) > 1:
            return False
        for i, t in enumerate(target):
            if isinstance(t, int) and t == -1:
                continue
            if isinstance(t, int) and t == 0 and not allowzero:
                if i >= len(src_axes) or src_axes[i] != cand[i]:
                    return False
                continue
            if not self.match(t, want[i]):
                return False
        return True

    def op_Expand(self, node, ins):
        v, shape = ins
        if isinstance(v, Const) and isinstance(shape, Const):
            return Const(v.value * np.ones(self.const_ints(shape, "Expand shape"), dtype=v.value.dtype))
        if not isinstance(v, Const):
            self.fail(f"Expand of {type(v).__name__} is not supported")
        if np.any(v.value != 0):
            self.fail("Expand of a non-zero constant: only the exporters' zero initial state is recognized")
        target = list(self.as_dims(shape, "Expand shape").items)
        src = list(v.value.shape)
        if len(src) > len(target):
            self.fail("Expand to a lower rank")
        src = [1] * (len(target) - len(src)) + src
        dims = []
        for s, t in zip(src, target):
            if isinstance(t, int) and t == 1:
                dims.append(s)
            elif s == 1 or self.match(t, s):
                dims.append(t)
            else:
                self.fail(f"Expand of size {s} to {t}")
        return Zeros(tuple(dims), "f" if v.value.dtype.kind == "f" else "i")

    def op_ConstantOfShape(self, node, ins):
        value = self.attr(node, "value")
        value = np.zeros(1, np.float32) if value is None else np.asarray(value)
        if isinstance(ins[0], Const):
            return Const(np.full(self.const_ints(ins[0], "shape"), value.reshape(-1)[0], dtype=value.dtype))
        if np.any(value != 0):
            self.fail("ConstantOfShape with a non-zero value: only zero initial states are recognized")
        d = self.as_dims(ins[0], "ConstantOfShape shape")
        return Zeros(d.items, "f" if value.dtype.kind == "f" else "i")

    def op_Mul(self, node, ins):
        a, b = ins
        if isinstance(a, Const) and isinstance(b, Const):
            return Const(a.value * b.value)
        da, db = self.as_dims(a, "Mul input"), self.as_dims(b, "Mul input")
        if len(da.items) != len(db.items):
            self.fail("Mul of shape vectors of different lengths")
        items = []
        for x, y in zip(da.items, db.items):
            if isinstance(x, int) and isinstance(y, int):
                items.append(x * y)
            elif isinstance(x, int) and x == 1:
                items.append(y)
            elif isinstance(y, int) and y == 1:
                items.append(x)
            else:
                self.fail("Mul of dynamic sizes is not supported")
        return Dims(tuple(items), da.scalar and db.scalar)

    def op_ReduceProd(self, node, ins):
        v = ins[0]
        if isinstance(v, Const):
            return Const(np.prod(v.value, keepdims=bool(self.attr(node, "keepdims", 1))))
        d = self.as_dims(v, "ReduceProd input")
        if len(d.items) != 1 or len(ins) > 1 or self.attr(node, "axes") is not None:
            self.fail("ReduceProd is only recognized on a one-element shape vector")
        return Dims(d.items, scalar=not self.attr(node, "keepdims", 1))

    def op_Range(self, node, ins):
        start, limit, delta = ins
        if all(isinstance(v, Const) for v in ins):
            return Const(np.arange(start.value, limit.value, delta.value))
        if not (isinstance(start, Const) and int(start.value) == 0 and isinstance(delta, Const) and int(delta.value) == 1):
            self.fail("Range is only recognized as 0..n in steps of 1")
        d = self.as_dims(limit, "Range limit")
        if not d.scalar:
            self.fail("Range limit must be a scalar")
        return Arange(d.items[0])

    def op_TopK(self, node, ins):
        v = ins[0]
        if not isinstance(v, Lens) or v.perm:
            self.fail("TopK is only recognized on the lengths (torch's sort of a packed batch)")
        if self.opset < 10:
            k = Dims((self.attr(node, "k"),), scalar=True)
        else:
            k = self.as_dims(ins[1], "TopK k")
        if self.attr(node, "largest", 1) != 1 or self.attr(node, "sorted", 1) != 1 or \
                self.norm_axis(self.attr(node, "axis", -1), 1) != 0:
            self.fail("TopK must sort all lengths, largest first")
        if len(k.items) != 1 or not self.match(k.items[0], v.label):
            self.fail("TopK must keep every batch row (k = batch size)")
        return [Lens(v.name, v.label, perm=True), SortIdx(v.label)]

    def op_ScatterElements(self, node, ins):
        data, idx, upd = ins
        if self.attr(node, "reduction", "none") != "none" or self.attr(node, "axis", 0) != 0:
            self.fail("ScatterElements is only recognized as the inverse of the length sort")
        if not isinstance(idx, SortIdx):
            self.fail("ScatterElements is only recognized as the inverse of the length sort")
        n = upd.n if isinstance(upd, Arange) else None
        if isinstance(upd, Const) and np.array_equal(upd.value, np.arange(upd.value.size)):
            n = int(upd.value.size)
        d = self.dims_of(data)
        zero = isinstance(data, Zeros) or (isinstance(data, Const) and not np.any(data.value))
        if n is None or not zero or len(d) != 1 or not self.match(d[0], idx.label) or not self.match(n, idx.label):
            self.fail("ScatterElements is only recognized as the inverse of the length sort")
        return InvPerm(idx.label)

    # -- the LSTM node ---------------------------------------------------------------------
    def op_LSTM(self, node, ins):
        ins = ins + [None] * (8 - len(ins))
        X, W, R, Bv, lens, h0, c0, P = ins[:8]
        k = len(self.layers)
        direction = self.attr(node, "direction", "forward")
        if direction not in ("forward", "reverse", "bidirectional"):
            self.fail(f"attribute 'direction' has an unknown value {direction!r}")
        D = 2 if direction == "bidirectional" else 1
        layout = self.attr(node, "layout", 0)
        if layout not in (0, 1):
            self.fail(f"attribute 'layout' must be 0 or 1, got {layout}")
        for name, v in (("W", W), ("R", R), ("B", Bv), ("P", P)):
            if v is not None and not isinstance(v, Const):
                self.fail(f"input {name} must be a constant (an initializer or Constant); lstmgen embeds the weights")
        if W is None or R is None:
            self.fail("inputs W and R are required")
        Wa, Ra = W.value, R.value
        if Wa.ndim != 3 or Wa.shape[0] != D or Wa.shape[1] % 4:
            self.fail(f"input W has shape {Wa.shape}, expected ({D}, 4*hidden_size, input_size)")
        H = Wa.shape[1] // 4
        hs = self.attr(node, "hidden_size")
        if hs is not None and hs != H:
            self.fail(f"attribute 'hidden_size' is {hs} but W has 4*{H} rows")
        if Ra.shape != (D, 4 * H, H):
            self.fail(f"input R has shape {Ra.shape}, expected {(D, 4 * H, H)} (a projection or a mis-export "
                      "would show here)")
        if Bv is not None and Bv.value.shape != (D, 8 * H):
            self.fail(f"input B has shape {Bv.value.shape}, expected {(D, 8 * H)}")
        if P is not None and P.value.shape != (D, 3 * H):
            self.fail(f"input P has shape {P.value.shape}, expected {(D, 3 * H)}")
        for name, v in (("W", Wa), ("R", Ra), ("B", None if Bv is None else Bv.value), ("P", None if P is None else P.value)):
            if v is not None and v.dtype.kind != "f":
                self.fail(f"input {name} must be floating point, got {v.dtype}")

        acts = self._activations(node, D)
        clip = self.attr(node, "clip")
        input_forget = bool(self.attr(node, "input_forget", 0))
        cell = dict(direction=direction, H=H, activations=acts, clip=None if clip is None else _f32(clip),
                    input_forget=input_forget)
        if k == 0:
            self.D, self.H, self.cell = D, H, cell
        else:
            for key, val in cell.items():
                if val != self.cell[key]:
                    attr = {"H": "hidden_size"}.get(key, key)
                    self.fail(f"attribute {attr!r} ({val!r}) differs from the first LSTM's ({self.cell[key]!r}); "
                              "lstmgen's layers share one cell")

        # X: the graph input (layer 0) or the previous layer's sequence
        if k == 0:
            if not isinstance(X, Input):
                self.fail("input X of the first LSTM must come from a graph input")
            if X.slices:
                self.fail("input X is a slice of a graph input")
            if self.roles.get(X.name, "x") != "x":
                self.fail(f"graph input {X.name!r} feeds both X and an initial state")
        else:
            if not (isinstance(X, Out) and X.kind == "y"):
                self.fail("input X must be the previous LSTM's output Y (through Transpose/Reshape/Squeeze)")
            if X.layers != (k - 1,):
                self.fail(f"input X comes from LSTM layer {X.layers[0]}, expected layer {k - 1}: the LSTMs must form one chain")
        if len(X.axes) != 3:
            self.fail(f"input X has rank {len(X.axes)}, expected 3")
        feat = X.axes[-1]
        t_ax, b_ax = (X.axes[0], X.axes[1]) if layout == 0 else (X.axes[1], X.axes[0])
        if k == 0:
            if feat != ("in", X.name, self.input_rank[X.name] - 1):
                self.fail("input X's last axis is not the graph input's feature (last) axis")
            if not isinstance(t_ax, tuple) or not (b_ax == "1" or isinstance(b_ax, tuple)):
                self.fail("input X's time and batch axes do not come from the graph input")
            self.time_label, self.batch_label = t_ax, b_ax
            self.x_name = X.name
            self.roles[X.name] = "x"
            n_in = Wa.shape[2]
            if not self.match(feat, n_in):
                self.fail(f"input W expects input_size {n_in}, but the graph input has {self.static_of(feat)} features")
        else:
            if not (feat == "DH" or (feat == "H" and self.D == 1)):
                self.fail("input X's last axis is not the previous layer's merged (direction, hidden) axis")
            if Wa.shape[2] != self.D * H:
                self.fail(f"input W has {Wa.shape[2]} input features, expected {self.D * H} (the previous layer's output)")
            if t_ax != self.time_label or b_ax != self.batch_label:
                self.fail("input X's time/batch axes are not those of the previous layer's output")
        if self.time_label != "1" and self.batch_label != "1" and self.find(self.time_label) == self.find(self.batch_label):
            self.fail("the time and batch axes of X are the same axis")

        # sequence_lens
        lens_name = None
        if lens is not None:
            if not isinstance(lens, Lens):
                self.fail("input sequence_lens must be a graph input (the lengths), possibly Cast")
            if lens.perm != X.perm:
                self.fail("sequence_lens and X are not in the same row order")
            if self.batch_label == "1" or not self.match(lens.label, self.batch_label):
                self.fail("sequence_lens does not have one entry per batch row")
            lens_name = lens.name
            self.roles[lens.name] = "lengths"
        elif X.perm:
            self.fail("X's rows are sorted by length but sequence_lens is absent")
        if k > 0 and lens_name != self.lens_name:
            self.fail("sequence_lens differs from the first LSTM's (lstmgen applies one lengths to every layer)")
        self.lens_name = lens_name

        h_src = self._state(h0, "initial_h", "h", layout, X.perm)
        c_src = self._state(c0, "initial_c", "c", layout, X.perm)

        layer = dict(W=Wa, R=Ra, B=None if Bv is None else Bv.value, P=None if P is None else P.value,
                     h0=h_src, c0=c_src)
        self.layers.append(layer)

        b = self.batch_label
        if layout == 0:
            y_axes, s_axes = (self.time_label, "D", b, "H"), ("S", b, "H")
        else:
            y_axes, s_axes = (b, self.time_label, "D", "H"), (b, "S", "H")
        return [Out("y", (k,), y_axes, X.perm), Out("h", (k,), s_axes, X.perm), Out("c", (k,), s_axes, X.perm)]

    def _activations(self, node, D) -> tuple[Activation, ...]:
        names = self.attr(node, "activations")
        if names is None:
            return (Activation("Sigmoid"), Activation("Tanh"), Activation("Tanh")) * D
        if len(names) != 3 * D:
            self.fail(f"attribute 'activations' has {len(names)} entries; {3 * D} expected for this direction "
                      "(onnxruntime refuses other counts)")
        alphas = list(self.attr(node, "activation_alpha", []) or [])
        betas = list(self.attr(node, "activation_beta", []) or [])
        acts = []
        for i, name in enumerate(names):
            try:
                a = make_activation(name, f"activations[{i}]")
            except (TypeError, ValueError) as exc:
                self.fail(f"attribute 'activations': {exc}")
            alpha = _f32(alphas.pop(0)) if a.name in USES_ALPHA and alphas else a.alpha
            beta = _f32(betas.pop(0)) if a.name in USES_BETA and betas else a.beta
            acts.append(Activation(a.name, alpha, beta))
        if alphas or betas:
            self.fail("attributes 'activation_alpha'/'activation_beta' have more values than the activations use")
        return tuple(acts)

    def _state(self, v, what, kind, layout, perm) -> StateSource:
        D, H = self.D, self.H
        want_stack, want_batch = (0, 1) if layout == 0 else (1, 0)
        if v is None:
            return StateSource()
        if isinstance(v, Const):
            if np.any(v.value != 0):
                self.fail(f"input {what} is a non-zero constant; lstmgen takes the initial state at run time "
                          "(make it a graph input and pass it as hx)")
            v = Zeros(tuple(int(d) for d in v.value.shape))
        if isinstance(v, Zeros):
            d = v.dims
            ok = len(d) == 3 and self.match(d[want_stack], D) and self.match(d[2], H) and \
                self.match(d[want_batch], 1 if self.batch_label == "1" else self.batch_label)
            if not ok:
                self.fail(f"input {what} is zeros of shape {self._axes_str(d)}, expected "
                          f"{'(D, B, H)' if layout == 0 else '(B, D, H)'} with D={D}, H={H} (torch's dynamo "
                          "exporter writes proj_size models like this: it drops the projection)")
            return StateSource()
        if not isinstance(v, Input):
            self.fail(f"input {what} must be a graph input (or a slice of one) or zeros")
        if v.perm != perm:
            self.fail(f"input {what} and X are not in the same row order")
        role = self.roles.setdefault(v.name, kind)
        if role != kind:
            self.fail(f"graph input {v.name!r} is used as {role} and as {kind}")
        if len(v.axes) != 3:
            self.fail(f"input {what} has rank {len(v.axes)}, expected 3")
        stack, batch, hid = v.axes[want_stack], v.axes[want_batch], v.axes[2]
        orig = [lab for lab in v.axes if lab != "1"]
        if not isinstance(stack, tuple) or not isinstance(hid, tuple) or (batch != "1" and not isinstance(batch, tuple)):
            self.fail(f"input {what}'s axes do not come from the graph input {v.name!r}")
        if not self.match(hid, H):
            self.fail(f"input {what} has hidden size {self.static_of(hid)}, expected {H}")
        if batch == "1":
            if self.batch_label != "1":
                self.fail(f"input {what} has no batch axis but X has one")
        elif self.batch_label == "1" or not self.match(batch, self.batch_label):
            self.fail(f"input {what}'s batch axis is not X's")
        row, end = 0, None
        for lab, lo, hi in v.slices:
            if lab != stack:
                self.fail(f"input {what} slices an axis other than the layer/direction axis")
            row, end = lo, hi
        if end is None:
            size = self.static_of(stack)
            end = row + D if size is None else size
        if end - row != D:
            self.fail(f"input {what} takes rows {row}:{end} of {v.name!r}, expected {D} rows")
        pos = {lab: i for i, lab in enumerate(orig)}
        return StateSource(v.name, pos[stack], pos.get(batch), pos[hid], row)

    def _axes_str(self, axes) -> str:
        def one(a):
            if isinstance(a, tuple):
                return f"{a[1]!r}[{a[2]}]"
            return str(a)
        return "(" + ", ".join(one(a) for a in axes) + ")"

    # -- after the last node ---------------------------------------------------------------
    def finish(self) -> OnnxImport:
        L = len(self.layers)
        if L == 0:
            self.fail("the graph has no LSTM node")
        D, H = self.D, self.H
        T, Bl = self.find(self.time_label), self.batch_label

        def role(lab):
            if lab == "1":
                return "B" if Bl == "1" else "1"
            if isinstance(lab, tuple) and self.find(lab) == T:
                return "T"
            if Bl != "1" and isinstance(lab, tuple) and self.find(lab) == self.find(Bl):
                return "B"
            return lab

        outputs = {}
        for vi in self.graph.output:
            name = vi.name
            v = self.values.get(name)
            what = None
            if isinstance(v, Out) and not v.perm:
                roles = tuple(role(a) for a in v.axes)
                if v.kind == "y" and v.layers == (L - 1,):
                    what, rows = "out", None
                    if "D" not in roles:  # D == 1 squeezed away: H is the merged (D, H) axis
                        roles = tuple("DH" if r == "H" else r for r in roles)
                    allowed = {"T", "B", "D", "H", "DH", "1"}
                elif v.kind in "hc" and list(v.layers) == list(range(v.layers[0], v.layers[-1] + 1)):
                    what, rows = f"{v.kind}_n", (v.layers[0] * D, (v.layers[-1] + 1) * D)
                    if rows == (0, L * D):
                        rows = None
                    allowed = {"S", "B", "H", "1"}
                if what and set(roles) <= allowed and len(set(r for r in roles if r != "1")) == len([r for r in roles if r != "1"]):
                    outputs[name] = (what, roles, rows)
                    self._check_declared(vi, v)
                    continue
            detail = {Out: "an LSTM output that is not the last layer's sequence nor a run of layers' states",
                      Input: "a graph input"}.get(type(v), type(v).__name__)
            if isinstance(v, Out) and v.perm:
                detail = "an LSTM output still in length-sorted row order"
            self.fail(f"graph output {name!r} is {detail}; lstmgen's model returns (out, (h_n, c_n))")

        # x's layout
        n = self.input_rank[self.x_name]
        x_roles = tuple("I" if k == n - 1 else role(("in", self.x_name, k)) for k in range(n))
        unbatched = x_roles == ("T", "I")
        if x_roles not in (("T", "B", "I"), ("B", "T", "I"), ("T", "I")):
            self.fail(f"graph input {self.x_name!r} has axes {x_roles}; lstmgen takes (T, B, I), (B, T, I) or (T, I)")
        if unbatched and Bl != "1":
            self.fail(f"graph input {self.x_name!r} is 2-D but the LSTM's batch axis is not an inserted axis of size 1")
        batch_first = x_roles == ("B", "T", "I")
        for vi in self.graph.input:
            if vi.name not in self.roles and isinstance(self.values.get(vi.name), (Input, Lens)):
                self.fail(f"graph input {vi.name!r} is not used as x, an initial state or the lengths")

        acts = self.cell["activations"]
        spec = LSTMSpec(
            input_size=int(self.layers[0]["W"].shape[2]), hidden_size=H, num_layers=L,
            bias=any(lay["B"] is not None for lay in self.layers), batch_first=batch_first,
            bidirectional=D == 2, reverse=self.cell["direction"] == "reverse", activations=acts,
            peepholes=any(lay["P"] is not None for lay in self.layers), clip=self.cell["clip"],
            input_forget=self.cell["input_forget"],
        )
        weights = _weights_from_onnx(spec, self.layers)
        return OnnxImport(spec=spec, weights=weights, x=self.x_name, unbatched=unbatched, lengths=self.lens_name,
                          h0=tuple(lay["h0"] for lay in self.layers), c0=tuple(lay["c0"] for lay in self.layers),
                          outputs=outputs, notes=list(dict.fromkeys(self.notes)))

    def _check_declared(self, vi, v) -> None:
        """A graph output's declared static sizes must agree with what the LSTM produces."""
        t = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not t.HasField("shape"):
            return
        dims = self.dims_of(v)
        if len(t.shape.dim) != len(dims):
            self.fail(f"graph output {vi.name!r} is declared with rank {len(t.shape.dim)} but is rank {len(dims)}")
        for d, got in zip(t.shape.dim, dims):
            if d.HasField("dim_value") and d.dim_value > 0 and isinstance(got, int) and got != d.dim_value:
                self.fail(f"graph output {vi.name!r} is declared as {[x.dim_value or x.dim_param for x in t.shape.dim]}"
                          f" but the LSTM makes {self._axes_str(dims)}")


def _f32(value: float) -> float:
    """An ONNX float attribute (stored as float32) as the shortest decimal that rounds to it, so
    that 0.2 written by to_onnx reads back as 0.2."""
    return float(str(np.float32(value)))


def _blocks(a: np.ndarray, n: int, order: list[int], axis: int = 0) -> np.ndarray:
    parts = np.split(a, n, axis=axis)
    return np.concatenate([parts[i] for i in order], axis=axis)


def _weights_from_onnx(spec: LSTMSpec, layers: list[dict]) -> dict[str, np.ndarray]:
    H = spec.hidden_size
    out: dict[str, np.ndarray] = {}
    for k, lay in enumerate(layers):
        for d in range(spec.num_directions):
            sfx = f"l{k}" + ("_reverse" if d == 1 else "")
            out[f"weight_ih_{sfx}"] = _blocks(lay["W"][d], 4, _TORCH_FROM_ONNX).astype(np.float32)  # (4H, I_k)
            out[f"weight_hh_{sfx}"] = _blocks(lay["R"][d], 4, _TORCH_FROM_ONNX).astype(np.float32)  # (4H, H)
            if spec.bias:
                b = lay["B"][d] if lay["B"] is not None else np.zeros(8 * H)
                out[f"bias_ih_{sfx}"] = _blocks(b[:4 * H], 4, _TORCH_FROM_ONNX).astype(np.float32)
                out[f"bias_hh_{sfx}"] = _blocks(b[4 * H:], 4, _TORCH_FROM_ONNX).astype(np.float32)
            if spec.peepholes:
                p = lay["P"][d] if lay["P"] is not None else np.zeros(3 * H)
                out[f"weight_ph_{sfx}"] = _blocks(p, 3, _PH_TORCH_FROM_ONNX).astype(np.float32)
    return out


def _load(model: Any) -> Any:
    try:
        import onnx
    except ImportError:  # pragma: no cover - exercised only without onnx
        raise ImportError("importing ONNX models needs the onnx package (pip install onnx)") from None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        try:
            return onnx.load(path)
        except Exception as exc:  # onnx raises DecodeError and others
            raise ValueError(f"{path}: cannot read as an ONNX model: {exc}") from None
    if isinstance(model, (bytes, bytearray)):
        try:
            return onnx.load_from_string(bytes(model))
        except Exception as exc:  # protobuf's DecodeError and others: not a ValueError (found by fuzz/)
            raise ValueError(f"cannot read {len(model)} bytes as an ONNX model: {exc}") from None
    if isinstance(model, onnx.ModelProto):
        return model
    raise TypeError(f"expected an onnx.ModelProto, bytes or a path to a .onnx file, got {type(model).__name__}")


def import_onnx(model: Any) -> OnnxImport:
    """Import an ONNX LSTM graph: spec, weights and the graph's relation to Model (see OnnxImport)."""
    loaded = _load(model)
    importer = None
    try:
        importer = _Importer(loaded)
        return importer.run()
    except (ValueError, TypeError):
        raise
    except Exception as exc:  # onnx's helpers on malformed protos: KeyError, IndexError, ... (found by fuzz/)
        where = getattr(importer, "where", None) or "the graph"
        raise ValueError(f"malformed ONNX model at {where}: {type(exc).__name__}: {exc}") from exc


def from_onnx(model: Any) -> tuple[LSTMSpec, dict[str, np.ndarray]]:
    """(spec, weights) from an ONNX model (ModelProto or path) of one or more LSTM nodes.

    For a graph exported by torch.onnx.export, compile(spec, weights) computes the graph's own
    outputs. For a bare LSTM node (layout 0) Y (T, D, B, H) is out.reshape(T, B, D, H)
    .transpose(0, 2, 1, 3) and Y_h / Y_c are h_n / c_n; `import_onnx(...).graph_outputs` does
    this mapping for any accepted graph.
    """
    imp = import_onnx(model)
    return imp.spec, imp.weights


# ---- export -----------------------------------------------------------------------------


def to_onnx(spec: Any, weights: Any, *, with_state: bool = False, with_lengths: bool = False,
            opset: int = EXPORT_OPSET) -> Any:
    """An onnx.ModelProto computing the same as compile(spec, weights): one LSTM node per layer.

    Graph inputs: x ((T, B, I), or (B, T, I) with batch_first), and with `with_state` h0 and c0
    ((L*D, B, H)), with `with_lengths` lengths ((B,) int64). Outputs: out, h_n, c_n, laid out as
    Model returns them. Models with proj_size have no ONNX LSTM equivalent: ValueError.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from .api import as_spec
    from .weights import check_weights

    spec = as_spec(spec)
    if spec.proj_size:
        raise ValueError("to_onnx: ONNX's LSTM has no projection (proj_size > 0 cannot be exported)")
    if not 14 <= opset <= OPSET_MAX:
        raise ValueError(f"to_onnx: opset must be in [14, {OPSET_MAX}], got {opset}")
    w = check_weights(spec, weights)
    L, D, H, n_in = spec.num_layers, spec.num_directions, spec.hidden_size, spec.input_size
    nodes, inits = [], []

    def const(name: str, value: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    x_shape = ["B", "T", n_in] if spec.batch_first else ["T", "B", n_in]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    if with_state:
        inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [L * D, "B", H]) for n in ("h0", "c0")]
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"]))
        nodes.append(helper.make_node("Cast", ["lengths"], ["lengths_i32"], to=TensorProto.INT32))
    seq = "x"
    if spec.batch_first:
        nodes.append(helper.make_node("Transpose", ["x"], ["x_tbi"], perm=[1, 0, 2]))
        seq = "x_tbi"
    acts = [a for d in range(D) for a in spec.direction_activations(d)]
    attrs: dict[str, Any] = dict(hidden_size=H, activations=[a.name for a in acts],
                                 direction="bidirectional" if D == 2 else ("reverse" if spec.reverse else "forward"))
    alphas = [a.alpha for a in acts if a.name in USES_ALPHA]
    betas = [a.beta for a in acts if a.name in USES_BETA]
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    if spec.clip is not None:
        attrs["clip"] = spec.clip
    if spec.input_forget:
        attrs["input_forget"] = 1
    const("axis0", np.array([0], np.int64))
    const("merge_dh", np.array([0, 0, -1], np.int64))
    y_h, y_c = [], []
    for k in range(L):
        sfx = [f"l{k}" + ("_reverse" if d == 1 else "") for d in range(D)]
        Wn = const(f"W{k}", np.stack([_blocks(w[f"weight_ih_{s}"], 4, _ONNX_FROM_TORCH) for s in sfx]))
        Rn = const(f"R{k}", np.stack([_blocks(w[f"weight_hh_{s}"], 4, _ONNX_FROM_TORCH) for s in sfx]))
        Bn = Pn = ""
        if spec.bias:
            Bn = const(f"B{k}", np.stack([np.concatenate([_blocks(w[f"bias_ih_{s}"], 4, _ONNX_FROM_TORCH),
                                                          _blocks(w[f"bias_hh_{s}"], 4, _ONNX_FROM_TORCH)]) for s in sfx]))
        if spec.peepholes:
            Pn = const(f"P{k}", np.stack([_blocks(w[f"weight_ph_{s}"], 3, _PH_TORCH_FROM_ONNX) for s in sfx]))
        h_in = c_in = ""
        if with_state:
            const(f"rows{k}_start", np.array([k * D], np.int64))
            const(f"rows{k}_end", np.array([(k + 1) * D], np.int64))
            for src, dst in (("h0", f"h0_l{k}"), ("c0", f"c0_l{k}")):
                nodes.append(helper.make_node("Slice", [src, f"rows{k}_start", f"rows{k}_end", "axis0"], [dst]))
            h_in, c_in = f"h0_l{k}", f"c0_l{k}"
        lstm_in = [seq, Wn, Rn, Bn, "lengths_i32" if with_lengths else "", h_in, c_in, Pn]
        while lstm_in[-1] == "":
            lstm_in.pop()
        nodes.append(helper.make_node("LSTM", lstm_in, [f"Y{k}", f"Y_h{k}", f"Y_c{k}"], name=f"lstm_l{k}", **attrs))
        nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"Y{k}_tbdh"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"Y{k}_tbdh", "merge_dh"], [f"seq{k + 1}"]))
        seq = f"seq{k + 1}"
        y_h.append(f"Y_h{k}")
        y_c.append(f"Y_c{k}")
    if spec.batch_first:
        nodes.append(helper.make_node("Transpose", [seq], ["out"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [seq], ["out"]))
    nodes.append(helper.make_node("Concat", y_h, ["h_n"], axis=0))
    nodes.append(helper.make_node("Concat", y_c, ["c_n"], axis=0))
    out_shape = ["B", "T", D * H] if spec.batch_first else ["T", "B", D * H]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape),
               helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [L * D, "B", H]),
               helper.make_tensor_value_info("c_n", TensorProto.FLOAT, [L * D, "B", H])]
    graph = helper.make_graph(nodes, "lstmgen", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="lstmgen",
                              ir_version=8)
    onnx.checker.check_model(model)
    return model


__all__ = ["OnnxImport", "StateSource", "from_onnx", "import_onnx", "to_onnx"]
