"""Embedded output: a self-contained C folder for a microcontroller, and its footprint report.

Input: an LSTMSpec, its weights and the static-build options (max batch, plus a fixed maximum
sequence length or the time-chunked schedule). Output: `<p>.h`, `<p>.c`, `<p>_weights.c` (the
core's files; the header gains the static-memory block), `<p>_state.c` (the static-memory API over
a caller-owned `<p>_state` struct), `<p>_selftest.c` (golden vectors from lstmgen.reference and a
main), a Makefile and a README.md for that folder. No Python is needed to build or run it.

Static memory: with B <= max_batch and either T <= seq_len or K-step windows (chunk), the largest
workspace any call needs is known here, so `<p>_state` holds state and workspace in fixed arrays
and `sizeof(<p>_state)` (= `<P>_STATE_BYTES`) is all the RAM the model uses.

The footprint (`footprint`, `lstmgen report`) computes parameters, weight bytes, RAM and MACs
exactly from the spec; code bytes and stack use come from cross-compiling with arm-none-eabi-gcc
(`measure`), when that tool is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import __version__, reference
from .abi import FIELD_NAMES, WARN_FLAGS
from .build import BuildError
from .codegen import _array_lines, _env, _weights_ctx, c_float, check_prefix, render
from .schedule import Schedule, ScheduledProgram, build_program
from .spec import LSTMSpec
from .weights import pack, random_weights

# Time window of the chunked schedule when the caller fixes neither chunk nor seq_len: four rows
# share each weight load in the projection GEMM while the workspace stays a few KiB.
DEFAULT_CHUNK = 4
# The self-test's absolute tolerance vs the float64 reference (the README's): float32 with libm's
# expf/tanhf, or with math='approx', whose sigmoid/tanh error (kernels.py) is far below it.
DEFAULT_TOLERANCE = 1e-5
POINTER_BYTES = 4  # the weight table's pointers on the 32-bit targets this folder is for
CELL_POINTERS = len(FIELD_NAMES)  # pointers per <p>_cell_weights (abi.WEIGHT_FIELDS)

# arm-none-eabi-gcc flags per core; the proof builds with exactly these.
CPU_FLAGS = {
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard"],
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"],
}


@dataclass(frozen=True)
class Footprint:
    """Sizes of a static build, all exact: bytes on a 32-bit target with 4-byte floats."""

    spec: LSTMSpec
    schedule: Schedule
    max_batch: int
    window: int  # time steps whose workspace is live at once
    max_seq_len: int  # longest T for a whole-sequence call (0: any T)
    h_floats: int  # (L*D, max_batch, R)
    c_floats: int  # (L*D, max_batch, H)
    ws_floats: int  # workspace_floats(window, max_batch)
    weight_floats: int  # floats in <p>_weights.c (kernel layout, biases folded)

    @property
    def parameters(self) -> int:
        return self.spec.num_parameters

    @property
    def weight_table_bytes(self) -> int:
        return self.spec.num_layers * self.spec.num_directions * CELL_POINTERS * POINTER_BYTES

    @property
    def weights_bytes(self) -> int:
        """Flash for the weights: the float arrays plus the <p>_model_weights pointer table."""
        return 4 * self.weight_floats + self.weight_table_bytes

    @property
    def state_bytes(self) -> int:
        """RAM: sizeof(<p>_state) = int32 batch + h + c + workspace."""
        return 4 + 4 * (self.h_floats + self.c_floats + self.ws_floats)

    @property
    def macs_per_step(self) -> int:
        """Multiply-accumulates per time step and batch row (all layers and directions)."""
        return self.spec.macs_per_step()

    def lines(self, code: str) -> list[str]:
        """The footprint as aligned text lines (header comment, README, report)."""
        return [
            f"parameters        {self.parameters} (floats in the state_dict)",
            f"flash, weights    {self.weights_bytes} bytes: {self.weight_floats} floats in kernel layout "
            f"(biases folded) + {self.weight_table_bytes}-byte pointer table",
            f"flash, code       {code}",
            f"RAM               {self.state_bytes} bytes = sizeof(state): h {4 * self.h_floats} + c {4 * self.c_floats}"
            f" + workspace {4 * self.ws_floats} + batch 4",
            f"MACs per step     {self.macs_per_step} per batch row (max batch {self.max_batch})",
        ]


def embedded_schedule(spec: LSTMSpec, *, max_batch: int = 1, seq_len: int | None = None, chunk: int | None = None,
                      time_loop: str = "looped", math: str = "libm") -> Schedule:
    """The schedule of a static build. Unidirectional models default to the chunked schedule
    (workspace independent of T); bidirectional ones need a fixed maximum sequence length."""
    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise ValueError(f"max_batch must be an int >= 1, got {max_batch!r}")
    if chunk is None:
        chunk = DEFAULT_CHUNK if (seq_len is None and not spec.bidirectional and time_loop == "looped") else 0
    if not chunk and seq_len is None:
        raise ValueError(
            "a static build needs a fixed maximum sequence length (seq_len) or, for unidirectional models, "
            "the time-chunked schedule (chunk > 0): otherwise the workspace grows with T"
            + (" (a bidirectional model reads the whole sequence: give seq_len)" if spec.bidirectional else "")
        )
    # target stays "portable": plain C99 for any core (kernels.py)
    return Schedule(time_loop=time_loop, seq_len=seq_len, chunk=chunk, max_batch=max_batch,  # type: ignore[arg-type]
                    math=math)


def _pack(program: ScheduledProgram, weights: Mapping[str, Any], allow_nonfinite: bool = False) -> list:
    """The weights in the layout this program's kernels read."""
    return pack(program.spec, weights, allow_nonfinite=allow_nonfinite, unit_block=program.unit_block)


def _weight_floats(program: ScheduledProgram, packed: Any) -> int:
    cells = _weights_ctx(packed if packed is not None else _pack(program, random_weights(program.spec)))
    return sum(a["size"] for cell in cells for a in cell["arrays"])


def footprint(program: ScheduledProgram, packed: Any = None) -> Footprint:
    """Exact sizes of the static build of a scheduled Program (schedule.max_batch must be set)."""
    spec, sched = program.spec, program.schedule
    if not sched.max_batch:
        raise ValueError("footprint needs a static schedule: set max_batch (see embedded_schedule)")
    if sched.chunk and sched.seq_len:
        window = min(sched.chunk, sched.seq_len)
    else:
        window = sched.chunk or sched.seq_len or 0
    if window < 1:
        raise ValueError("footprint needs a fixed seq_len or a chunked schedule")
    cells, B = spec.num_layers * spec.num_directions, sched.max_batch
    return Footprint(
        spec=spec,
        schedule=sched,
        max_batch=B,
        window=window,
        max_seq_len=sched.seq_len or 0,
        h_floats=cells * B * spec.output_size,
        c_floats=cells * B * spec.hidden_size,
        ws_floats=program.workspace_floats(window, B),
        weight_floats=_weight_floats(program, packed),
    )


def static_context(fp: Footprint, prefix: str) -> dict:
    """What static.h.j2 and state.c.j2 spell."""
    sched = fp.schedule
    P = prefix.upper()
    if sched.time_loop == "unrolled":
        seq_doc = "T must equal it (unrolled)"
        forward_doc = f"T must be {P}_MAX_SEQ_LEN (the time loop is unrolled)."
    elif fp.max_seq_len:
        seq_doc = "longest T of a whole-sequence call"
        forward_doc = f"1 <= T <= {P}_MAX_SEQ_LEN."
    else:
        seq_doc = "0: any T (the chunked schedule's workspace does not grow with T)"
        forward_doc = f"any T >= 1 (it runs in {sched.chunk}-step windows)."
    return dict(
        summary=f"{fp.spec.summary()}; {sched}",
        footprint=fp.lines("`make size` in the embedded folder (arm-none-eabi-size); `lstmgen report` measures it"),
        max_batch=fp.max_batch,
        max_seq_len=fp.max_seq_len,
        window=fp.window,
        h_floats=fp.h_floats,
        c_floats=fp.c_floats,
        ws_floats=fp.ws_floats,
        state_bytes=fp.state_bytes,
        weights_bytes=fp.weights_bytes,
        seq_doc=seq_doc,
        forward_doc=forward_doc,
    )


# ---- the self-test's golden vectors -----------------------------------------------------------


def selftest_steps(fp: Footprint) -> int:
    """T for the self-test: past two windows (the last one partial) or the fixed length."""
    sched = fp.schedule
    if sched.time_loop == "unrolled":
        return fp.max_seq_len
    if sched.chunk:
        T = 2 * sched.chunk + 1 if sched.chunk <= 8 else sched.chunk + 3
        return min(T, fp.max_seq_len) if fp.max_seq_len else T
    return min(fp.max_seq_len, 32)


def _golden(spec: LSTMSpec, weights: Mapping[str, Any], T: int, B: int, seed: int) -> dict[str, Any]:
    """Inputs and float64-reference outputs for the self-test's passes (see selftest.c.j2)."""
    rng = np.random.default_rng(seed)
    shape = (B, T, spec.input_size) if spec.batch_first else (T, B, spec.input_size)
    x = rng.standard_normal(shape).astype(np.float32)
    y_a, (h_a, c_a) = reference.lstm_forward(spec, weights, x)
    row = B - 1  # the row pass B restarts
    h0 = h_a.astype(np.float32)
    c0 = c_a.astype(np.float32)
    h0[:, row] = 0.0
    c0[:, row] = 0.0
    lengths = None if B == 1 else np.array([T] * (B - 1) + [max(1, T - T // 3)], dtype=np.int32)
    y_b, (h_b, c_b) = reference.lstm_forward(spec, weights, x, (h0, c0), lengths=lengths)
    return dict(x=x, y_a=y_a, h_a=h_a, c_a=c_a, y_b=y_b, h_b=h_b, c_b=c_b, lengths=lengths, row=row)


def _selftest_ctx(spec: LSTMSpec, weights: Mapping[str, Any], fp: Footprint, prefix: str,
                  tolerance: float, seed: int = 0) -> dict:
    T, B = selftest_steps(fp), fp.max_batch
    g = _golden(spec, weights, T, B, seed)
    R, n_in, D = spec.output_size, spec.input_size, spec.num_directions
    stream = D == 1 and not spec.reverse

    def arr(name: str, doc: str, value: np.ndarray) -> dict:
        return dict(name=name, doc=f"{doc} {'x'.join(map(str, value.shape))}", ctype="float", size=value.size,
                    lines=_array_lines(value))

    arrays = [
        arr("x_in", "x, input " + ("(B, T, I)" if spec.batch_first else "(T, B, I)"), g["x"]),
        arr("y_a", "pass A (zero state): y", g["y_a"]),
        arr("h_a", "pass A: h_n (L*D, B, R)", g["h_a"]),
        arr("c_a", "pass A: c_n (L*D, B, H)", g["c_a"]),
        arr("y_b", "pass B (row reset, the others continue): y", g["y_b"]),
        arr("h_b", "pass B: h_n", g["h_b"]),
        arr("c_b", "pass B: c_n", g["c_b"]),
    ]
    if g["lengths"] is not None:
        arrays.append(dict(name="lengths_b", doc="pass B: lengths (B)", ctype="int32_t", size=B,
                           lines=[", ".join(str(int(v)) for v in g["lengths"])]))
    checks = ["whole sequence from a zero state (y, h_n, c_n)"]
    if stream:
        checks.append("the same sequence through state_step, one step at a time")
    checks.append("state_reset_row of the last row, then a second pass from the other rows' state"
                  + (" with variable lengths" if g["lengths"] is not None else ""))
    checks.append("bad arguments return the documented error codes")
    if spec.batch_first:
        x_st, x_sb, y_st, y_sb = n_in, T * n_in, R, T * R
    else:
        x_st, x_sb, y_st, y_sb = B * n_in, n_in, B * R, R
    return dict(
        t_steps=T,
        batch=B,
        tolerance=c_float(tolerance),
        tolerance_text=f"{tolerance:g}, absolute",
        arrays=arrays,
        checks=checks,
        stream=stream,
        cells=spec.num_layers * D,
        y_row=D * R,
        x_st=x_st,
        x_sb=x_sb,
        y_st=y_st,
        y_sb=y_sb,
        reset_row=g["row"],
        has_lengths=g["lengths"] is not None,
        pass_b_doc="the other rows continue from their state" + (", with variable lengths" if g["lengths"] is not None else ""),
        summary=spec.summary(),
    )


# ---- the folder ----------------------------------------------------------------------------------


def embedded_sources(spec: Any, weights: Mapping[str, Any], *, prefix: str = "lstm", max_batch: int = 1,
                     seq_len: int | None = None, chunk: int | None = None, time_loop: str = "looped",
                     math: str = "libm", selftest: bool = True, tolerance: float | None = None,
                     allow_nonfinite: bool = False) -> dict[str, str]:
    """{filename: text} of the embedded folder (see the module docstring).

    math: 'libm' (expf/tanhf) or 'approx' (libm-free float32 sigmoid/tanh, kernels.py).
    tolerance: the self-test's absolute tolerance (default DEFAULT_TOLERANCE)."""
    from .api import as_spec

    spec = as_spec(spec)
    p = check_prefix(prefix)
    if weights is None:
        raise ValueError("the embedded folder needs the weights: they are compiled into <prefix>_weights.c")
    if tolerance is None:
        tolerance = DEFAULT_TOLERANCE
    if not (isinstance(tolerance, (int, float)) and not isinstance(tolerance, bool) and 0 < tolerance < 1):
        raise ValueError(f"tolerance must be a number in (0, 1), got {tolerance!r}")
    program = build_program(spec, embedded_schedule(spec, max_batch=max_batch, seq_len=seq_len, chunk=chunk,
                                                    time_loop=time_loop, math=math))
    packed = _pack(program, weights, allow_nonfinite)
    fp = footprint(program, packed)
    static = static_context(fp, p)
    sources = render(program, p, packed, static=static)
    files = dict(sources.files)
    ctx = dict(p=p, P=p.upper(), banner=f"Generated by lstmgen {__version__} ({spec.summary()}; {program.schedule}). Do not edit.",
               static=static, api=dict(cells=spec.num_layers * spec.num_directions,
                                       stream=spec.num_directions == 1 and not spec.reverse))
    env = _env()
    files[f"{p}_state.c"] = env.get_template("state.c.j2").render(ctx)
    finite = all(np.isfinite(a).all() for c in packed for a in (c.w_ih, c.w_hh, c.bias, c.w_hr, c.w_ph) if a is not None)
    if selftest and finite:
        # (NaN/Inf weights, kept with allow_nonfinite, have no meaningful golden: no self-test then)
        st = _selftest_ctx(spec, weights, fp, p, float(tolerance))
        files[f"{p}_selftest.c"] = env.get_template("selftest.c.j2").render(ctx, **st)
    files["Makefile"] = env.get_template("Makefile.j2").render(ctx, summary=spec.summary())
    files["README.md"] = env.get_template("folder_readme.md.j2").render(
        ctx, spec=spec, fp=fp, schedule=str(program.schedule), math=program.schedule.math,
        selftest=f"{p}_selftest.c" in files,
        tolerance=f"{tolerance:g}", footprint=fp.lines("run `make size` (see below)"))
    return files


def generate_embedded(spec: Any, weights: Mapping[str, Any], out_dir: str | os.PathLike[str], **options: Any) -> list[str]:
    """Write the embedded folder into out_dir (created if needed); return the paths written."""
    files = embedded_sources(spec, weights, **options)
    out = os.fspath(out_dir)
    os.makedirs(out, exist_ok=True)
    paths = []
    for name, text in sorted(files.items()):
        path = os.path.join(out, name)
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        paths.append(path)
    return paths


# ---- measuring with the cross compiler ---------------------------------------------------------------


@dataclass(frozen=True)
class Measurement:
    """Berkeley `size` of each cross-compiled object, and the worst stack depth per entry point."""

    cpu: str
    compiler: str  # first line of `arm-none-eabi-gcc --version`
    sizes: dict[str, tuple[int, int, int]]  # object file -> (text, data, bss)
    stack: dict[str, int]  # public function -> worst-case bytes of stack, own frames only
    recursion: bool
    external_calls: tuple[str, ...]  # callees outside the objects (libc/libm), not in `stack`

    def code_bytes(self, prefix: str) -> int:
        return sum(self.sizes[f"{prefix}{s}.o"][0] for s in ("", "_state"))

    def weights_bytes(self, prefix: str) -> int:
        return self.sizes[f"{prefix}_weights.o"][0]

    def static_ram_bytes(self) -> int:
        """data + bss of every object: 0, all RAM is the caller's <p>_state."""
        return sum(d + b for _, d, b in self.sizes.values())


def arm_tool(name: str) -> str | None:
    return shutil.which(f"arm-none-eabi-{name}")


def measure(files: Mapping[str, str], prefix: str, cpu: str = "cortex-m4", *, opt: str = "-Os") -> Measurement:
    """Cross-compile the model objects of an embedded folder and measure them.

    Raises FileNotFoundError when arm-none-eabi-gcc is missing and BuildError (with the
    compiler's output) when it fails."""
    if cpu not in CPU_FLAGS:
        raise ValueError(f"cpu must be one of {sorted(CPU_FLAGS)}, got {cpu!r}")
    gcc, size = arm_tool("gcc"), arm_tool("size")
    if gcc is None or size is None:
        raise FileNotFoundError("arm-none-eabi-gcc / arm-none-eabi-size not found (Debian: gcc-arm-none-eabi binutils-arm-none-eabi)")
    version = subprocess.run([gcc, "--version"], capture_output=True, text=True, check=True).stdout.splitlines()[0]
    sources = [f"{prefix}.c", f"{prefix}_state.c", f"{prefix}_weights.c"]
    with tempfile.TemporaryDirectory(prefix="lstmgen-arm-") as tmp:
        for name, text in files.items():
            if name.endswith((".c", ".h")):
                with open(os.path.join(tmp, name), "w", encoding="utf-8") as fh:
                    fh.write(text)
        for src in sources:
            cmd = [gcc, *CPU_FLAGS[cpu], opt, *WARN_FLAGS, "-ffunction-sections", "-fdata-sections",
                   "-fstack-usage", "-fcallgraph-info=su", "-c", src, "-o", src[:-2] + ".o"]
            run = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True)
            if run.returncode != 0:
                raise BuildError(f"{' '.join(cmd)} failed:\n{run.stderr[-4000:]}")
        objs = [s[:-2] + ".o" for s in sources]
        out = subprocess.run([size, *objs], cwd=tmp, capture_output=True, text=True, check=True).stdout
        sizes = {}
        for line in out.splitlines()[1:]:
            f = line.split()
            sizes[f[5]] = (int(f[0]), int(f[1]), int(f[2]))
        graph = _callgraph([os.path.join(tmp, s[:-2] + ".ci") for s in sources])
    stack, recursion, external = _stack_depths(graph, prefix)
    return Measurement(cpu, version, sizes, stack, recursion, external)


_NODE = re.compile(r'node: \{ title: "([^"]+)" label: "([^"]*)"')
_EDGE = re.compile(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"')
_FRAME = re.compile(r"\\n(\d+) bytes \((static|dynamic)")


def _callgraph(paths: list[str]) -> tuple[dict[str, int | None], dict[str, set[str]]]:
    """gcc -fcallgraph-info=su output -> (frame bytes per function (None: external), callees)."""
    frames: dict[str, int | None] = {}
    edges: dict[str, set[str]] = {}
    for path in paths:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
        for title, label in _NODE.findall(text):
            m = _FRAME.search(label)
            if m is not None:
                if m.group(2) != "static":
                    raise RuntimeError(f"{title} has a dynamic stack frame (a VLA or alloca?)")
                frames[title] = int(m.group(1))
            else:
                frames.setdefault(title, None)
        for src, dst in _EDGE.findall(text):
            edges.setdefault(src, set()).add(dst)
    return frames, edges


def _stack_depths(graph: tuple[dict[str, int | None], dict[str, set[str]]], prefix: str) -> tuple[dict[str, int], bool, tuple[str, ...]]:
    frames, edges = graph
    recursion = False
    external: set[str] = set()
    memo: dict[str, int] = {}

    def depth(fn: str, path: tuple[str, ...]) -> int:
        nonlocal recursion
        if fn in path:
            recursion = True
            return 0
        if fn in memo:
            return memo[fn]
        own = frames.get(fn)
        if own is None:
            external.add(fn)
            return 0
        deepest = max((depth(c, path + (fn,)) for c in edges.get(fn, ())), default=0)
        memo[fn] = own + deepest
        return memo[fn]

    public = sorted(f for f, size in frames.items() if size is not None and f.startswith(f"{prefix}_")
                    and any(f == f"{prefix}_{n}" for n in ("forward", "step", "workspace_floats", "reset", "reset_row",
                                                           "state_init", "state_reset", "state_reset_row",
                                                           "state_forward", "state_step")))
    stack = {f: depth(f, ()) for f in public}
    return stack, recursion, tuple(sorted(external))


# ---- the report -------------------------------------------------------------------------------------


def report(spec: Any, weights: Mapping[str, Any] | None = None, *, prefix: str = "lstm", max_batch: int = 1,
           seq_len: int | None = None, chunk: int | None = None, time_loop: str = "looped", math: str = "libm",
           cpus: tuple[str, ...] = ("cortex-m4", "cortex-m0plus"), measure_code: bool = True) -> str:
    """The footprint as text: exact sizes, plus code bytes and stack per CPU when the cross
    compiler is installed (random weights stand in when none are given: sizes do not depend on values)."""
    from .api import as_spec

    spec = as_spec(spec)
    w = weights if weights is not None else random_weights(spec, seed=0)
    files = embedded_sources(spec, w, prefix=prefix, max_batch=max_batch, seq_len=seq_len, chunk=chunk,
                             time_loop=time_loop, math=math, selftest=False)
    program = build_program(spec, embedded_schedule(spec, max_batch=max_batch, seq_len=seq_len, chunk=chunk,
                                                    time_loop=time_loop, math=math))
    fp = footprint(program, _pack(program, w))
    measured: list[Measurement] = []
    note = ""
    if measure_code:
        if arm_tool("gcc") is None:
            note = "not measured: arm-none-eabi-gcc not found"
        else:
            measured = [measure(files, prefix, cpu) for cpu in cpus]
    else:
        note = "not measured (--no-measure)"
    lines = [f"lstmgen report: {spec.summary()}; {program.schedule}"]
    code = note or ", ".join(f"{m.code_bytes(prefix)} bytes ({m.cpu})" for m in measured)
    lines += ["  " + line for line in fp.lines(code)]
    for m in measured:
        text, data, bss = (sum(s[i] for s in m.sizes.values()) for i in range(3))
        worst = max(m.stack.values(), default=0)
        lines.append(f"  {m.cpu} -Os ({m.compiler}):")
        lines.append(f"    size: text {text} (code {m.code_bytes(prefix)} + weights {m.weights_bytes(prefix)}), "
                     f"data {data}, bss {bss}")
        lines.append(f"    flash total {text + data} bytes; RAM {fp.state_bytes} bytes in the caller's state + stack")
        lines.append(f"    stack, worst path: {worst} bytes"
                     + (f" + what {', '.join(m.external_calls)} use" if m.external_calls else "")
                     + ("; RECURSION FOUND" if m.recursion else "; no recursion"))
    return "\n".join(lines)
