"""The public entry points: compile, generate, from_torch — the stages chained.

Input: an LSTMSpec (or anything LSTMSpec.from_dict takes) and torch-named weights.
Output: a callable `Model` (compile) or a folder of standalone C (generate).

    spec --ir.lower--> Program --schedule--> ScheduledProgram --codegen.render--> Sources
         --build--> Artifact --runtime--> Model
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from . import build as _build
from . import kernels
from .codegen import Sources, check_prefix, render
from .importers import from_torch
from .runtime import Model
from .schedule import Schedule, ScheduledProgram, build_program
from .spec import LSTMSpec
from .weights import pack

__all__ = ["as_spec", "compile", "from_torch", "generate", "generate_sources", "make_schedule", "schedule_for"]


def as_spec(spec: Any) -> LSTMSpec:
    if isinstance(spec, LSTMSpec):
        return spec
    if isinstance(spec, Mapping):
        return LSTMSpec.from_dict(spec)
    if isinstance(spec, (str, os.PathLike)):
        return LSTMSpec.load(spec)
    raise TypeError(f"spec must be an LSTMSpec, a dict or a path to a JSON/TOML spec, got {type(spec).__name__}")


def make_schedule(time_loop: str = "looped", seq_len: int | None = None, chunk: int = 0,
                  target: str = "portable", math: str = "libm") -> Schedule:
    """A Schedule; target 'native' is resolved here to this host's vector ISA (kernels.py)."""
    return Schedule(time_loop=time_loop, seq_len=seq_len, chunk=chunk,  # type: ignore[arg-type]
                    target=kernels.resolve_target(target), math=kernels.check_math(math))


def compile(spec: Any, weights: Mapping[str, Any], *, prefix: str = "lstm", time_loop: str = "looped",
            seq_len: int | None = None, chunk: int = 0, target: str = "native", math: str = "approx",
            allow_nonfinite: bool = False, plan: Mapping[str, Any] | None = None) -> Model:
    """Lower -> render C -> build with cffi (cached) -> load. Returns a Model callable like nn.LSTM.

    The weights are passed to C as pointers at call time, so every weight set of a shape and
    schedule shares one compiled module (see Model.with_weights). target: 'native' (the vector
    kernels this machine runs best, built with -march=native), 'portable', 'avx2', 'avx512' or
    'neon'; math: 'approx' (libm-free vector sigmoid/tanh) or 'libm' (see kernels.py).
    plan: optional overrides of the kernel plan's tile shapes, e.g. {"mr": 4, "tiles1": 2}
    (schedule.PLAN_KNOBS; `lstmgen inspect` shows the default plan). Every tile shape gives the
    same bits; `ks` (partial sums of the recurrence) changes the order of additions.
    """
    spec = as_spec(spec)
    check_prefix(prefix)
    schedule = make_schedule(time_loop, seq_len, chunk, target, math)
    if target != "native" and not kernels.host_runs(schedule.target):
        raise ValueError(f"target={target!r}: this machine cannot run {schedule.target} code "
                         f"(its compiler offers {kernels.native_isa()!r}); use target='native' or 'portable'")
    program = build_program(spec, schedule, plan=plan)
    # validate and pack before any build work
    packed = pack(spec, weights, allow_nonfinite=allow_nonfinite, unit_block=program.unit_block)
    sources = render(program, prefix)
    return Model(_build.build_artifact(program, sources, target=target), packed)


def generate_sources(spec: Any, weights: Mapping[str, Any] | None = None, *, prefix: str = "lstm",
                     time_loop: str = "looped", seq_len: int | None = None, chunk: int = 0,
                     target: str = "portable", math: str = "libm", allow_nonfinite: bool = False,
                     plan: Mapping[str, Any] | None = None) -> Sources:
    """The C of `generate` as {filename: text}, without writing it."""
    spec = as_spec(spec)
    program = build_program(spec, make_schedule(time_loop, seq_len, chunk, target, math), plan=plan)
    packed = pack(spec, weights, allow_nonfinite=allow_nonfinite, unit_block=program.unit_block) if weights is not None else None
    return render(program, prefix, packed)


def schedule_for(spec: Any, *, time_loop: str = "looped", seq_len: int | None = None, chunk: int = 0,
                 target: str = "portable", math: str = "libm", plan: Mapping[str, Any] | None = None) -> ScheduledProgram:
    """The ScheduledProgram compile/generate would render (what `lstmgen inspect` prints)."""
    return build_program(as_spec(spec), make_schedule(time_loop, seq_len, chunk, target, math), plan=plan)


def generate(spec: Any, weights: Mapping[str, Any] | None, out_dir: str | os.PathLike[str], *,
             prefix: str = "lstm", time_loop: str = "looped", seq_len: int | None = None,
             chunk: int = 0, target: str = "portable", math: str = "libm",
             allow_nonfinite: bool = False, plan: Mapping[str, Any] | None = None) -> list[str]:
    """Write standalone C for the spec into out_dir: <prefix>.h, <prefix>.c and, when weights are
    given, <prefix>_weights.c with them as static const arrays. Returns the paths written.

    target 'portable' (default) is plain C99 for any compiler; 'avx2', 'avx512', 'neon' or
    'native' (this machine's) emit intrinsics that need the matching compiler flags (the .c
    says which). math 'libm' (default) or 'approx' (no libm calls for the torch cell)."""
    sources = generate_sources(spec, weights, prefix=prefix, time_loop=time_loop, seq_len=seq_len,
                               chunk=chunk, target=target, math=math, allow_nonfinite=allow_nonfinite, plan=plan)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, text in sorted(sources.files.items()):
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        paths.append(path)
    return paths
