"""Measuring an embedded folder with the cross toolchain, and the `lstmgen report` text.

Input: the folder's files ({filename: text}, from folder.embedded_sources), its prefix and a
Cortex-M core. Output: a `Measurement` (`measure`): arm-none-eabi-size of each model object and
the worst stack depth of each public function, from gcc's -fcallgraph-info=su call graph.
`report` joins that with the exact Footprint into the text `lstmgen report` prints.
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

from ..abi import WARN_FLAGS, entry_points
from ..build import BuildError
from ..codegen import check_prefix
from ..kernels import MATH_NOTES
from ..weights import check_weights, random_weights
from .folder import embedded_sources
from .footprint import check_static_size, footprint
from .schedule import embedded_program

# arm-none-eabi-gcc flags per core; the proof builds with exactly these.
CPU_FLAGS = {
    # -mfp16-format=ieee: float16 weights convert in the FPU (VCVTB.F32.F16), not in bit code
    "cortex-m4": ["-mcpu=cortex-m4", "-mthumb", "-mfpu=fpv4-sp-d16", "-mfloat-abi=hard", "-mfp16-format=ieee"],
    "cortex-m0plus": ["-mcpu=cortex-m0plus", "-mthumb", "-mfloat-abi=soft"],
}


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

    entries = set(entry_points(prefix, stream=True, static=True))
    public = sorted(f for f, size in frames.items() if size is not None and f in entries)
    stack = {f: depth(f, ()) for f in public}
    return stack, recursion, tuple(sorted(external))


# ---- the report -------------------------------------------------------------------------------------


def report(spec: Any, weights: Mapping[str, Any] | None = None, *, prefix: str = "lstm", max_batch: int = 1,
           seq_len: int | None = None, chunk: int | None = None, time_loop: str = "looped", math: str = "approx",
           cpus: tuple[str, ...] = ("cortex-m4", "cortex-m0plus"), measure_code: bool = True,
           weights_dtype: str = "float32") -> str:
    """The footprint as text: exact sizes, plus code bytes and stack per CPU when the cross
    compiler is installed (random weights stand in when none are given: sizes do not depend on values)."""
    from ..spec import as_spec

    spec = as_spec(spec)
    check_prefix(prefix)
    program = embedded_program(spec, max_batch=max_batch, seq_len=seq_len, chunk=chunk, time_loop=time_loop, math=math,
                               weights_dtype=weights_dtype)
    fp = footprint(program)
    check_static_size(fp)  # what embedded_sources refuses, measured or not
    measured: list[Measurement] = []
    note = ""
    if not measure_code:
        note = "not measured (--no-measure)"
    elif arm_tool("gcc") is None:
        note = "not measured: arm-none-eabi-gcc not found"
    else:  # only the cross compiler needs the folder (and so the weights written out as C)
        w = weights if weights is not None else random_weights(spec, seed=0)
        files = embedded_sources(spec, w, prefix=prefix, max_batch=max_batch, seq_len=seq_len, chunk=chunk,
                                 time_loop=time_loop, math=math, selftest=False, weights_dtype=weights_dtype)
        measured = [measure(files, prefix, cpu) for cpu in cpus]
    if not measured and weights is not None:
        check_weights(spec, weights)  # refuse what embedded_sources would have refused
    lines = [f"lstmgen report: {spec.summary()}; {program.schedule}"]
    code = note or ", ".join(f"{m.code_bytes(prefix)} bytes ({m.cpu})" for m in measured)
    lines += ["  " + line for line in fp.lines(code)]
    lines.append(f"  math              {program.schedule.math}: {MATH_NOTES[program.schedule.math]}")
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
