"""The public entry points: compile, generate, from_torch — the stages chained.

Input: an LSTMSpec (or anything LSTMSpec.from_dict takes) and torch-named weights.
Output: a callable `Model` (compile) or a folder of standalone C (generate).

    spec --ir.lower--> Program --schedule--> ScheduledProgram --codegen.render--> Sources
         --build--> Artifact --runtime--> Model
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any

from . import build as _build
from . import kernels
from .codegen import Sources, check_prefix, render
from .importers import from_torch, quantized_weights_dtype
from .output import write_files
from .runtime import Model
from .schedule import PLAN_KNOBS, Schedule, ScheduledProgram, build_program, make_plan
from .spec import LSTMSpec, as_spec
from .weights import pack

_log = logging.getLogger("lstmgen")

__all__ = ["as_spec", "compile", "from_torch", "generate", "generate_sources", "make_schedule", "schedule_for"]


def make_schedule(time_loop: str = "looped", seq_len: int | None = None, chunk: int = 0,
                  target: str = "portable", math: str = "approx", weights_dtype: str = "float32") -> Schedule:
    """A Schedule; target 'native' is resolved here to this host's vector ISA (kernels.py)."""
    return Schedule(time_loop=time_loop, seq_len=seq_len, chunk=chunk,  # type: ignore[arg-type]
                    target=kernels.resolve_target(target), math=kernels.check_math(math),
                    weights=kernels.check_weights_dtype(weights_dtype))


def _is_torch_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")  # a torch object exists only once torch is imported
    return torch is not None and isinstance(obj, torch.nn.Module)


def compile(spec: Any, weights: Mapping[str, Any] | None = None, *, prefix: str = "lstm", time_loop: str = "looped",
            seq_len: int | None = None, chunk: int = 0, target: str = "native", math: str = "approx",
            allow_nonfinite: bool = False, plan: Mapping[str, Any] | None = None,
            weights_dtype: str | None = None) -> Model:
    """Lower -> render C -> build with cffi (cached) -> load. Returns a Model callable like nn.LSTM.

    The weights are passed to C as pointers at call time, so every weight set of a shape and
    schedule shares one compiled module (see Model.with_weights). target: 'native' (the vector
    kernels this machine runs best, built with -march=native), 'portable', 'avx2', 'avx512' or
    'neon'; math: 'approx' (libm-free vector sigmoid/tanh) or 'libm' (see kernels.py).
    plan: optional overrides of the kernel plan's tile shapes, e.g. {"mr": 4, "tiles1": 2}
    (schedule.PLAN_KNOBS; `lstmgen inspect` shows the default plan). Every tile shape gives the
    same bits; `ks` (partial sums of the recurrence) changes the order of additions.
    weights_dtype: 'float32', 'float16', 'bfloat16' or 'int8' (per-row scales): how the
    weight matrices are stored; state, activations and sums stay float32 (weights.quantize).
    None (default) is 'float32', except for a torch dynamically quantised module, whose own dtype
    it keeps: 'int8' for quantize_dynamic(..., dtype=torch.qint8) (torch's int8 values and
    scales, not requantised), 'float16' for dtype=torch.float16. Any other choice is honoured
    (e.g. 'float32' runs the dequantised weights exactly, twice the bytes of float16 and four times
    int8's). For (spec, weights) from from_torch(qmodule), pass weights_dtype='int8' to keep
    torch's int8 values (the default there is float32 on the dequantised values).
    `spec` may also be a torch.nn.LSTM module (weights then come from it: compile(net.lstm)).
    """
    if _is_torch_module(spec):
        if weights is not None:
            raise TypeError("compile(module) takes the weights from the torch module; drop the weights argument")
        if weights_dtype is None:
            weights_dtype = quantized_weights_dtype(spec)
        spec, weights = from_torch(spec)
    elif weights is None:
        raise TypeError("compile needs weights (a state_dict-named mapping), or a torch.nn.LSTM module in place of the spec")
    spec = as_spec(spec)
    check_prefix(prefix)
    schedule = make_schedule(time_loop, seq_len, chunk, target, math, weights_dtype or "float32")
    if target != "native" and not kernels.host_runs(schedule.target):
        raise ValueError(f"target={target!r}: this machine cannot run {schedule.target} code "
                         f"(its compiler offers {kernels.native_isa()!r}); use target='native' or 'portable'")
    program = build_program(spec, schedule, plan=plan)
    # validate and pack before any build work
    packed = pack(spec, weights, allow_nonfinite=allow_nonfinite, unit_block=program.unit_block, panel=program.panel,
                  weights_dtype=program.schedule.weights, kgroup=program.kgroup)
    return Model(_artifact(program, prefix, target), packed)


def _plan_overrides(program: ScheduledProgram) -> dict[str, int] | None:
    """The plan as overrides that make_plan turns back into it (None: the default plan)."""
    plan = program.plan
    if plan == make_plan(program.spec, program.schedule):
        return None
    if not plan.vw:
        return {"vw": 0, "panel": plan.panel}
    return {k: getattr(plan, k) for k in PLAN_KNOBS if k != "panel"}


@functools.lru_cache(maxsize=32)
def _render(program: ScheduledProgram, prefix: str) -> Sources:
    """render() of a (frozen, hashable) program without embedded weights, memoised: compile()
    of a model this process already built renders nothing (Sources are never mutated)."""
    return render(program, prefix)


def _artifact(program: ScheduledProgram, prefix: str, target: str) -> _build.Artifact:
    """Render and build (or fetch from the cache); logs a cache hit or miss and the compile time."""
    compiles = _build.stats["compiles"]
    t0 = time.perf_counter()
    sources = _render(program, prefix)
    recipe = (rebuild_artifact, (program.spec, program.schedule, _plan_overrides(program), prefix, target))
    art = _build.build_artifact(program, sources, target=target, recipe=recipe)
    dt = time.perf_counter() - t0
    what = f"{prefix} ({program.spec.summary()}; {program.schedule})"
    if _build.stats["compiles"] != compiles:
        _log.info("cache miss: compiled %s in %.2f s", what, dt)
    else:
        _log.debug("cache hit: %s loaded in %.1f ms", what, dt * 1e3)
    return art


def rebuild_artifact(spec: LSTMSpec, schedule: Schedule, plan: Mapping[str, Any] | None, prefix: str,
                     target: str) -> _build.Artifact:
    """The Artifact a pickled Model was built from, made again here (from the cache when it
    holds it). A model compiled for target='native' on another machine whose ISA this one cannot
    run is rebuilt for this machine's native ISA (same numbers within float32 tolerance, not
    bit for bit), with a warning."""
    if not kernels.host_runs(schedule.target):
        if target != "native":
            raise ValueError(f"this Model was compiled for target={target!r}, which this machine cannot run "
                             f"(its compiler offers {kernels.native_isa()!r})")
        native = kernels.native_isa()
        _log.warning("rebuilding a Model compiled for %s on a machine that offers %s: its kernels change "
                     "(results agree within float32 tolerance, not bit for bit)", schedule.target, native)
        schedule, plan = dataclasses.replace(schedule, target=native), None
    return _artifact(build_program(spec, schedule, plan=plan), prefix, target)


def generate_sources(spec: Any, weights: Mapping[str, Any] | None = None, *, prefix: str = "lstm",
                     time_loop: str = "looped", seq_len: int | None = None, chunk: int = 0,
                     target: str = "portable", math: str = "approx", allow_nonfinite: bool = False,
                     plan: Mapping[str, Any] | None = None, weights_dtype: str = "float32") -> Sources:
    """The C of `generate` as {filename: text}, without writing it."""
    spec = as_spec(spec)
    program = build_program(spec, make_schedule(time_loop, seq_len, chunk, target, math, weights_dtype), plan=plan)
    packed = (pack(spec, weights, allow_nonfinite=allow_nonfinite, unit_block=program.unit_block, panel=program.panel,
                   weights_dtype=program.schedule.weights, kgroup=program.kgroup) if weights is not None else None)
    return render(program, prefix, packed)


def schedule_for(spec: Any, *, time_loop: str = "looped", seq_len: int | None = None, chunk: int = 0,
                 target: str = "portable", math: str = "approx", plan: Mapping[str, Any] | None = None,
                 weights_dtype: str = "float32") -> ScheduledProgram:
    """The ScheduledProgram compile/generate would render (what `lstmgen inspect` prints)."""
    return build_program(as_spec(spec), make_schedule(time_loop, seq_len, chunk, target, math, weights_dtype), plan=plan)


def generate(spec: Any, weights: Mapping[str, Any] | None, out_dir: str | os.PathLike[str], *,
             prefix: str = "lstm", time_loop: str = "looped", seq_len: int | None = None,
             chunk: int = 0, target: str = "portable", math: str = "approx",
             allow_nonfinite: bool = False, plan: Mapping[str, Any] | None = None, force: bool = False,
             weights_dtype: str = "float32") -> list[str]:
    """Write standalone C for the spec into out_dir: <prefix>.h, <prefix>.c and, when weights are
    given, <prefix>_weights.c with them as static const arrays. Returns the paths written.

    target 'portable' (default) is plain C99 for any compiler; 'avx2', 'avx512', 'neon' or
    'native' (this machine's) emit intrinsics that need the matching compiler flags (the .c
    says which). math 'approx' (default: libm-free sigmoid/tanh, as accurate as libm's) or 'libm'.
    weights_dtype: 'float32' (default), 'float16', 'bfloat16' or 'int8' (see compile).
    Existing files are replaced only when lstmgen wrote them (force=True: any regular file);
    symlinks are never written through (output.write_files)."""
    sources = generate_sources(spec, weights, prefix=prefix, time_loop=time_loop, seq_len=seq_len,
                               chunk=chunk, target=target, math=math, allow_nonfinite=allow_nonfinite, plan=plan,
                               weights_dtype=weights_dtype)
    return write_files(out_dir, sources.files, force=force)
