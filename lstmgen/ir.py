"""IR: lower an LSTMSpec to a small Program of ops (what to compute, not how it runs).

Input: `LSTMSpec`. Output: a frozen `Program` (buffers, ops, cell variants) that schedule.py
turns into a ScheduledProgram. The IR knows no targets, kernels or schedules.

The split that makes lstmgen fast is explicit here: per layer and direction an
`InputProjection` (one GEMM over every row of the time window, parallel in time, biases
folded in) followed by a `Recurrence` (the only sequential op: W_hh.h, gate math, state
update, optional projection). Sizes that depend on the call (T, B) are symbolic: a buffer's
size is `rows * row_floats + batch * batch_floats`, where rows = Tw * B and Tw is the time
window (the whole sequence, or a chunk of K steps for the time-chunked schedule).
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import Activation, HeadLayer, LSTMSpec


@dataclass(frozen=True)
class Buffer:
    """A named array. role: input | output | weight | state | workspace."""

    name: str
    role: str
    shape: tuple[str, ...]  # symbolic, for printing, e.g. ("Tw", "B", "4H")
    row_floats: int = 0  # floats per (time, batch) row of the window
    batch_floats: int = 0  # floats per batch row, independent of time

    def __str__(self) -> str:
        return f"{self.role:9s} {self.name}[{', '.join(self.shape)}]"


@dataclass(frozen=True)
class CellVariant:
    """Everything that distinguishes one LSTM cell from another; the torch cell is the default."""

    activations: tuple[Activation, Activation, Activation]  # f (gates i, f, o), g (cell), h (output)
    peepholes: bool = False
    clip: float | None = None
    input_forget: bool = False
    projection: bool = False

    def __str__(self) -> str:
        parts = ["act=" + ",".join(str(a) for a in self.activations)]
        if self.peepholes:
            parts.append("peepholes")
        if self.clip is not None:
            parts.append(f"clip={self.clip:g}")
        if self.input_forget:
            parts.append("input_forget")
        if self.projection:
            parts.append("proj")
        return " ".join(parts)


@dataclass(frozen=True)
class InputProjection:
    """dst[t, b, :] = W_ih . src[t, b, :] + (b_ih + b_hh) for every row of the window at once."""

    layer: int
    direction: int
    src: str
    src_offset: int  # first feature of src this layer reads (always 0; kept for clarity)
    in_size: int
    dst: str

    def __str__(self) -> str:
        return f"InputProjection  l{self.layer}d{self.direction}: {self.dst}[Tw,B,4H] = {self.src}[Tw,B,{self.in_size}] . W_ih^T + b"


@dataclass(frozen=True)
class Recurrence:
    """The sequential part: for each step, gates += W_hh.h_{t-1}; cell; write h_t into dst."""

    layer: int
    direction: int
    gates_in: str
    dst: str
    dst_offset: int  # feature offset of this direction in dst (direction * R)
    reverse: bool
    variant: int  # index into Program.variants
    state: int  # index into h_n / c_n: layer * D + direction

    def __str__(self) -> str:
        arrow = "t = Tw-1 .. 0" if self.reverse else "t = 0 .. Tw-1"
        return (
            f"Recurrence       l{self.layer}d{self.direction}: {arrow}; gates = {self.gates_in}[t] + h . W_hh^T; "
            f"cell v{self.variant}; {self.dst}[t, :, {self.dst_offset}:+R] = h  (state {self.state})"
        )


@dataclass(frozen=True)
class Head:
    """The layers after the LSTM, on every row of the window: dst[t, b, :] = head(src[t, b, :]).

    src (the last layer's output) is workspace and may be overwritten (activations run in place);
    Linear outputs before the last Linear go through `scratch` ((B, scratch_floats), two halves
    of `half` floats used in turn)."""

    layers: tuple[HeadLayer, ...]
    src: str
    in_size: int
    dst: str
    scratch: str | None
    half: int  # floats per half of a batch row's scratch (widest Linear output before the last)

    def __str__(self) -> str:
        return f"Head             {self.dst}[Tw,B,:] = {' -> '.join(map(str, self.layers))} ({self.src}[Tw,B,{self.in_size}])"


Op = InputProjection | Recurrence | Head


@dataclass(frozen=True)
class Program:
    """What to compute, independent of how it runs (schedule.py decides that)."""

    spec: LSTMSpec
    buffers: tuple[Buffer, ...]
    ops: tuple[Op, ...]
    variants: tuple[CellVariant, ...]

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)

    def __str__(self) -> str:
        lines = [f"Program ({self.spec.summary()})", "buffers:"]
        lines += [f"  {b}" for b in self.buffers]
        lines.append("cell variants:")
        lines += [f"  v{i}: {v}" for i, v in enumerate(self.variants)]
        lines.append("ops (per time window):")
        lines += [f"  {op}" for op in self.ops]
        return "\n".join(lines)


def lower(spec: LSTMSpec) -> Program:
    """LSTMSpec -> Program: per layer, the InputProjection(s) then the Recurrence(s)."""
    H, R, D, L = spec.hidden_size, spec.output_size, spec.num_directions, spec.num_layers
    G = 4 * H
    last = "lstm_out" if spec.head else "y"  # with a head the last layer writes workspace
    buffers = [
        Buffer("x", "input", ("T", "B", str(spec.input_size))),
        Buffer("y", "output", ("T", "B", str(spec.head_output_size))),
        Buffer("h", "state", (str(L * D), "B", str(R))),
        Buffer("c", "state", (str(L * D), "B", str(H))),
    ]
    variants: list[CellVariant] = []
    ops: list[Op] = []
    for layer in range(L):
        src = "x" if layer == 0 else f"out{layer - 1}"
        dst = last if layer == L - 1 else f"out{layer}"
        if dst != "y":
            buffers.append(Buffer(dst, "workspace", ("Tw", "B", str(D * R)), row_floats=D * R))
        for d in range(D):
            variant = CellVariant(
                activations=spec.direction_activations(d),
                peepholes=spec.peepholes,
                clip=spec.clip,
                input_forget=spec.input_forget,
                projection=spec.proj_size > 0,
            )
            if variant not in variants:
                variants.append(variant)
            gates = f"gates_l{layer}d{d}"
            buffers.append(Buffer(gates, "workspace", ("Tw", "B", str(G)), row_floats=G))
            ops.append(InputProjection(layer, d, src, 0, spec.layer_input_size(layer), gates))
            ops.append(
                Recurrence(
                    layer,
                    d,
                    gates,
                    dst,
                    d * R,
                    reverse=(d == 1) or spec.reverse,
                    variant=variants.index(variant),
                    state=layer * D + d,
                )
            )
    if spec.proj_size:
        buffers.append(Buffer("h_full", "workspace", ("B", str(H)), batch_floats=H))
    if spec.head:
        # every Linear but the last writes scratch, alternating halves (the last writes y)
        inner = [h.out_features for _, h in spec.head_linears()[:-1]]
        half = max(inner, default=0)
        floats = half * min(len(inner), 2)
        scratch = "head_tmp" if floats else None
        if scratch:
            buffers.append(Buffer(scratch, "workspace", ("B", str(floats)), batch_floats=floats))
        ops.append(Head(spec.head, last, D * R, "y", scratch, half))
    return Program(spec, tuple(buffers), tuple(ops), tuple(variants))
