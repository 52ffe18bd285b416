"""IR: lower an LSTMSpec to a small Program of ops, then schedule and plan its memory.

Input: `LSTMSpec` (+ `Schedule` options). Output: a frozen `Program` that codegen renders.

The split that makes lstmgen fast is explicit here: per layer and direction an
`InputProjection` (one GEMM over every row of the time window, parallel in time, biases
folded in) followed by a `Recurrence` (the only sequential op: W_hh.h, gate math, state
update, optional projection). Sizes that depend on the call (T, B) are symbolic: a buffer's
size is `rows * row_floats + batch * batch_floats`, where rows = Tw * B and Tw is the time
window (the whole sequence, or a chunk of K steps for the time-chunked schedule).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

from .kernels import ISAS, check_math
from .spec import Activation, LSTMSpec

TimeLoop = Literal["looped", "unrolled"]
# Fully unrolled code grows with seq_len * layers * directions; past this many step bodies the
# C takes minutes to compile and bloats the instruction cache for no gain.
MAX_UNROLLED_STEPS = 1024
# A looped program of one unidirectional layer on vector kernels with no fixed chunk picks its
# time window at run time: the whole sequence unless its gate rows (T * B * row_floats) pass
# WINDOW_FLOATS (1 MiB), then as many steps as fit (at least one). The projection's output is then
# still in cache when the recurrence reads it, and the workspace stays bounded whatever T is.
WINDOW_FLOATS = 1 << 18


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


Op = InputProjection | Recurrence


@dataclass(frozen=True)
class Schedule:
    """How the Program runs; every schedule computes the same numbers."""

    time_loop: TimeLoop = "looped"
    seq_len: int | None = None  # fixed T (required for unrolled; optional otherwise)
    chunk: int = 0  # time-chunk K (0 = whole sequence); unidirectional models only
    max_batch: int | None = None  # fixed B for static-buffer builds
    target: str = "portable"  # kernel ISA: portable | avx2 | avx512 | neon (kernels.py)
    math: str = "libm"  # sigmoid/tanh: libm | approx (kernels.py)

    def __str__(self) -> str:
        s = f"time_loop={self.time_loop}"
        if self.seq_len:
            s += f" seq_len={self.seq_len}"
        s += f" chunk={self.chunk or 'whole'}"
        if self.max_batch:
            s += f" max_batch={self.max_batch}"
        if self.target != "portable":
            s += f" target={self.target}"
        if self.math != "libm":
            s += f" math={self.math}"
        return s


@dataclass(frozen=True)
class Slot:
    """A region of the workspace; buffers with disjoint lifetimes share one slot."""

    offset_rows: int  # floats per window row before this slot
    row_floats: int
    buffers: tuple[str, ...]


@dataclass(frozen=True)
class Program:
    spec: LSTMSpec
    buffers: tuple[Buffer, ...]
    ops: tuple[Op, ...]
    variants: tuple[CellVariant, ...]
    schedule: Schedule = field(default_factory=Schedule)
    slots: tuple[Slot, ...] = ()  # filled by plan_memory
    batch_floats: int = 0  # per-batch-row workspace not tied to time (projection scratch)

    def buffer(self, name: str) -> Buffer:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)

    def slot_of(self, name: str) -> int:
        for i, s in enumerate(self.slots):
            if name in s.buffers:
                return i
        raise KeyError(name)

    @property
    def row_floats(self) -> int:
        """Workspace floats per (time, batch) row of the window."""
        return sum(s.row_floats for s in self.slots)

    @property
    def auto_window(self) -> bool:
        """Is the time window chosen at run time (see WINDOW_FLOATS)?"""
        s, spec = self.schedule, self.spec
        return (s.time_loop == "looped" and not s.chunk and s.target != "portable" and spec.num_layers == 1
                and spec.num_directions == 1 and self.row_floats > 0)

    def window(self, T: int, B: int) -> int:
        """Steps per time window for T steps and B rows (what the generated C computes too)."""
        if self.schedule.chunk:
            return min(T, self.schedule.chunk)
        if self.auto_window:
            fit = WINDOW_FLOATS // (B * self.row_floats)
            return T if fit >= T else max(1, fit)
        return T

    def workspace_floats(self, T: int, B: int) -> int:
        return self.window(T, B) * B * self.row_floats + B * self.batch_floats

    def __str__(self) -> str:
        lines = [f"Program ({self.spec.summary()}; {self.schedule})", "buffers:"]
        lines += [f"  {b}" + (f"  -> slot {self.slot_of(b.name)}" if self.slots and b.role == "workspace" and b.row_floats else "") for b in self.buffers]
        lines.append("cell variants:")
        lines += [f"  v{i}: {v}" for i, v in enumerate(self.variants)]
        lines.append("ops (per time window):")
        lines += [f"  {op}" for op in self.ops]
        if self.slots:
            if self.schedule.chunk:
                tw = f"min(T, {self.schedule.chunk})"
            elif self.auto_window:
                tw = f"T, or the most steps whose Tw*B*{self.row_floats} stay within {WINDOW_FLOATS} floats"
            else:
                tw = "T"
            lines.append(f"workspace: Tw*B*{self.row_floats} + B*{self.batch_floats} floats (Tw = {tw})")
        return "\n".join(lines)


def lower(spec: LSTMSpec, schedule: Schedule | None = None) -> Program:
    """LSTMSpec -> Program: per layer, the InputProjection(s) then the Recurrence(s)."""
    schedule = schedule or Schedule()
    H, R, D, L = spec.hidden_size, spec.output_size, spec.num_directions, spec.num_layers
    G = 4 * H
    buffers = [
        Buffer("x", "input", ("T", "B", str(spec.input_size))),
        Buffer("y", "output", ("T", "B", str(D * R))),
        Buffer("h", "state", (str(L * D), "B", str(R))),
        Buffer("c", "state", (str(L * D), "B", str(H))),
    ]
    variants: list[CellVariant] = []
    ops: list[Op] = []
    for layer in range(L):
        src = "x" if layer == 0 else f"out{layer - 1}"
        dst = "y" if layer == L - 1 else f"out{layer}"
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
    batch_floats = 0
    if spec.proj_size:
        buffers.append(Buffer("h_full", "workspace", ("B", str(H)), batch_floats=H))
        batch_floats = H
    return Program(spec, tuple(buffers), tuple(ops), tuple(variants), schedule, batch_floats=batch_floats)


def check_schedule(spec: LSTMSpec, schedule: Schedule) -> None:
    """Raise ValueError when a schedule cannot run this spec."""
    if schedule.time_loop not in ("looped", "unrolled"):
        raise ValueError(f"time_loop must be 'looped' or 'unrolled', got {schedule.time_loop!r}")
    for name in ("seq_len", "max_batch"):
        v = getattr(schedule, name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive int or None, got {v!r}")
    if isinstance(schedule.chunk, bool) or not isinstance(schedule.chunk, int) or schedule.chunk < 0:
        raise ValueError(f"chunk must be an int >= 0 (0 = whole sequence), got {schedule.chunk!r}")
    if schedule.time_loop == "unrolled":
        if schedule.seq_len is None:
            raise ValueError("time_loop='unrolled' needs a fixed seq_len")
        bodies = schedule.seq_len * spec.num_layers * spec.num_directions
        if bodies > MAX_UNROLLED_STEPS:
            raise ValueError(
                f"time_loop='unrolled' would emit {bodies} step bodies (seq_len={schedule.seq_len} x "
                f"layers={spec.num_layers} x directions={spec.num_directions}); the cap is {MAX_UNROLLED_STEPS}. "
                "Use time_loop='looped'."
            )
        if schedule.chunk:
            raise ValueError("time_loop='unrolled' runs the whole sequence; chunk must be 0")
    if schedule.target not in ISAS:
        raise ValueError(f"schedule target must be one of {', '.join(ISAS)} ('native' is resolved by compile/generate), got {schedule.target!r}")
    check_math(schedule.math)
    if schedule.chunk and spec.bidirectional:
        raise ValueError("time chunking needs a unidirectional model: a bidirectional layer reads the whole sequence of the layer below")


def plan_memory(program: Program) -> Program:
    """Give workspace buffers offsets; buffers whose lifetimes do not overlap share a slot.

    Lifetime of a buffer = [first op that writes it, last op that reads it] in program order.
    First-fit over slots; a slot's size is the largest buffer it holds.
    """
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, op in enumerate(program.ops):
        if isinstance(op, InputProjection):
            reads, writes = [op.src], [op.dst]
        else:
            reads, writes = [op.gates_in], [op.dst]
        for name in writes:
            first.setdefault(name, i)
            last[name] = max(last.get(name, i), i)
        for name in reads:
            last[name] = max(last.get(name, i), i)
    slot_bufs: list[list[str]] = []
    slot_size: list[int] = []
    slot_free_after: list[int] = []
    for b in program.buffers:
        if b.role != "workspace" or not b.row_floats:
            continue
        start, end = first[b.name], last[b.name]
        for s in range(len(slot_bufs)):
            if slot_free_after[s] < start:
                slot_bufs[s].append(b.name)
                slot_size[s] = max(slot_size[s], b.row_floats)
                slot_free_after[s] = end
                break
        else:
            slot_bufs.append([b.name])
            slot_size.append(b.row_floats)
            slot_free_after.append(end)
    slots, offset = [], 0
    for names, size in zip(slot_bufs, slot_size):
        slots.append(Slot(offset, size, tuple(names)))
        offset += size
    return replace(program, slots=tuple(slots))


def build_program(spec: LSTMSpec, schedule: Schedule | None = None) -> Program:
    """lower + check the schedule + plan memory: what codegen renders."""
    schedule = schedule or Schedule()
    check_schedule(spec, schedule)
    return plan_memory(lower(spec, schedule))
