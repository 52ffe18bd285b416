"""The public entry points: compile, generate, from_torch.

Input: an LSTMSpec (or anything LSTMSpec.from_dict takes) and torch-named weights.
Output: a callable `Model` (compile) or a folder of standalone C (generate).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from . import build as _build
from . import kernels
from .codegen import Sources, check_prefix, kernel_plan, render
from .ir import Schedule, build_program
from .runtime import Model
from .spec import LSTMSpec
from .weights import pack


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
            allow_nonfinite: bool = False) -> Model:
    """Lower -> render C -> build with cffi (cached) -> load. Returns a Model callable like nn.LSTM.

    The weights are passed to C as pointers at call time, so every weight set of a shape and
    schedule shares one compiled module (see Model.with_weights). target: 'native' (the vector
    kernels this machine runs best, built with -march=native), 'portable', 'avx2', 'avx512' or
    'neon'; math: 'approx' (libm-free vector sigmoid/tanh) or 'libm' (see kernels.py).
    """
    spec = as_spec(spec)
    check_prefix(prefix)
    schedule = make_schedule(time_loop, seq_len, chunk, target, math)
    if target != "native" and not kernels.host_runs(schedule.target):
        raise ValueError(f"target={target!r}: this machine cannot run {schedule.target} code "
                         f"(its compiler offers {kernels.native_isa()!r}); use target='native' or 'portable'")
    program = build_program(spec, schedule)
    # validate and pack before any build work
    packed = pack(spec, weights, allow_nonfinite=allow_nonfinite, unit_block=kernel_plan(program).unit_block)
    sources = render(program, prefix)
    module = _build.build(sources, target=target)
    return Model(spec, program, module, prefix, packed)


def generate_sources(spec: Any, weights: Mapping[str, Any] | None = None, *, prefix: str = "lstm",
                     time_loop: str = "looped", seq_len: int | None = None, chunk: int = 0,
                     target: str = "portable", math: str = "libm", allow_nonfinite: bool = False) -> Sources:
    spec = as_spec(spec)
    program = build_program(spec, make_schedule(time_loop, seq_len, chunk, target, math))
    unit_block = kernel_plan(program).unit_block
    packed = pack(spec, weights, allow_nonfinite=allow_nonfinite, unit_block=unit_block) if weights is not None else None
    return render(program, prefix, packed)


def generate(spec: Any, weights: Mapping[str, Any] | None, out_dir: str | os.PathLike[str], *,
             prefix: str = "lstm", time_loop: str = "looped", seq_len: int | None = None,
             chunk: int = 0, target: str = "portable", math: str = "libm",
             allow_nonfinite: bool = False) -> list[str]:
    """Write standalone C for the spec into out_dir: <prefix>.h, <prefix>.c and, when weights are
    given, <prefix>_weights.c with them as static const arrays. Returns the paths written.

    target 'portable' (default) is plain C99 for any compiler; 'avx2', 'avx512', 'neon' or
    'native' (this machine's) emit intrinsics that need the matching compiler flags (the .c
    says which). math 'libm' (default) or 'approx' (no libm calls for the torch cell)."""
    sources = generate_sources(spec, weights, prefix=prefix, time_loop=time_loop, seq_len=seq_len,
                               chunk=chunk, target=target, math=math, allow_nonfinite=allow_nonfinite)
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, text in sorted(sources.files.items()):
        path = os.path.join(out_dir, name)
        with open(path, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        paths.append(path)
    return paths


def from_torch(module: Any, *, batch_first: bool | None = None,
               prefix: str | None = None) -> tuple[LSTMSpec, dict[str, Any]]:
    """(spec, weights) from a torch.nn.LSTM instance, a state_dict, or a .pt/.pth/.npz file of one.

    For a state_dict the spec is inferred from its keys and shapes (see lstmgen.importers);
    batch_first cannot be inferred and defaults to False; `prefix` picks the LSTM's keys out of an
    enclosing module's state_dict. torch is needed for modules and .pt/.pth files only.
    """
    if isinstance(module, (str, os.PathLike, Mapping)):
        from .importers import from_state_dict

        return from_state_dict(module, batch_first=bool(batch_first), prefix=prefix)
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - exercised only without torch
        raise ImportError("lstmgen.from_torch needs torch installed") from exc
    if not isinstance(module, torch.nn.LSTM):
        raise TypeError(f"from_torch expects a torch.nn.LSTM, a state_dict or a path, got {type(module).__name__}")
    if batch_first is not None and batch_first != module.batch_first:
        raise ValueError(f"batch_first={batch_first} contradicts the module's batch_first={module.batch_first}")
    if prefix is not None:
        raise ValueError("prefix applies to state_dicts, not to a torch.nn.LSTM module")
    spec = LSTMSpec(
        input_size=module.input_size,
        hidden_size=module.hidden_size,
        num_layers=module.num_layers,
        bias=module.bias,
        batch_first=module.batch_first,
        dropout=float(module.dropout),
        bidirectional=module.bidirectional,
        proj_size=module.proj_size,
    )
    weights = {k: v.detach().cpu().to(torch.float32).numpy().copy() for k, v in module.state_dict().items()}
    return spec, weights
