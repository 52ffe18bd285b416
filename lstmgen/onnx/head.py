"""The head after the LSTM: torch's export of Linear / ReLU / Tanh / Sigmoid / Softmax layers.

Input: one ONNX node of a head op (MatMul, Add, Gemm, Relu, Tanh, Sigmoid, Softmax) and the abstract
values of its inputs. Output: a `Headed` value, the last LSTM layer's sequence output with the
layers read so far, which bindings.finish turns into spec.head and its weights.

torch exports Linear on the LSTM's (T, B, D*H) output as MatMul(y, W^T) then Add(bias) (Gemm
for 2-D inputs); the activations follow as their own nodes. A head starts on the LSTM output whose
last axis is the merged direction * hidden axis, and every op works on the last axis only;
anything else (a MatMul on another axis, an Add of a non-constant, Softmax over time) is refused
naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .values import Const, Out, ValueScope

_HEAD_ATTRS: dict[str, set[str]] = {
    "MatMul": set(), "Add": set(), "Gemm": {"alpha", "beta", "transA", "transB"},
    "Relu": set(), "Tanh": set(), "Sigmoid": set(), "Softmax": {"axis"},
}
_ACTS = {"Relu": "ReLU", "Tanh": "Tanh", "Sigmoid": "Sigmoid", "Softmax": "Softmax"}


@dataclass(frozen=True)
class Headed:
    """The last LSTM layer's output `base` mapped by `layers` (spec head layer dicts), with each
    Linear's arrays in `arrays` (weight (out, in), bias (out,) or None), in layer order."""

    base: Out
    layers: tuple
    arrays: tuple  # per layer: (weight, bias) for a Linear, None otherwise
    width: int  # features of the last axis now

    @property
    def axes(self) -> tuple:
        return self.base.axes[:-1] + ("O",)


class HeadOps(ValueScope):
    """op_<Type>(node, ins) for the head ops; the importer dispatches to them."""

    def _head_start(self, v, what: str) -> Headed:
        if isinstance(v, Headed):
            return v
        if isinstance(v, Out) and v.kind == "y" and not v.perm and v.axes and (
                v.axes[-1] == "DH" or (v.axes[-1] == "H" and "D" not in v.axes and self.D == 1)):
            return Headed(v, (), (), self.D * self.H)
        if isinstance(v, Out) and v.kind == "y":
            self.fail(f"{what} of an LSTM output with axes {self._axes_str(v.axes)}: a head reads the output "
                      "with the direction and hidden axes merged last, (T, B, D*H)")
        self.fail(f"{what} of {type(v).__name__}: lstmgen reads these ops only as a head after the LSTM output")

    def _linear(self, h: Headed, weight: np.ndarray, bias: np.ndarray | None) -> Headed:
        n_out, n_in = weight.shape
        if n_in != h.width:
            self.fail(f"a Linear of {n_in} input features on {h.width} features")
        layer = {"type": "Linear", "in_features": int(n_in), "out_features": int(n_out), "bias": bias is not None}
        return Headed(h.base, h.layers + (layer,), h.arrays + ((weight, bias),), int(n_out))

    def _const_matrix(self, v, what: str) -> np.ndarray:
        if not isinstance(v, Const) or v.value.ndim != 2 or v.value.dtype.kind != "f":
            self.fail(f"{what} must be a constant float matrix (a Linear's weight)")
        return np.asarray(v.value, dtype=np.float32)

    def op_MatMul(self, node, ins):
        h = self._head_start(ins[0], "MatMul")
        w = self._const_matrix(ins[1], "MatMul's second input")  # (in, out): torch's W^T
        return self._linear(h, np.ascontiguousarray(w.T), None)

    def op_Add(self, node, ins):
        a, b = ins
        if isinstance(a, Const) and not isinstance(b, Const):
            a, b = b, a
        if not isinstance(a, Headed) or not a.layers or a.layers[-1]["type"] != "Linear" or a.layers[-1]["bias"]:
            self.fail("Add is read only as the bias of a Linear (MatMul then Add of a constant) after the LSTM output")
        if not isinstance(b, Const) or b.value.dtype.kind != "f":
            self.fail("Add after a MatMul must add a constant float bias")
        bias = np.asarray(b.value, dtype=np.float32)
        if bias.ndim < 1 or bias.shape[-1] != a.width or any(d != 1 for d in bias.shape[:-1]) or bias.ndim > len(a.axes):
            self.fail(f"Add of shape {list(bias.shape)} after a Linear of {a.width} outputs is not its bias")
        weight, _ = a.arrays[-1]
        layer = {**a.layers[-1], "bias": True}
        return Headed(a.base, a.layers[:-1] + (layer,), a.arrays[:-1] + ((weight, bias.reshape(-1)),), a.width)

    def op_Gemm(self, node, ins):
        h = self._head_start(ins[0], "Gemm")
        if len(h.axes) != 2:
            self.fail("Gemm reads a 2-D input; this LSTM output has rank " + str(len(h.axes)))
        if self.attr(node, "transA", 0) or self.attr(node, "alpha", 1.0) != 1.0 or self.attr(node, "beta", 1.0) != 1.0:
            self.fail("Gemm is read as a Linear only with transA=0, alpha=1 and beta=1")
        w = self._const_matrix(ins[1], "Gemm's B")
        weight = w if self.attr(node, "transB", 0) else np.ascontiguousarray(w.T)  # (out, in)
        bias = None
        if len(ins) > 2 and ins[2] is not None:
            c = ins[2]
            if not isinstance(c, Const) or c.value.size != weight.shape[0] or c.value.dtype.kind != "f":
                self.fail("Gemm's C must be a constant bias of out_features values")
            bias = np.asarray(c.value, dtype=np.float32).reshape(-1)
        return self._linear(h, weight, bias)

    def _activation(self, node, ins):
        h = self._head_start(ins[0], node.op_type)
        if node.op_type == "Softmax":
            rank = len(h.axes)
            axis = self.attr(node, "axis", -1 if self.opset >= 13 else 1)
            if self.norm_axis(axis, rank) != rank - 1:
                self.fail(f"Softmax over axis {axis} of a rank-{rank} output: a head's Softmax is over the features "
                          "(the last axis)")
        layer = {"type": _ACTS[node.op_type]}
        return Headed(h.base, h.layers + (layer,), h.arrays + (None,), h.width)

    op_Relu = op_Tanh = op_Sigmoid = op_Softmax = _activation
