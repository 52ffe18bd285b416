"""Schedule: a Program and its Schedule options -> a frozen ScheduledProgram.

Input: `ir.Program` (from `ir.lower`), a `Schedule` (time loop, fixed lengths, chunk, target ISA,
math) and optional kernel-plan overrides. Output: `ScheduledProgram` — everything codegen, the
runtime and the embedded folder read, decided once here: the validated schedule, the kernel plan
(vector width, register tiles, K chunk, partial sums, the portable kernels' panel rows; kernels.plan's
heuristics unless overridden),
the weight layout it implies, the workspace's memory plan, and the symbolic sizes (time window,
workspace floats) that Python evaluates and the C prints from the same formula (sizes.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from . import kernels
from .ir import Buffer, CellVariant, Head, InputProjection, Op, Program, lower
from .kernels import ISAS, KernelPlan, check_math
from .sizes import B, Call, Clamp, Const, Min, Named, Size, T, Var, Wide
from .spec import LSTMSpec

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
class Schedule:
    """How the Program runs; every schedule computes the same numbers."""

    time_loop: TimeLoop = "looped"
    seq_len: int | None = None  # fixed T (required for unrolled; optional otherwise)
    chunk: int = 0  # time-chunk K (0 = whole sequence); unidirectional models only
    max_batch: int | None = None  # fixed B for static-buffer builds
    target: str = "portable"  # kernel ISA: portable | avx2 | avx512 | neon (kernels.py)
    math: str = "libm"  # sigmoid/tanh: libm | approx (kernels.py)
    weights: str = "float32"  # storage of the weight matrices: kernels.WEIGHT_DTYPES

    def __str__(self) -> str:
        s = f"time_loop={self.time_loop}"
        if self.seq_len:
            s += f" seq_len={self.seq_len}"
        s += f" chunk={self.chunk or 'whole'}"
        if self.max_batch:
            s += f" max_batch={self.max_batch}"
        if self.target != "portable":
            s += f" target={self.target}"
        s += f" math={self.math}"
        if self.weights != "float32":
            s += f" weights={self.weights}"
        return s


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


# ---- the kernel plan --------------------------------------------------------------------------

# Plan fields a caller may set (`plan={...}` on compile/generate); the others follow from the
# schedule (isa, math) or from these (vector_cell, nb1).
PLAN_KNOBS = ("vw", "mr", "mrs", "tiles1", "ks", "kc", "panel", "vnni", "idot", "pmadd")
MAX_PARTIAL_SUMS = 4  # ks values the recurrence kernels implement (added pairwise: codegen._pairwise)
# Rows per register tile and gate blocks per one-row tile the emitter can name (c{row}{block}{vector});
# past the architectural registers a tile is legal, only slower (the compiler spills).
MAX_TILE = 9


def make_plan(spec: LSTMSpec, schedule: Schedule, overrides: Mapping[str, Any] | None = None) -> KernelPlan:
    """kernels.plan's choice for this spec and schedule, with `overrides` applied and checked.

    Overrides exist so tests can sweep every tile shape and show the outputs do not change
    (only ks, the number of partial sums, changes the order of additions)."""
    static = schedule.max_batch is not None  # a static-memory (embedded) build: portable kernels for a microcontroller
    plan = kernels.plan(spec, schedule.target, schedule.math, static=static)
    if not overrides:
        for knob in kernels.X86_INTEGER:
            if kernels.integer_default(knob, plan, spec, schedule.weights):
                return kernels.with_integer(knob, plan, spec.hidden_size // plan.vw)
        if kernels.idot_default(plan, spec, schedule.weights):
            return dataclasses.replace(plan, idot=1)
        return plan
    if not isinstance(overrides, Mapping):
        raise TypeError(f"plan must be a dict of kernel-plan fields, got {type(overrides).__name__}")
    unknown = sorted(set(overrides) - set(PLAN_KNOBS))
    if unknown:
        raise ValueError(f"plan: unknown field(s) {', '.join(map(repr, unknown))}; the fields are {', '.join(PLAN_KNOBS)}")
    for name, v in overrides.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"plan: {name} must be an int >= 0, got {v!r}")
    H = spec.hidden_size
    vw = overrides.get("vw", plan.vw)
    if vw != plan.vw:
        widths = kernels.vector_widths(schedule.target)
        if vw and vw not in widths:
            raise ValueError(f"plan: vw={vw} is not a vector width of {schedule.target} (widths: {widths or 'none'}; 0 = scalar kernels)")
        if vw and H % vw:
            raise ValueError(f"plan: vw={vw} does not divide hidden_size={H}")
        base = kernels.plan_for_width(spec, schedule.target, schedule.math, vw, static=static)
    else:
        base = plan
    integer = ""  # the x86 integer kernels this plan runs int8 on, if any
    asked = [knob for knob in kernels.X86_INTEGER if overrides.get(knob)]  # knob=1 given: no other is a default
    if len(asked) > 1:
        raise ValueError(f"plan: {'=1 and '.join(asked)}=1 are kernels for the same products: ask for one")
    for knob in kernels.X86_INTEGER:
        on = overrides.get(knob, int(not asked and not integer and kernels.integer_default(knob, base, spec, schedule.weights)))
        if on not in (0, 1):
            raise ValueError(f"plan: {knob} must be 0 or 1, got {on!r}")
        if on and not kernels.integer_fits(knob, base, spec, schedule.weights):
            raise ValueError(f"plan: {knob}=1 needs weights_dtype='int8' on {kernels.integer_needs(knob)} and inputs of at most "
                             f"{kernels.X86_INTEGER[knob][0][2]} (got {schedule.weights}, {base.isa}, vw={base.vw}, "
                             f"{kernels.max_input(spec)})")
        if on:
            base, integer = kernels.with_integer(knob, base, H // base.vw), knob
    if not base.vw:
        extra = sorted(set(overrides) - {"vw", "panel", "vnni", "idot", "pmadd"})
        if extra:
            raise ValueError(f"plan: {', '.join(extra)} apply to vector kernels only (vw={base.vw})")
        idot = overrides.get("idot", int(kernels.idot_default(base, spec, schedule.weights)))
        panel = overrides.get("panel", base.panel)
        if not 1 <= panel <= kernels.MAX_PANEL:
            raise ValueError(f"plan: panel must be in 1..{kernels.MAX_PANEL} (rows per panel of the portable kernels), got {panel}")
        if idot not in (0, 1):
            raise ValueError(f"plan: idot must be 0 or 1, got {idot!r}")
        if idot and not (schedule.weights == "int8" and panel <= kernels.MAX_NAMED_PANEL
                         and kernels.max_input(spec) <= kernels.IDOT_KMAX):
            raise ValueError(f"plan: idot=1 needs weights_dtype='int8', panel <= {kernels.MAX_NAMED_PANEL} (named sums) and inputs "
                             f"of at most {kernels.IDOT_KMAX} (got {schedule.weights}, panel={panel}, {kernels.max_input(spec)})")
        return dataclasses.replace(base, panel=panel, idot=idot)
    if overrides.get("idot"):
        raise ValueError(f"plan: idot=1 applies to the portable kernels only (vw={base.vw})")
    if "panel" in overrides:
        raise ValueError(f"plan: panel applies to the portable kernels only (vw={base.vw}; vw=0 selects them)")
    nb = H // base.vw
    ks = overrides.get("ks", base.ks)
    if not 1 <= ks <= MAX_PARTIAL_SUMS:
        raise ValueError(f"plan: ks must be in 1..{MAX_PARTIAL_SUMS}, got {ks}")
    if integer and ks != 1:
        raise ValueError(f"plan: ks={ks} with {integer}=1: the integer sums are exact, ks must be 1")
    mr = overrides.get("mr", base.mr)
    if not 1 <= mr <= MAX_TILE:
        raise ValueError(f"plan: mr must be in 1..{MAX_TILE}, got {mr}")
    mrs = overrides.get("mrs", max(1, mr // ks) if "mr" in overrides or "ks" in overrides else base.mrs)
    if not 1 <= mrs <= MAX_TILE:
        raise ValueError(f"plan: mrs must be in 1..{MAX_TILE}, got {mrs}")
    tiles1 = overrides.get("tiles1", base.tiles1)
    if not 1 <= tiles1 <= nb:
        raise ValueError(f"plan: tiles1 must be in 1..{nb} (gate blocks of H={H} at vw={base.vw}), got {tiles1}")
    nb1 = -(-nb // tiles1)
    if nb1 > MAX_TILE:
        raise ValueError(f"plan: tiles1={tiles1} makes tiles of {nb1} gate blocks; at most {MAX_TILE} (use more tiles)")
    kc = overrides.get("kc", base.kc)
    if kc < 1:
        raise ValueError(f"plan: kc must be >= 1, got {kc}")
    return dataclasses.replace(base, mr=mr, mrs=mrs, ks=ks, tiles1=tiles1, nb1=nb1, kc=kc)


# ---- memory -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """A region of the workspace; buffers with disjoint lifetimes share one slot."""

    offset_rows: int  # floats per window row before this slot
    row_floats: int
    buffers: tuple[str, ...]


@dataclass(frozen=True)
class MemoryPlan:
    slots: tuple[Slot, ...]
    batch_floats: int  # per-batch-row workspace not tied to time (projection scratch)

    @property
    def row_floats(self) -> int:
        """Workspace floats per (time, batch) row of the window."""
        return sum(s.row_floats for s in self.slots)


def plan_memory(program: Program) -> MemoryPlan:
    """Give workspace buffers offsets; buffers whose lifetimes do not overlap share a slot.

    Lifetime of a buffer = [first op that writes it, last op that reads it] in program order.
    First-fit over slots; a slot's size is the largest buffer it holds.
    """
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for i, op in enumerate(program.ops):
        if isinstance(op, (InputProjection, Head)):
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
    batch_floats = sum(b.batch_floats for b in program.buffers if b.role == "workspace")
    return MemoryPlan(tuple(slots), batch_floats)


def batch_offset(program: Program, name: str) -> int:
    """Floats per batch row before buffer `name` in the per-batch-row part of the workspace (which
    follows the window rows; buffers there in program order)."""
    off = 0
    for b in program.buffers:
        if b.name == name:
            return off
        if b.role == "workspace":
            off += b.batch_floats
    raise KeyError(name)


# ---- the scheduled program --------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    """The formulas of (T, B) the runtime and the C share (see sizes.py)."""

    window: Size  # steps per time window
    workspace: Size  # floats of workspace for T steps and B rows
    auto_window: Size | None  # the body of <p>_window_steps when the window is chosen at run time


def _sizes(program: Program, schedule: Schedule, memory: MemoryPlan, plan: KernelPlan, prefix: str) -> Sizes:
    P = prefix.upper()
    row = Named(f"{P}_WS_ROW_FLOATS", memory.row_floats)
    batch = Named(f"{P}_WS_BATCH_FLOATS", memory.batch_floats)
    spec = program.spec
    auto = (schedule.time_loop == "looped" and not schedule.chunk and plan.vector and spec.num_layers == 1
            and spec.num_directions == 1 and memory.row_floats > 0)
    body = None
    if schedule.chunk:
        window: Size = Min(T, Const(schedule.chunk))
    elif auto:
        body = Clamp(Var("fit", Const(WINDOW_FLOATS) // (B * row)), Const(1), T)
        window = Call(f"{prefix}_window_steps", body)
    else:
        window = T
    workspace = Var("Tw", window) * B * row + Wide(B) * batch
    return Sizes(window=window, workspace=workspace, auto_window=body)


@dataclass(frozen=True)
class ScheduledProgram:
    """A Program with every decision about how it runs made: what codegen renders."""

    program: Program
    schedule: Schedule
    plan: KernelPlan
    memory: MemoryPlan

    # what later stages read, without reaching through .program
    @property
    def spec(self) -> LSTMSpec:
        return self.program.spec

    @property
    def ops(self) -> tuple[Op, ...]:
        return self.program.ops

    @property
    def buffers(self) -> tuple[Buffer, ...]:
        return self.program.buffers

    @property
    def variants(self) -> tuple[CellVariant, ...]:
        return self.program.variants

    @property
    def slots(self) -> tuple[Slot, ...]:
        return self.memory.slots

    @property
    def row_floats(self) -> int:
        return self.memory.row_floats

    @property
    def batch_floats(self) -> int:
        return self.memory.batch_floats

    @property
    def unit_block(self) -> int:
        """The packed weight layout the kernels read (units per gate block; 0 = torch's order)."""
        return self.plan.unit_block

    @property
    def kgroup(self) -> int:
        """int8 weights in groups of g consecutive k for the integer kernels (kernels.py, weights.py):
        4 for VNNI and IDOT, 2 for PMADD, 0 for every other plan."""
        return 4 if self.plan.vnni or self.plan.idot else 2 if self.plan.pmadd else 0

    @property
    def panel(self) -> int:
        """The portable kernels' packed layout: weight rows per panel (0 for the vector kernels)."""
        return self.plan.panel

    def sizes(self, prefix: str = "lstm") -> Sizes:
        """The symbolic sizes, naming the C macros and helpers of `prefix` (the values do not
        depend on it)."""
        return _sizes(self.program, self.schedule, self.memory, self.plan, prefix)

    @property
    def auto_window(self) -> bool:
        """Is the time window chosen at run time (see WINDOW_FLOATS)?"""
        return self.sizes().auto_window is not None

    def buffer(self, name: str) -> Buffer:
        return self.program.buffer(name)

    def slot_of(self, name: str) -> int:
        for i, s in enumerate(self.memory.slots):
            if name in s.buffers:
                return i
        raise KeyError(name)

    def window(self, T: int, B: int) -> int:
        """Steps per time window for T steps and B rows (what the generated C computes too)."""
        return self.sizes().window.eval(T=T, B=B)

    def workspace_floats(self, T: int, B: int) -> int:
        return self.sizes().workspace.eval(T=T, B=B)

    def describe_plan(self) -> str:
        p = self.plan
        integer = ""
        if p.input_q:  # int8 on integer dot products (kernels.py: VNNI, PMADD, IDOT)
            how = "vpdpbusd (AVX-512 VNNI)" if p.vnni else f"vpmaddwd ({'AVX-512 BW' if p.isa == 'avx512' else 'AVX2'})" if p.pmadd else "SMLAD where the Arm DSP extension is, else plain C"
            integer = (f"\n  int8: exact int32 dot products on {how}, each input row rounded to max|x| / {p.input_q}, "
                       f"weights in groups of {self.kgroup} k")
        if not p.vector:
            why = "portable C" if p.isa == "portable" else f"no vector width divides H = {self.spec.hidden_size}"
            held = ("named floats (registers of a scalar FPU)" if p.panel <= kernels.MAX_NAMED_PANEL else
                    f"an array vectorized across the rows, {kernels.PANEL_ROWS} input rows sharing each weight load")
            return (f"kernels: {p.isa} scalar ({why}), math={p.math}\n"
                    f"  row-blocked dot products: weights in panels of {p.panel} rows, each (K, rows); the sums {held}" + integer)
        nb = self.spec.hidden_size // p.vw
        return (f"kernels: {p.isa} vw={p.vw} (gate blocks NB={nb}, weights packed {p.vw} units per block), math={p.math}, "
                f"{'vector' if p.vector_cell else 'scalar'} cell\n"
                f"  projection tile {p.mr} rows x 4 gate vectors{'' if p.input_q else f', K chunk {p.kc}'}\n"
                f"  recurrence tile {p.mrs} rows x 4 gate vectors x {p.ks} partial sum(s); "
                f"one-row step in {p.tiles1} tile(s) of up to {p.nb1} gate blocks" + integer)

    def __str__(self) -> str:
        sched = self.schedule
        lines = [f"Program ({self.spec.summary()}; {sched})", "buffers:"]
        lines += [f"  {b}" + (f"  -> slot {self.slot_of(b.name)}" if self.slots and b.role == "workspace" and b.row_floats else "") for b in self.buffers]
        lines.append("cell variants:")
        lines += [f"  v{i}: {v}" for i, v in enumerate(self.variants)]
        lines.append("ops (per time window):")
        lines += [f"  {op}" for op in self.ops]
        if self.slots:
            if sched.chunk:
                tw = f"min(T, {sched.chunk})"
            elif self.auto_window:
                tw = f"T, or the most steps whose Tw*B*{self.row_floats} stay within {WINDOW_FLOATS} floats"
            else:
                tw = "T"
            lines.append(f"workspace: Tw*B*{self.row_floats} + B*{self.batch_floats} floats (Tw = {tw})")
        return "\n".join(lines)


def schedule_program(program: Program, schedule: Schedule | None = None, *,
                     plan: Mapping[str, Any] | None = None) -> ScheduledProgram:
    """Program + Schedule -> ScheduledProgram (schedule checked, kernels planned, memory planned)."""
    schedule = schedule or Schedule()
    check_schedule(program.spec, schedule)
    kplan = make_plan(program.spec, schedule, plan)
    memory = plan_memory(program)
    return ScheduledProgram(program, schedule, kplan, memory)


def build_program(spec: LSTMSpec, schedule: Schedule | None = None, *,
                  plan: Mapping[str, Any] | None = None) -> ScheduledProgram:
    """lower + schedule: what codegen renders."""
    return schedule_program(lower(spec), schedule, plan=plan)
