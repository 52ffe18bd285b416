"""Reading one ONNX LSTM node.

Input: an LSTM node (attributes direction, layout, hidden_size, activations with their alpha and
beta, clip, input_forget) and the abstract values of its inputs X, W, R, B, sequence_lens,
initial_h, initial_c, P.
Output: the layer's raw ONNX tensors and initial-state sources appended to the importer's layers,
the cell shared by all layers (checked to agree), and the abstract values of Y, Y_h, Y_c.
"""

from __future__ import annotations

import numpy as np

from ..spec import Activation, make_activation
from .bindings import StateSource
from .gates import USES_ALPHA, USES_BETA
from .values import Const, Input, Lens, Out, ValueScope, Zeros

_LSTM_ATTRS = {"activation_alpha", "activation_beta", "activations", "clip", "direction", "hidden_size",
               "input_forget", "layout"}


class LstmNode(ValueScope):
    """op_LSTM and the readers of its activations and initial states."""

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
        for name, pos, v in (("W", 1, W), ("R", 2, R), ("B", 3, Bv), ("P", 7, P)):
            if v is not None and not isinstance(v, Const):
                self.fail(f"input {name} must be a constant (an initializer or Constant); lstmgen embeds the weights "
                          f"(a graph input is bound by import_onnx(..., constants={{{node.input[pos]!r}: array}}))")
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


def _f32(value: float) -> float:
    """An ONNX float attribute (stored as float32) as the shortest decimal that rounds to it, so
    that 0.2 written by to_onnx reads back as 0.2."""
    return float(str(np.float32(value)))
