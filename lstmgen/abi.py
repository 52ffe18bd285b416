"""The C ABI every generated model shares, described once.

Input: nothing (constants). Output: the weight fields of `<p>_cell_weights` (and of the head's
`<p>_linear_weights`), the error codes, the
entry-point names, and the strict warning flags the generated C is held to. The templates (header,
cffi cdef, weights file), the runtime (which fields to fill, what a return code means), the embedded
folder and its self-test all read these; none of them spells a field, a code or a flag again.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class WeightField:
    """One pointer of `<p>_cell_weights`: its C name, its shape in the kernels' layout, and when
    a model needs it (`always`, or the spec attribute that must be true)."""

    name: str
    shape: str
    needed_when: str  # "always" | "bias" | "proj_size" | "peepholes" | "proj_size int8" | "int8"
    matrix: bool = False  # stored in the schedule's weights dtype (the rest is always float32)

    def needed(self, spec: object, weights_dtype: str = "float32") -> bool:
        words = self.needed_when.split()
        if "int8" in words and weights_dtype != "int8":
            return False
        return all(w in ("always", "int8") or bool(getattr(spec, w)) for w in words)


# In struct order: the runtime, the weights file and the embedded pointer table follow it.
# s_ih, s_hh, s_hr: with int8 weights, the float32 scale of each output column (w = q * s).
WEIGHT_FIELDS = (
    WeightField("w_ih", "(I_k, 4H)", "always", matrix=True),
    WeightField("w_hh", "(R, 4H)", "always", matrix=True),
    WeightField("bias", "(4H)", "bias"),
    WeightField("w_hr", "(H, P)", "proj_size", matrix=True),
    WeightField("w_ph", "(3H)", "peepholes"),
    WeightField("s_ih", "(4H)", "int8"),
    WeightField("s_hh", "(4H)", "int8"),
    WeightField("s_hr", "(P)", "proj_size int8"),
)
FIELD_NAMES = tuple(f.name for f in WEIGHT_FIELDS)


def cell_fields(weights_dtype: str = "float32") -> tuple[WeightField, ...]:
    """The fields `<p>_cell_weights` has for a weights dtype: the scales only with int8 (so a
    float32 model's struct is what it always was)."""
    return tuple(f for f in WEIGHT_FIELDS if weights_dtype == "int8" or "int8" not in f.needed_when.split())

# A model with a head has `<p>_linear_weights head[K]` after the cells in `<p>_weights`: one per
# Linear of spec.head, in head order (torch's head.{i}.weight and head.{i}.bias, untransposed).
# `needed_when` reads the spec.HeadLayer.
HEAD_FIELDS = (
    WeightField("weight", "(out, in)", "always"),
    WeightField("bias", "(out)", "bias"),
)
HEAD_FIELD_NAMES = tuple(f.name for f in HEAD_FIELDS)

# Error codes (name, value, meaning); <P>_<name> in the header, documented there.
ERRORS = (
    ("OK", 0, "success"),
    ("ERR_NULL", -1, "a required pointer is NULL"),
    ("ERR_SIZE", -2, "T or B < 1, T differs from a fixed SEQ_LEN, or a row index is out of range"),
    ("ERR_LENGTHS", -3, "some lengths[b] is outside [1, T]"),
    ("ERR_WORKSPACE", -4, "the workspace is smaller than *_workspace_floats(T, B)"),
    ("ERR_WEIGHTS", -5, "a weight pointer the model needs is NULL"),
    ("ERR_OVERFLOW", -6, "T * B is too large to address"),
    ("ERR_ALIAS", -7, "an output buffer overlaps another buffer (only h_n == h0 and c_n == c0 exactly may share)"),
)
ERROR_TEXT = {value: f"{name}: {doc}" for name, value, doc in ERRORS}

# Entry points, as suffixes of <p>_: every model, streaming models, embedded (static-memory) folders.
CORE_ENTRIES = ("workspace_floats", "forward")
STREAM_ENTRIES = ("step", "reset", "reset_row")
STATIC_ENTRIES = ("state_init", "state_reset", "state_reset_row", "state_forward", "state_step")

# What the generated C must compile clean with (gcc and clang); the embedded folder's Makefile and
# the tests use these.
WARN_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Wdouble-promotion", "-Wconversion", "-Wvla", "-Werror")


def error_text(code: int) -> str:
    """What a negative return code of a generated function means."""
    return ERROR_TEXT.get(code, "unknown error")


def entry_points(prefix: str, *, stream: bool, static: bool = False) -> tuple[str, ...]:
    """The public C symbols of one model."""
    names = CORE_ENTRIES + (STREAM_ENTRIES if stream else ()) + (STATIC_ENTRIES if static else ())
    return tuple(f"{prefix}_{n}" for n in names)
