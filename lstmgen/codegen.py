"""Code generation: render a ScheduledProgram (and optionally its weights) to C sources.

Input: `ScheduledProgram` (from schedule.build_program), a validated prefix, optional packed weights.
Output: `Sources` — {filename: text} for `<prefix>.h`, `<prefix>.c` and, when weights are
embedded, `<prefix>_weights.c`; plus the cffi cdef text for the same API.

All decisions are made here; the Jinja templates only spell them. Nothing a user types reaches
the C except the prefix, which must be a plain C identifier. Floats are written as C99 hex
literals, which round-trip every float32 bit-exactly. Output is byte-stable (no time, no paths).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import jinja2
import numpy as np

from . import __version__, kernels
from .abi import ERRORS, HEAD_FIELD_NAMES, HEAD_FIELDS, cell_fields
from .ir import Head, Recurrence
from .kernels import WEIGHT_CTYPES
from .schedule import WINDOW_FLOATS, ScheduledProgram, batch_offset
from .spec import Activation
from .weights import PackedCell, PackedLinear, panel_rows, split_packed

C_KEYWORDS = frozenset(
    """auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef union
    unsigned void volatile while _Bool _Complex _Imaginary _Alignas _Alignof _Atomic _Generic
    _Noreturn _Static_assert _Thread_local bool true false asm typeof NULL main""".split()
)
_PREFIX_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,30}")


def check_prefix(prefix: object) -> str:
    """A prefix becomes part of every C symbol: a plain ASCII identifier, not a keyword."""
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string, got {type(prefix).__name__}")
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(
            f"prefix {prefix!r} is not a valid C identifier prefix: use 1-31 ASCII letters, digits or "
            "underscores, starting with a letter"
        )
    if prefix in C_KEYWORDS or prefix.upper() in C_KEYWORDS:
        raise ValueError(f"prefix {prefix!r} is a C keyword or reserved name")
    if prefix.upper() in _DEVICE_NAMES:  # <prefix>.h would be a device, not a file, on Windows
        raise ValueError(f"prefix {prefix!r} is a reserved file name on Windows")
    return prefix


_DEVICE_NAMES = frozenset(["CON", "PRN", "AUX", "NUL", "CONIN", "CONOUT"] + [f"{d}{i}" for d in ("COM", "LPT") for i in range(10)])
_INT32_MAX = 2**31 - 1


def _check_schedule_ints(sched: object) -> None:
    """Sizes that reach the C as int32 literals must fit (a bigger literal would not compile)."""
    for name in ("seq_len", "chunk", "max_batch"):
        v = getattr(sched, name, None)
        if v is not None and not (isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= _INT32_MAX):
            raise ValueError(f"{name} must be an int in [0, {_INT32_MAX}] to reach the C, got {v!r}")


def c_float(value: float) -> str:
    """A float32 as a C99 hex literal that round-trips bit-exactly (e.g. 0x1.99999ap-3f)."""
    f = float(np.float32(value))
    if not math.isfinite(f):
        if math.isnan(f):
            return "(0.0f / 0.0f)"
        return "(1.0f / 0.0f)" if f > 0 else "(-1.0f / 0.0f)"
    if f == 0.0:
        return "-0.0f" if math.copysign(1.0, f) < 0 else "0.0f"
    mant, exp = f.hex().split("p")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}p{exp}f"


def c_activation(act: Activation, var: str, p: str, math: str = "libm") -> str:
    """The C expression for an ONNX activation applied to the local variable `var`.
    math="approx" spells tanh as the generated libm-free `<p>_tanh` (kernels.py)."""
    a = c_float(act.alpha) if act.alpha is not None else ""
    b = c_float(act.beta) if act.beta is not None else ""
    tanh = f"{p}_tanh" if math == "approx" else "tanhf"
    table = {
        "Sigmoid": f"{p}_sigmoid({var})",
        "Tanh": f"{tanh}({var})",
        "Relu": f"({var} < 0.0f ? 0.0f : {var})",
        "Affine": f"({a} * {var} + {b})",
        "LeakyRelu": f"({var} < 0.0f ? {a} * {var} : {var})",
        "ThresholdedRelu": f"({var} > {a} ? {var} : 0.0f)",
        "ScaledTanh": f"({a} * {tanh}({b} * {var}))",
        "HardSigmoid": f"fminf(fmaxf({a} * {var} + {b}, 0.0f), 1.0f)",
        "Elu": f"({var} < 0.0f ? {a} * (expf({var}) - 1.0f) : {var})",
        "Softsign": f"({var} / (1.0f + fabsf({var})))",
        "Softplus": f"{p}_softplus({var})",
    }
    return table[act.name]


@dataclass(frozen=True)
class Sources:
    files: dict[str, str]  # filename -> text
    cdef: str  # declarations for cffi
    prefix: str


@functools.cache
def _env() -> jinja2.Environment:
    """One Environment per process: Jinja caches the parsed templates on it."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("lstmgen", "templates"),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _view(program: ScheduledProgram, name: str, dst_offset: int = 0) -> tuple[str, str, str]:
    """C expressions (pointer, stride_t, stride_b) for a sequence buffer inside a window."""
    if name == "x":
        return "x", "x_st", "x_sb"
    if name == "y":
        return (f"y + {dst_offset}" if dst_offset else "y"), "y_st", "y_sb"
    row = program.buffer(name).row_floats
    ptr = _ws_ptr(program, name)
    if dst_offset:
        ptr = f"{ptr} + {dst_offset}"
    return ptr, f"(int64_t)B * {row}", str(row)


def _ws_ptr(program: ScheduledProgram, name: str) -> str:
    off = program.slots[program.slot_of(name)].offset_rows
    return f"ws + rows * {off}" if off else "ws"


def _head_tmp_ptr(program: ScheduledProgram, op: Head, P: str) -> str:
    """The head's scratch: the per-batch-row part of the workspace, after the window rows."""
    if op.scratch is None:
        return "NULL"
    off = batch_offset(program.program, op.scratch)
    return f"ws + rows * {P}_WS_ROW_FLOATS" + (f" + (int64_t)B * {off}" if off else "")


def _head_context(program: ScheduledProgram, p: str) -> dict | None:
    """The head function's steps, spelled for model.c.j2: which row pointer each layer reads and
    writes (a: the LSTM output row, s: scratch halves, o: the y row) and its widths."""
    op = next((o for o in program.ops if isinstance(o, Head)), None)
    if op is None:
        return None
    n_linear = sum(1 for h in op.layers if h.kind == "Linear")
    steps: list[dict] = []
    cur, width, k = "a", op.in_size, 0
    if not n_linear:
        steps.append(dict(kind="copy", src="a", dst="o", n=width, doc=f"no Linear: y is the LSTM output ({width} features)"))
        cur = "o"
    for i, layer in enumerate(op.layers):
        doc = f"head[{i}]: {layer}"
        if layer.kind == "Linear":
            dst = "o" if k == n_linear - 1 else ("s" if k % 2 == 0 else f"s + {op.half}")
            steps.append(dict(kind="linear", doc=doc, k=k, src=cur, dst=dst, n_in=layer.in_features,
                              n_out=layer.out_features, bias=layer.bias))
            cur, width, k = dst, layer.out_features, k + 1
        elif layer.kind == "Identity":
            steps.append(dict(kind="identity", doc=doc))
        else:
            steps.append(dict(kind=layer.kind.lower(), doc=doc, v=cur, n=width))
    kinds = {st["kind"] for st in steps}
    scratch = program.buffer(op.scratch).batch_floats if op.scratch else 0
    return dict(fn=f"{p}_head", steps=steps, kinds=kinds, scratch=scratch, in_size=op.in_size,
                text=" -> ".join(map(str, op.layers)), linears=n_linear)


def _window(program: ScheduledProgram, p: str, name: str, unrolled: bool) -> dict:
    spec = program.spec
    D = spec.num_directions
    ops = []
    for op in program.ops:
        if isinstance(op, Head):
            ops.append(dict(kind="head", doc=f"the head: y (Tw, B, {spec.head_output_size}) = head({op.src}) on every row",
                            src=_ws_ptr(program, op.src), tmp=_head_tmp_ptr(program, op, p.upper())))
            continue
        cell = op.layer * D + op.direction
        where = f"layer {op.layer}" + (f" {'reverse' if op.direction else 'forward'}" if D == 2 else "")
        if isinstance(op, Recurrence):
            dst, dst_st, dst_sb = _view(program, op.dst, op.dst_offset)
            fn = f"{p}_recur_l{op.layer}d{op.direction}" if unrolled else f"{p}_recur_v{op.variant}"
            ops.append(
                dict(
                    kind="recur",
                    doc=f"{where}: the recurrence over {op.gates_in} (sequential in t)",
                    fn=fn,
                    cell=cell,
                    gates=_ws_ptr(program, op.gates_in),
                    reverse=1 if op.reverse else 0,
                    state=op.state,
                    dst=dst,
                    dst_st=dst_st,
                    dst_sb=dst_sb,
                )
            )
        else:
            src, src_st, src_sb = _view(program, op.src)
            ops.append(
                dict(
                    kind="project",
                    doc=f"{where}: {op.dst} (Tw, B, 4H) = {op.src} (Tw, B, {op.in_size}) . W_ih^T + b (parallel in t)",
                    cell=cell,
                    in_size=op.in_size,
                    src=src,
                    src_st=src_st,
                    src_sb=src_sb,
                    dst=_ws_ptr(program, op.dst),
                )
            )
    return dict(name=name, ops=ops)


def render(program: ScheduledProgram, prefix: str, packed: Sequence[PackedCell] | None = None, *,
           static: dict | None = None) -> Sources:
    """ScheduledProgram (+ packed weights to embed) -> Sources.

    `static` (from embedded.static_context) adds the static-memory block to the header: the
    caller-owned state struct, its compile-time size and the footprint comment."""
    p = check_prefix(prefix)
    P = p.upper()
    spec, sched = program.spec, program.schedule
    _check_schedule_ints(sched)
    H, R, D, L = spec.hidden_size, spec.output_size, spec.num_directions, spec.num_layers
    stream = D == 1 and not spec.reverse
    banner = f"Generated by lstmgen {__version__} ({spec.summary()}; {sched}). Do not edit."
    consts = [
        ("INPUT_SIZE", spec.input_size, "I"),
        ("HIDDEN_SIZE", H, "H"),
        ("PROJ_SIZE", spec.proj_size, "P (0: no projection)"),
        ("OUTPUT_SIZE", R, "R: features of h (P if projecting, else H)"),
    ] + ([("HEAD_OUTPUT_SIZE", spec.head_output_size, "O: features of y per step (the head's output)")] if spec.head else []) + [
        ("NUM_LAYERS", L, "L"),
        ("NUM_DIRECTIONS", D, "D"),
        ("GATES", 4 * H, "4H"),
        ("BATCH_FIRST", int(spec.batch_first), "1: x and y are (B, T, F)"),
        ("SEQ_LEN", sched.seq_len or 0, "fixed T (0: any T)"),
        ("CHUNK", sched.chunk, "time window of the chunked schedule (0: whole sequence)"),
        ("NUM_PARAMETERS", spec.num_parameters, "floats in the state_dict"),
    ]
    api = dict(
        cells=L * D,
        stream=stream,
        x_shape=f"(B, T, {spec.input_size})" if spec.batch_first else f"(T, B, {spec.input_size})",
        y_shape=f"(B, T, {spec.head_output_size})" if spec.batch_first else f"(T, B, {spec.head_output_size})",
        unit_block=program.unit_block,
        fields=[f.name for f in cell_fields(sched.weights)],
        field_types={f.name: (WEIGHT_CTYPES[sched.weights] if f.matrix else "float") for f in cell_fields(sched.weights)},
        weights_dtype=sched.weights,
        panel=program.panel,
        head_linears=len(spec.head_linears()),
        head_fields=HEAD_FIELD_NAMES,
        head_text=" -> ".join(map(str, spec.head)),
        step_y="O" if spec.head else "R",
    )
    variants = []
    for i, v in enumerate(program.variants):
        f, g, h = v.activations
        variants.append(
            dict(
                index=i,
                text=str(v),
                peepholes=v.peepholes,
                clip=c_float(v.clip) if v.clip is not None else None,
                input_forget=v.input_forget,
                projection=v.projection,
                act_i=c_activation(f, "zi", p, sched.math),
                act_f=c_activation(f, "zf", p, sched.math),
                act_o=c_activation(f, "zo", p, sched.math),
                act_g=c_activation(g, "zg", p, sched.math),
                act_h=c_activation(h, "cn", p, sched.math),
            )
        )
    unrolled = sched.time_loop == "unrolled"
    recurrences = []
    windows = []
    need_looped = not unrolled or stream
    if need_looped:
        for v in variants:
            recurrences.append(dict(name=f"{p}_recur_v{v['index']}", doc=f"Recurrence with cell v{v['index']}, looped over the window.", unrolled=False, variant=v, steps=()))
        windows.append(_window(program, p, f"{p}_window", unrolled=False))
    if unrolled:
        T = sched.seq_len
        for op in program.ops:
            if isinstance(op, Recurrence):
                steps = list(range(T - 1, -1, -1)) if op.reverse else list(range(T))
                recurrences.append(
                    dict(
                        name=f"{p}_recur_l{op.layer}d{op.direction}",
                        doc=f"Layer {op.layer} direction {op.direction}, cell v{op.variant}, unrolled over T = {T} steps.",
                        unrolled=True,
                        variant=variants[op.variant],
                        steps=steps,
                    )
                )
        windows.append(_window(program, p, f"{p}_window_unrolled", unrolled=True))
    # w_ih and w_hh are checked always; the optional fields when this spec needs them
    weight_checks = "".join(f" || cw->{f.name} == NULL" for f in cell_fields(sched.weights)
                            if f.needed_when != "always" and f.needed(spec, sched.weights))
    head_checks = " || ".join(f"w->head[{k}].{f.name} == NULL" for k, (_, layer) in enumerate(spec.head_linears())
                              for f in HEAD_FIELDS if f.needed(layer))
    acts = [a.name for v in program.variants for a in v.activations]
    sizes = program.sizes(p)
    ctx = dict(
        k=kernel_context(program, p),
        p=p,
        P=P,
        spec=spec,
        banner=banner,
        consts=consts,
        errors=[(n, v, doc) for n, v, doc in ERRORS],
        api=api,
        schedule=str(sched),
        schedule_obj=sched,
        program_lines=str(program).splitlines()[1:],
        row_floats=program.row_floats,
        auto_window=program.auto_window,
        window_floats=WINDOW_FLOATS,
        sizes=sizes,
        fields=api["fields"],
        batch_floats=program.batch_floats,
        variants=variants,
        recurrences=recurrences,
        windows=windows,
        forward_window=windows[-1]["name"],
        step_window=windows[0]["name"],
        weight_checks=weight_checks,
        head_checks=head_checks,
        head=_head_context(program, p),
        step_y=f"{P}_HEAD_OUTPUT_SIZE" if spec.head else f"{P}_OUTPUT_SIZE",
        uses_clip=any(v.clip is not None for v in program.variants),
        uses_softplus="Softplus" in acts,
        uses_sigmoid="Sigmoid" in acts,
        uses_rows=program.batch_floats > 0 or any(s.offset_rows for s in program.slots),
        y_row=spec.head_output_size,
        embedded=packed is not None,
        static=static,
    )
    env = _env()
    files = {
        f"{p}.h": env.get_template("model.h.j2").render(ctx),
        f"{p}.c": env.get_template("model.c.j2").render(ctx),
    }
    if packed is not None:
        cells, linears = split_packed(packed)
        files[f"{p}_weights.c"] = env.get_template("weights.c.j2").render(ctx, cells=_weights_ctx(cells, sched.weights),
                                                                          head_weights=_head_weights_ctx(linears))
    cdef = env.get_template("cdef.j2").render(ctx)
    return Sources(files=files, cdef=cdef, prefix=p)


def _array_lines(arr: np.ndarray, per_line: int = 6) -> list[str]:
    """C initialisers: float32 as exact hex floats, float16/bfloat16 bits (uint16) in hex, int8 in decimal."""
    if arr.dtype == np.uint16:
        flat, per_line = [f"0x{int(v):04x}" for v in arr.ravel()], 12
    elif arr.dtype == np.int8:
        flat, per_line = [str(int(v)) for v in arr.ravel()], 16
    else:
        flat = [c_float(v) for v in np.asarray(arr, dtype=np.float32).ravel()]
    return [", ".join(flat[i : i + per_line]) for i in range(0, len(flat), per_line)]


# The row-panel layout's matrices (weights.py), as their comment in <p>_weights.c names them: torch's (rows, K)
_PANEL_SHAPES = {"w_ih": "(4H, I_k)", "w_hh": "(4H, R)", "w_hr": "(P, H)"}


def _weights_ctx(packed: Sequence[PackedCell], weights_dtype: str = "float32") -> list[dict]:
    cells = []
    for cell in packed:
        arrays = []
        for f in cell_fields(weights_dtype):
            arr = getattr(cell, f.name)
            if arr is None:
                continue
            if cell.panel and f.name in _PANEL_SHAPES:
                shape = f"{_PANEL_SHAPES[f.name]} in panels of {cell.panel} rows, each (K, rows), {arr.size} values"
            else:
                shape = f.shape + " " + "x".join(map(str, arr.shape))
            arrays.append(dict(field=f.name, shape=shape, size=arr.size, lines=_array_lines(arr),
                               ctype=WEIGHT_CTYPES[weights_dtype] if f.matrix else "float"))
        cells.append(dict(layer=cell.layer, direction=cell.direction, arrays=arrays, fields=[a["field"] for a in arrays]))
    return cells


def _head_weights_ctx(linears: Sequence[PackedLinear]) -> list[dict]:
    out = []
    for k, lin in enumerate(linears):
        arrays = [dict(field=f.name, shape=f"{f.shape} " + "x".join(map(str, arr.shape)), size=arr.size, lines=_array_lines(arr))
                  for f in HEAD_FIELDS for arr in [getattr(lin, f.name)] if arr is not None]
        out.append(dict(k=k, index=lin.index, arrays=arrays, fields=[a["field"] for a in arrays]))
    return out


# ---- kernels: the vector ISA's spelling and the plan's numbers, for kernels.j2 ------------------

_X86 = {16: ("__m512", "_mm512"), 8: ("__m256", "_mm256"), 4: ("__m128", "_mm")}
_GUARDS = {
    "avx512": ("defined(__AVX512F__) && defined(__AVX512VL__) && defined(__FMA__)", "-mavx512f -mavx512vl -mfma (or -march=native)"),
    "avx2": ("defined(__AVX2__) && defined(__FMA__)", "-mavx2 -mfma (or -march=native)"),
    "neon": ("defined(__aarch64__) && defined(__ARM_NEON)", "an AArch64 compiler"),
}


# Every vector form takes a / b with the divider. A reciprocal estimate refined by Newton steps
# was measured against it: on Zen 5, AVX-512 division is as fast as rcp14 + one step and gives
# sigmoid(-inf) = 0 where rcp14 gives 6e-39; on Zen 3 the AVX2 divider beats rcp + two steps on
# the cell's dependency chain (a microbenchmark of one step h -> gates -> c -> h: 40 ns against
# 48), and is correctly rounded.


def _loadw(isa: str, vw: int, dtype: str) -> str:
    """The body of vloadw: vw weights of dtype at `a` widened to float32 (reads exactly vw of them)."""
    if isa == "neon":
        return {"float16": "return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(a)))",
                "bfloat16": "return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(a), 16))",
                "int8": ("int32_t q;\n    memcpy(&q, a, 4);\n    return vcvtq_f32_s32(vmovl_s16(vget_low_s16(vmovl_s8("
                         "vreinterpret_s8_s32(vdup_n_s32(q))))))")}[dtype]
    pre = _X86[vw][1]
    if dtype == "int8":  # vw bytes
        raw = {16: "_mm_loadu_si128((const __m128i *)(const void *)a)", 8: "_mm_loadl_epi64((const __m128i *)(const void *)a)",
               4: "_mm_cvtsi32_si128(q)"}[vw]
        head = "int32_t q;\n    memcpy(&q, a, 4);\n    " if vw == 4 else ""
        return f"{head}return {pre}_cvtepi32_ps({pre}_cvtepi8_epi32({raw}))"
    raw = {16: "_mm256_loadu_si256((const __m256i *)(const void *)a)", 8: "_mm_loadu_si128((const __m128i *)(const void *)a)",
           4: "_mm_loadl_epi64((const __m128i *)(const void *)a)"}[vw]
    if dtype == "float16":
        return f"return {pre}_cvtph_ps({raw})"
    bits = {16: "512", 8: "256", 4: "128"}[vw]
    return f"return {pre}_castsi{bits}_ps({pre}_slli_epi32({pre}_cvtepu16_epi32({raw}), 16))"  # bfloat16: the top half


def _pair_ops(isa: str, vw: int) -> tuple[str, list[tuple[str, str, str, str]]]:
    """A paired bfloat16 row (weights._paired: 2 vw weights, a 32-bit lane holding one of each gate
    vector): its integer vector type, and the ops loadwp (one load of the pair's bits), widene and
    wideno (the even and odd gate vector as floats: a shift, a mask). One load for both: loading in
    each op lets the compiler fold both loads, reading every weight twice."""
    V = "{p}_vf"
    if isa == "neon":
        return "uint32x4_t", [("loadwp", "{p}_vi", "const uint16_t *a", "return vreinterpretq_u32_u16(vld1q_u16(a))"),
                              ("widene", V, "{p}_vi r", "return vreinterpretq_f32_u32(vshlq_n_u32(r, 16))"),
                              ("wideno", V, "{p}_vi r", "return vreinterpretq_f32_u32(vandq_u32(r, vdupq_n_u32(0xffff0000u)))")]
    pre = _X86[vw][1]
    bits = {16: "512", 8: "256", 4: "128"}[vw]
    load = f"{pre}_loadu_si{bits}((const void *)a)" if vw == 16 else f"{pre}_loadu_si{bits}((const __m{bits}i *)(const void *)a)"
    return f"__m{bits}i", [("loadwp", "{p}_vi", "const uint16_t *a", "return " + load),
                           ("widene", V, "{p}_vi r", f"return {pre}_castsi{bits}_ps({pre}_slli_epi32(r, 16))"),
                           ("wideno", V, "{p}_vi r", f"return {pre}_castsi{bits}_ps({pre}_and_si{bits}(r, {pre}_set1_epi32((int)0xffff0000u)))")]


def _vector_ops(isa: str, vw: int, dtype: str = "float32") -> tuple[str, str, list[tuple[str, str, str, str]]]:
    """(header, vector type, [(name, return type, parameters, body)]) for the inline vector ops."""
    V = "{p}_vf"
    if isa == "neon":
        header, vtype = "arm_neon.h", "float32x4_t"
        spell = dict(load="vld1q_f32(a)", store="vst1q_f32(a, v)", set1="vdupq_n_f32(x)", fma="vfmaq_f32(c, a, b)",
                     mul="vmulq_f32(a, b)", add="vaddq_f32(a, b)", min="vminq_f32(a, b)", max="vmaxq_f32(a, b)",
                     div="vdivq_f32(a, b)", abs="vabsq_f32(a)", sub="vsubq_f32(a, b)",
                     exp2bits="vreinterpretq_f32_s32(vshlq_n_s32(vreinterpretq_s32_f32(a), 23))",
                     blendlt="vbslq_f32(vcltq_f32(a, b), t, f)", copysign="vbslq_f32(vdupq_n_u32(0x80000000u), b, a)")
    else:
        vtype, pre = _X86[vw]
        header = "immintrin.h"
        bits = {16: "512", 8: "256", 4: "128"}[vw]
        si = f"{pre}_castsi{bits}_ps({pre}_slli_epi32({pre}_castps_si{bits}(a), 23))"
        if vw == 16:
            blend = f"{pre}_mask_blend_ps({pre}_cmp_ps_mask(a, b, _CMP_LT_OQ), f, t)"
            absv = f"{pre}_abs_ps(a)"
        else:
            blend = f"{pre}_blendv_ps(f, t, {pre}_cmp_ps(a, b, _CMP_LT_OQ))"
            absv = f"{pre}_andnot_ps({pre}_set1_ps(-0.0f), a)"
        if isa == "avx512":  # bitwise select (0xca): sign bit from b, the rest from a
            csign = (f"{pre}_castsi{bits}_ps({pre}_ternarylogic_epi32({pre}_set1_epi32(INT32_MIN), "
                     f"{pre}_castps_si{bits}(b), {pre}_castps_si{bits}(a), 0xca))")
        else:
            csign = f"{pre}_or_ps(a, {pre}_and_ps(b, {pre}_set1_ps(-0.0f)))"
        spell = dict(load=f"{pre}_loadu_ps(a)", store=f"{pre}_storeu_ps(a, v)", set1=f"{pre}_set1_ps(x)",
                     fma=f"{pre}_fmadd_ps(a, b, c)", mul=f"{pre}_mul_ps(a, b)", add=f"{pre}_add_ps(a, b)",
                     min=f"{pre}_min_ps(a, b)", max=f"{pre}_max_ps(a, b)", div=f"{pre}_div_ps(a, b)", abs=absv, exp2bits=si, sub=f"{pre}_sub_ps(a, b)",
                     blendlt=blend, copysign=csign)
    one, two = f"{V} a", f"{V} a, {V} b"
    ops = [
        ("load", V, "const float *a", "return " + spell["load"]),
        # weights, widened from the schedule's dtype (float32: the plain load)
        ("loadw", V, f"const {WEIGHT_CTYPES[dtype]} *a", "return " + spell["load"] if dtype == "float32" else _loadw(isa, vw, dtype)),
    ] + (_pair_ops(isa, vw)[1] if dtype == "bfloat16" else []) + [
        ("store", "void", f"float *a, {V} v", spell["store"]),
        ("set1", V, "float x", "return " + spell["set1"]),
        ("fma", V, f"{V} a, {V} b, {V} c", "return " + spell["fma"]),
    ] + [(name, V, two, "return " + spell[name]) for name in ("add", "mul", "min", "max")] + [
        # a - b; a's bits shifted left by 23 (2^k from MAGIC + k); |a|
        ("sub", V, two, "return " + spell["sub"]),
        ("exp2bits", V, one, "return " + spell["exp2bits"]),
        ("abs", V, one, "return " + spell["abs"]),
        ("div", V, two, "return " + spell["div"]),  # a / b
        # lanes where a < b (false for NaN) take t, the others f
        ("blendlt", V, f"{V} a, {V} b, {V} t, {V} f", "return " + spell["blendlt"]),
        # a (non-negative or NaN) with b's sign bit
        ("copysign", V, two, "return " + spell["copysign"]),
    ]
    return header, vtype, ops


def _partials(ks: int) -> list[str]:
    """C names of a tile's ks partial sums: c (which also holds the result), d1, d2, ..."""
    return ["c"] + [f"d{s}" for s in range(1, ks)]


def _pairwise(ks: int) -> list[tuple[str, str, str]]:
    """The partial sums added pairwise into c, as (dst, a, b) for dst = a + b in order:
    ks = 2: c + d1; ks = 3: (c + d1) + d2; ks = 4: (c + d1) + (d2 + d3)."""
    names, steps, width = _partials(ks), [], 1
    while width < ks:
        steps += [(names[i], names[i], names[i + width]) for i in range(0, ks - width, 2 * width)]
        width *= 2
    return steps


def _tile(kind: str, name: str, rows: int, nb: int, bw: int, ks: int, P: str, epilogue: str = "store",
          wt: str = "float", int8: bool = False, bf16: bool = False) -> dict:
    """One register tile for kernels.j2's `tile`: rows x nb blocks x bw vectors of accumulators,
    ks partial sums, how its rows read inputs and start, and its epilogue: store (to t.dst),
    vcell (the vector cell on registers) or cell (the scalar cell through a buffer)."""
    if not 1 <= ks <= 4:
        raise ValueError(f"ks must be 1..4 partial sums, got {ks}")
    if not (1 <= rows <= 9 and 1 <= bw <= 9):  # C names join the indices: c{row}{block}{vector}
        raise ValueError(f"a register tile has 1..9 rows and 1..9 vectors per block, got {rows} x {bw}")
    r = range(rows)
    spell = {
        "project": dict(decls=[f"const float *restrict a{i} = a[{i}];" for i in r], src=[f"a{i}" for i in r],
                        init=[f"init + {i} * init_rs" for i in r], post=["post"] * rows, post_guard="post != NULL",
                        post_intro="if (post != NULL) { /* the bias, after the last chunk of the sum */",
                        dst=[f"dst[{i}]" for i in r], ldw=f"{P}_G4"),
        "step": dict(decls=[f"const float *h{i} = h[{i}]; /* may be the row hn[r] points into (written after the last read) */"
                            for i in r], src=[f"h{i}" for i in r], init=[], post=[f"g[{i}]" for i in r], post_guard=None,
                     post_intro="/* then the input part: the sum over h ran from zero, so its rounding stays small */",
                     dst=[], ldw=f"{P}_G4"),
        "matvec": dict(decls=[], src=["x"], init=[], post=[], post_guard=None, post_intro="", dst=["y"], ldw="N"),
    }[kind]
    # int8 weights: each output's sum is scaled once, at the end (fma with the value added there)
    scale = {"project": "scale", "step": "cw->s_hh + (int64_t)j0 * 4", "matvec": "s"}[kind] if int8 else None
    # bfloat16 W_ih / W_hh rows hold their gate vectors in interleaved pairs (weights._paired)
    paired = bf16 and kind != "matvec"
    return dict(spell, kind=kind, name=name, rows=rows, nb=nb, bw=bw, ks=ks, acc=_partials(ks), red=_pairwise(ks),
                epilogue=epilogue, wt=wt, scale=scale, paired=paired)


def _exp_args(c: float, lo: float | None, hi: float, vector: bool) -> dict:
    """kernels.j2's `one_plus_exp` for 1 + e^{c x} (c = -1: sigmoid, 2: tanh of |x|), with c folded
    into the constants (exact: c is +-1 or 2), so the steps give the bits of y = c x's: x clamped
    to c x in [lo, hi] (no lower clamp if lo is None); m = x c log2e + MAGIC, whose low bits hold
    k + 127; k = m - MAGIC; t = x - k ln2 / c in two steps (= r / c); p(c t) from p's
    coefficients times c^j; 2^k = m's bits shifted left by 23."""
    # tanh's vector form reduces in one FMA with ln2 rounded to float32: for |x| < 9.1 (where tanh
    # is not 1) k <= 26 and the reduction's error k (ln2 - float(ln2)) / 2 < 3e-8 reaches tanh
    # scaled by 2 / e^{2|x|} (< 0.03 ulp), a step off the cell's critical path
    one_step = vector and c > 0
    if one_step:  # and |x| <= TANH_CLAMP_VEC: 2^k stays small (k <= 25)
        lo, hi = None, 2.0 * kernels.TANH_CLAMP_VEC
    bounds = sorted(v / c for v in (lo, hi) if v is not None)
    if lo is None:  # c x <= hi only
        x_lo, x_hi = None, hi / c
    else:
        x_lo, x_hi = bounds
    a = c_float(-(kernels.LN2_HI + kernels.LN2_LO) / c) if one_step else c_float(-kernels.LN2_HI / c)
    return dict(x_lo=None if x_lo is None else c_float(x_lo), x_hi=c_float(x_hi), cl2e=c_float(c * kernels.LOG2E),
                magic=c_float(kernels.EXP_MAGIC), a=a, b=None if one_step else c_float(-kernels.LN2_LO / c),
                p=[c_float(v * c ** j) for j, v in enumerate(kernels.EXP_P)])


def _activations(p: str, isa: str, vector: bool) -> list[dict]:
    """math="approx"'s sigmoid and tanh (kernels.py) for kernels.j2's `activation`, scalar and
    (vector) vector forms; `when` names the kernel_context flag that asks for the function."""
    out = []
    for vec in (False, True) if vector else (False,):
        h = kernels.EXP_HI_VEC if vec else kernels.EXP_HI  # the vector forms keep 2^k finite (k <= 127)
        out += [dict(when="vector_cell" if vec else "scalar_sigmoid", fn="sigmoid", vector=vec, pre=p,
                     name=f"{p}_v" * vec + f"{p}_" * (not vec) + "sigmoid", e=_exp_args(-1.0, kernels.EXP_LO, h, vec)),
                dict(when="vector_cell" if vec else "scalar_tanh", fn="tanh", vector=vec, pre=p,
                     name=f"{p}_v" * vec + f"{p}_" * (not vec) + "tanh", e=_exp_args(2.0, None, h, vec),
                     q=[c_float(v) for v in kernels.TANH_Q], small=c_float(kernels.TANH_SMALL),
                     one=c_float(float(np.nextafter(np.float32(kernels.TANH_ONE), np.float32(0)))))]
    return out


# Terms per pass of the loop over k of a panel with named sums: its test and branch once per eight
# terms (on a Cortex-M4 at -Os, 7 instructions of overhead per 128 MACs).
PORTABLE_UNROLL = 8


def kernel_context(program: ScheduledProgram, p: str) -> dict:
    """What kernels.j2 and the kernel parts of model.c.j2 need: the plan, spelled for C."""
    plan = program.plan
    P = p.upper()
    acts = {a.name for v in program.variants for a in v.activations}
    scalar_cell = not plan.vector_cell
    nb = program.spec.hidden_size // plan.vw if plan.vw else 0  # gate blocks
    approx = plan.math == "approx"
    wdtype = program.schedule.weights
    wt, int8, bf16 = WEIGHT_CTYPES[wdtype], wdtype == "int8", wdtype == "bfloat16"
    if wdtype == "float16" and plan.isa in _GUARDS and plan.isa != "neon":
        guard_f16 = " && defined(__F16C__)"
    else:
        guard_f16 = ""
    ctx = dict(
        wdtype=wdtype,
        wt=wt,
        int8=int8,
        vec=plan.vector,
        isa=plan.isa,
        vw=plan.vw,
        mr=plan.mr,
        nb=nb,
        math=plan.math,
        text=str(plan),
        vector_cell=plan.vector_cell,
        scalar_cell=scalar_cell,
        scalar_tanh=approx and scalar_cell and bool(acts & {"Tanh", "ScaledTanh"}),
        scalar_sigmoid=approx and scalar_cell and "Sigmoid" in acts,
        activations=_activations(p, plan.isa, plan.vector),
        mrs=plan.mrs,
        kc=plan.kc,
        panel=plan.panel,
        iq="vnni" if plan.vnni else "pmadd" if plan.pmadd else "",  # the x86 integer kernels of int8
        idot=bool(plan.idot),
        step_k=f"{P}_OUTPUT_SIZE",
    )
    if not plan.vector:
        # the panel heights of this model's matrices (4H rows of W_ih and W_hh, P of W_hr), largest first
        spec = program.spec
        ctx.update(panels=sorted({q for n in (4 * spec.hidden_size, spec.proj_size) for q in panel_rows(n, plan.panel)},
                                 reverse=True), unroll=PORTABLE_UNROLL, named=plan.panel <= kernels.MAX_NAMED_PANEL,
                   rows=kernels.PANEL_ROWS)
        if plan.idot:
            ctx.update(idot_q=kernels.IDOT_Q, idot_kq=-(-kernels.max_input(spec) // 4), idot_kmax=kernels.IDOT_KMAX)
    if plan.vector:
        if not 1 <= plan.tiles1 <= nb or plan.nb1 != -(-nb // plan.tiles1):
            raise ValueError(f"one-row step of {nb} gate blocks: {plan.tiles1} tiles of up to {plan.nb1} do not fit")
        # The one-row step: tiles1 tiles of base + 1 (the first `extra`) or base gate blocks; the
        # multi-row step: tiles of 1..mrs rows, one gate block each. Widest first.
        base, extra = divmod(nb, plan.tiles1)
        shapes = sorted({(1, base + 1 if extra else base), (1, base)} | {(m, 1) for m in range(1, plan.mrs + 1)}, reverse=True)
        ctx.update(
            one_row=dict(tiles=plan.tiles1, base=base, extra=extra),
            stiles=[_tile("step", f"{p}_stile{m}x{n}", m, n, 4, plan.ks, P, "vcell" if plan.vector_cell else "cell", wt, int8,
                          bf16) for m, n in shapes],
            ptiles=[_tile("project", f"{p}_ptile{m}", m, 1, 4, 1, P, wt=wt, int8=int8, bf16=bf16) for m in range(plan.mr, 0, -1)],
            mtiles=[_tile("matvec", f"{p}_mtile{n}", 1, 1, n, 1, P, wt=wt, int8=int8) for n in (8, 1)],
        )
        for t in ctx["stiles"] + ctx["ptiles"] + ctx["mtiles"]:
            t["iq"], t["iqw"] = ctx["iq"], plan.vw
        if plan.vnni or plan.pmadd:
            spec = program.spec
            kb, g = 16 * -(-kernels.max_input(spec) // 16), program.kgroup
            ctx.update(iq_q=plan.input_q, iq_kb=kb, kg=g, kg_r=-(-spec.output_size // g), step_k=f"{P}_KGR",
                       qrows=max(plan.mr, 32768 // (2 * kb + 16)))
        header, vtype, ops = _vector_ops(plan.isa, plan.vw, wdtype)
        guard, hint = _GUARDS[plan.isa]
        if plan.vnni:
            guard = guard + " && defined(__AVX512VNNI__)"
            hint = "-mavx512f -mavx512vl -mavx512vnni -mfma (or -march=native on a CPU with AVX512_VNNI; plan={'vnni': 0} for one without)"
        elif plan.pmadd and plan.isa == "avx512":
            guard = guard + " && defined(__AVX512BW__)"
            hint = "-mavx512f -mavx512vl -mavx512bw -mfma (or -march=native)"
        guard, hint = guard + guard_f16, hint.replace("-mfma", "-mfma -mf16c") if guard_f16 else hint
        cell_ops = {"mul", "add", "min", "max", "sub", "exp2bits", "abs", "div", "blendlt", "copysign"}
        # add: the tiles add their initial values (bias, input-part gates) after the sum
        used = {"load", "loadw", "store", "set1", "fma", "add"} | ({"mul"} if int8 else set()) | (cell_ops if plan.vector_cell else set())
        if bf16:  # paired loads in the step and projection tiles; the plain one only for W_hr's matvec
            used = used - ({"loadw"} if not program.spec.proj_size else set()) | {"loadwp", "widene", "wideno"}
        if plan.vnni or plan.pmadd:  # the integer tiles spell their own ops; the float ones serve the cell
            used = {"store"} | ({"load", "set1", "fma", "add"} | cell_ops if plan.vector_cell else set())
        ctx.update(header=header, vtype=vtype, guard=guard, flags_hint=hint, vitype=_pair_ops(plan.isa, plan.vw)[0] if bf16 else None,
                   ops=[(n, r.format(p=p), a.format(p=p), b) for n, r, a, b in ops if n in used])
    return ctx


def math_probe_sources(isa: str = "portable", prefix: str = "probe") -> Sources:
    """A small C file with math="approx"'s tanh/sigmoid (scalar and, for a vector ISA, the vector
    forms) next to libm's, behind one entry point, for measuring their error:

        void <p>_probe(int32_t which, const float *x, float *y, int32_t n)
        which: 0 tanh approx, 1 sigmoid approx (scalar C), 2 tanh, 3 sigmoid (vector; n a multiple
        of 16), 4 tanhf, 5 1 / (1 + expf(-x)) (libm, what math="libm" computes)
    """
    p = check_prefix(prefix)
    from .schedule import Schedule, build_program
    from .spec import LSTMSpec

    program = build_program(LSTMSpec(input_size=1, hidden_size=16), Schedule(target=isa, math="approx"))
    k = kernel_context(program, p)
    k.update(scalar_tanh=True, scalar_sigmoid=True)
    text = _env().get_template("kernels.j2").module.math_probe(p, p.upper(), k)  # type: ignore[attr-defined]
    cdef = f"void {p}_probe(int32_t which, const float *x, float *y, int32_t n);\n"
    return Sources(files={f"{p}.c": text, f"{p}.h": f"#include <stdint.h>\n{cdef}"}, cdef=cdef, prefix=p)
