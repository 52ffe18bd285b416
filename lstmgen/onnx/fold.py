"""Folding of the glue ops exporters write around LSTM nodes.

Input: one ONNX node of a glue op (Identity, Constant, Cast, Shape, Gather, Unsqueeze, Squeeze,
Concat, Slice, Transpose, Reshape, Expand, ConstantOfShape, Mul, ReduceProd, Range, TopK,
ScatterElements) and the abstract values (values.py) of its inputs.
Output: the abstract values of its outputs: constants and shape vectors are computed, LSTM data
(graph inputs, LSTM outputs, zero states, the length sort) is re-labelled; anything else is
refused with ValueError naming the node.
"""

from __future__ import annotations

import numpy as np

from .values import (
    Arange,
    Const,
    Dims,
    Input,
    InvPerm,
    Lens,
    Out,
    SortIdx,
    ValueScope,
    Zeros,
    _tensor_type_kind,
)

_GLUE_ATTRS: dict[str, set[str]] = {
    "Identity": set(), "Constant": {"value", "value_float", "value_floats", "value_int", "value_ints"},
    "Cast": {"to", "saturate", "round_mode"}, "Shape": {"start", "end"}, "Gather": {"axis"},
    "Unsqueeze": {"axes"}, "Squeeze": {"axes"}, "Concat": {"axis"}, "Slice": {"starts", "ends", "axes"},
    "Transpose": {"perm"}, "Reshape": {"allowzero"}, "Expand": set(), "ConstantOfShape": {"value"},
    "Mul": set(), "ReduceProd": {"keepdims", "axes", "noop_with_empty_axes"}, "Range": set(),
    "TopK": {"axis", "largest", "sorted", "k"}, "ScatterElements": {"axis", "reduction"},
}


class GlueOps(ValueScope):
    """op_<Type>(node, ins) -> value(s) for each glue op; the importer dispatches to them."""

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
                if lab == "1" or (lab == "D" and self.D == 1) or (isinstance(lab, tuple) and self.match(lab, 1)) \
                        or (lab == "S" and len(v.layers) * self.D == 1):  # Y_h of one forward/reverse layer
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
