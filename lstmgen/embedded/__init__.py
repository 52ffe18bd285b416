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

One module per job, data flowing down the list:
    schedule.py   spec + options -> the static Schedule and Program, the packed weights
    footprint.py  Program -> Footprint (flash, RAM, MACs) and the static-memory template values
    selftest.py   spec, weights, Footprint -> the self-test's golden vectors
    folder.py     all of the above -> the folder's files (embedded_sources, generate_embedded)
    toolchain.py  the folder's files -> arm-none-eabi sizes and stack depths; the report text
"""

from .folder import embedded_sources, generate_embedded
from .footprint import (
    CELL_POINTERS,
    MAX_STATE_BYTES,
    POINTER_BYTES,
    Footprint,
    check_static_size,
    footprint,
    static_context,
    weight_floats,
)
from .schedule import DEFAULT_CHUNK, embedded_program, embedded_schedule, pack_weights
from .selftest import (
    DEFAULT_TOLERANCE,
    MAX_SELFTEST_FLOATS,
    check_selftest_size,
    selftest_context,
    selftest_floats,
    selftest_steps,
)
from .toolchain import CPU_FLAGS, WARN_FLAGS, Measurement, arm_tool, measure, report

__all__ = [
    "CELL_POINTERS", "CPU_FLAGS", "DEFAULT_CHUNK", "DEFAULT_TOLERANCE", "MAX_SELFTEST_FLOATS", "MAX_STATE_BYTES",
    "POINTER_BYTES", "WARN_FLAGS", "Footprint", "Measurement", "arm_tool", "check_selftest_size", "check_static_size",
    "embedded_program", "embedded_schedule", "embedded_sources", "footprint", "generate_embedded", "measure",
    "pack_weights", "report", "selftest_context", "selftest_floats", "selftest_steps", "static_context", "weight_floats",
]
