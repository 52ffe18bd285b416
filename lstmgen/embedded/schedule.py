"""The embedded schedule: which static program a microcontroller build runs, and its weight layout.

Input: an LSTMSpec and the static-build options (max batch, plus a fixed maximum sequence length or
the time-chunked schedule; time loop; math). Output: the `Schedule` (`embedded_schedule`), the
`ScheduledProgram` (`embedded_program`) and the weights packed in the layout its kernels
read (`pack_weights`). This is the embedded package's only door into schedule.build_program
and weights.pack.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..kernels import check_weights_dtype
from ..schedule import Schedule, ScheduledProgram, build_program
from ..spec import LSTMSpec
from ..weights import PackedCell, pack

# Time window of the chunked schedule when the caller fixes neither chunk nor seq_len: four rows
# share each weight load in the projection GEMM while the workspace stays a few KiB.
DEFAULT_CHUNK = 4


def embedded_schedule(spec: LSTMSpec, *, max_batch: int = 1, seq_len: int | None = None, chunk: int | None = None,
                      time_loop: str = "looped", math: str = "approx", weights_dtype: str = "float32") -> Schedule:
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
                    math=math, weights=check_weights_dtype(weights_dtype))


def embedded_program(spec: LSTMSpec, *, max_batch: int = 1, seq_len: int | None = None, chunk: int | None = None,
                     time_loop: str = "looped", math: str = "approx", weights_dtype: str = "float32") -> ScheduledProgram:
    """The lowered ScheduledProgram of a static build (see embedded_schedule for the options)."""
    return build_program(spec, embedded_schedule(spec, max_batch=max_batch, seq_len=seq_len, chunk=chunk,
                                                 time_loop=time_loop, math=math, weights_dtype=weights_dtype))


def pack_weights(program: ScheduledProgram, weights: Mapping[str, Any], allow_nonfinite: bool = False) -> list[PackedCell]:
    """The weights in the layout this program's kernels read, one PackedCell per (layer, direction)."""
    return pack(program.spec, weights, allow_nonfinite=allow_nonfinite, unit_block=program.unit_block,
                panel=program.panel, weights_dtype=program.schedule.weights, kgroup=program.kgroup)
