"""How the graph's inputs and outputs bind to Model's arguments and results.

Input: the graph's declared inputs (each becomes x, a state input or the lengths) and, after the
last node, the abstract values of its declared outputs.
Output: `OnnxImport`, the import's result: spec, weights, and the mapping between graph feeds /
outputs and Model's (x, hx, lengths) / (out, (h_n, c_n)), with `StateSource` per layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..spec import LSTMSpec
from .gates import _weights_from_onnx
from .head import Headed
from .values import Input, Lens, Out, ValueScope, _tensor_type_kind


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
        canon = {"out": (out.reshape(T, B, D, H), ("T", "B", "D", "H")) if not spec.head else (out, ("T", "B", "O")),
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



class Bindings(ValueScope):
    """graph_input (before the nodes) and finish (after them) of the importer."""

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
        heads = {}  # graph output name -> its Headed value
        for vi in self.cut.outputs:
            name = vi.name
            v = self.values.get(name)
            what = None
            if isinstance(v, Headed) and v.layers and not v.base.perm and v.base.layers == (L - 1,):
                roles = tuple(role(a) for a in v.base.axes[:-1]) + ("O",)
                if set(roles) <= {"T", "B", "O", "1"} and len([r for r in roles if r != "1"]) == len(set(r for r in roles if r != "1")):
                    outputs[name] = ("out", roles, None)
                    heads[name] = v
                    self._check_head_declared(vi, v)
                    continue
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
                      Input: "a graph input", Headed: "a head on an LSTM output that is not the last layer's sequence"
                      }.get(type(v), type(v).__name__)
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
        for vi in self.cut.inputs:
            if vi.name not in self.roles and isinstance(self.values.get(vi.name), (Input, Lens)):
                self.fail(f"graph input {vi.name!r} is not used as x, an initial state or the lengths")

        head, head_arrays = (), ()
        if heads:
            first = next(iter(heads.values()))
            if any(h.layers != first.layers or any(not _same(a, b) for a, b in zip(h.arrays, first.arrays))
                   for h in heads.values()):
                self.fail(f"graph outputs {sorted(heads)} apply different heads; lstmgen's model has one head")
            plain = [n for n, (what, _, _) in outputs.items() if what == "out" and n not in heads]
            if plain:
                self.fail(f"graph output {plain[0]!r} is the LSTM's sequence without the head that "
                          f"{next(iter(heads))!r} applies; lstmgen's model returns one y (cut the graph to choose)")
            head, head_arrays = first.layers, first.arrays
        acts = self.cell["activations"]
        spec = LSTMSpec(
            input_size=int(self.layers[0]["W"].shape[2]), hidden_size=H, num_layers=L,
            bias=any(lay["B"] is not None for lay in self.layers), batch_first=batch_first,
            bidirectional=D == 2, reverse=self.cell["direction"] == "reverse", activations=acts,
            peepholes=any(lay["P"] is not None for lay in self.layers), clip=self.cell["clip"],
            input_forget=self.cell["input_forget"], head=head,
        )
        weights = _weights_from_onnx(spec, self.layers)
        for i, arrays in enumerate(head_arrays):  # torch.nn.Sequential's names
            if arrays is not None:
                weights[f"head.{i}.weight"] = arrays[0]
                if arrays[1] is not None:
                    weights[f"head.{i}.bias"] = arrays[1]
        return OnnxImport(spec=spec, weights=weights, x=self.x_name, unbatched=unbatched, lengths=self.lens_name,
                          h0=tuple(lay["h0"] for lay in self.layers), c0=tuple(lay["c0"] for lay in self.layers),
                          outputs=outputs, notes=list(dict.fromkeys(self.notes)))

    def _check_head_declared(self, vi, v: Headed) -> None:
        """A head output's declared rank and static sizes must agree with the head's."""
        t = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not t.HasField("shape"):
            return
        dims = tuple(self.label_dim(a, v.base) for a in v.base.axes[:-1]) + (v.width,)
        if len(t.shape.dim) != len(dims):
            self.fail(f"graph output {vi.name!r} is declared with rank {len(t.shape.dim)} but is rank {len(dims)}")
        for d, got in zip(t.shape.dim, dims):
            if d.HasField("dim_value") and d.dim_value > 0 and isinstance(got, int) and got != d.dim_value:
                self.fail(f"graph output {vi.name!r} is declared as {[x.dim_value or x.dim_param for x in t.shape.dim]}"
                          f" but the head makes {self._axes_str(dims)}")

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


def _same(a, b) -> bool:
    """Two head layers' arrays (None, or (weight, bias)) are equal."""
    if a is None or b is None:
        return a is b
    return all((x is None and y is None) or (x is not None and y is not None and np.array_equal(x, y)) for x, y in zip(a, b))
