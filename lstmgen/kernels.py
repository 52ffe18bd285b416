"""Kernel planning: which instruction set, vector width, register tiles and math the C uses.

Input: an `LSTMSpec`, a target name and a math name. Output: a frozen `KernelPlan` that codegen
hands to the templates (which only spell it) and that `weights.pack` follows for the layout.

Targets: `portable` (plain C99, no intrinsics: what embedded output uses), `avx2`, `avx512`
(x86 with FMA), `neon` (AArch64 Advanced SIMD), and `native`, resolved once per process to the
best of these that the C compiler enables with `-march=native`.

Vector kernels need H to be a multiple of the vector width (16, 8 or 4 floats); the widest width
that divides H is used, and when none does the portable kernels run (with the target's flags).
With vector width W the packed W_ih / W_hh / bias put the gates of W units side by side: block b
holds the columns [i, f, g, o] of units b*W .. b*W+W-1 (see weights.py), so the four gate
vectors of a unit block come out of one pass over W_hh and the cell runs on registers.

The portable kernels are row-blocked dot products over weights packed in panels of `panel` rows
(weights.py), each panel stored (K, rows): a panel's sums are held together while each input
x[k] is loaded once for all its rows and their weights are read in order. Every output's sum
runs over k in order from zero, one multiply-add per term, and its initial value (bias,
input-projection gates) is added once at the end, whatever the panel, tile or batch. How a panel's
sums are held depends on the core the C is for:
  - panel <= MAX_NAMED_PANEL (static builds: microcontrollers, a scalar FPU): one named float per
    row, registers, the loop over k unrolled by eight;
  - larger panels (hosts: target=portable compiled by the Python runtime, or no vector width
    divides H): an array the compiler vectorizes across the panel's rows, up to PANEL_ROWS rows
    of the input sharing each weight load.
Named sums on a vector host would leave the vectorizing to gcc's SLP pass, which handles them
only in some shapes (a 2-3x slower kernel otherwise); an array of sums on a Cortex-M4 lives in
memory (two more instructions per MAC).

Math: `libm` calls expf/tanhf (bit-for-bit what the C library gives); `approx` replaces sigmoid
and tanh with float32 code of their own (no libm, no double, vectorizable), built on one exp:

    e^y = 2^k p(r), k = rint(y log2 e), r = y - k ln2, p a degree-6 polynomial on [-ln2/2, ln2/2]
    sigmoid(x) = 1 / (1 + e^-x)
    tanh(x) = x + x^3 q(x^2) for |x| < 0.7, else sign(x) (1 - 2 / (e^{2|x|} + 1))

Coefficients from tools/fit_activations.py (final_coefficients). The max error in ulps and the
bias are asserted by tests/test_fast_math.py; NaN and infinities behave as with libm.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from dataclasses import dataclass, replace

from .spec import DEFAULT_ACTIVATIONS, LSTMSpec

ISAS = ("portable", "avx2", "avx512", "neon")
TARGETS = ("native",) + ISAS
MATHS = ("libm", "approx")
# Weight matrices (W_ih, W_hh, W_hr) are stored in one of these; state, activations, biases and
# every sum stay float32 (the kernels widen each weight as they load it). int8 is symmetric with a
# float32 scale per output row (gate row), chosen at compile time: w = q * scale, |q| <= 127.
WEIGHT_DTYPES = ("float32", "float16", "bfloat16", "int8")
WEIGHT_CTYPES = {"float32": "float", "float16": "uint16_t", "bfloat16": "uint16_t", "int8": "int8_t"}
WEIGHT_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}
# What each math option computes, with its measured bounds (tests/test_fast_math.py asserts them):
# the embedded self-test, the folder README and `lstmgen report` state it.
MATH_NOTES = {
    "approx": "libm-free float32 sigmoid and tanh, within 2.5 ulp of exact and unbiased (kernels.py)",
    "libm": "libm's expf and tanhf (sigmoid = 1 / (1 + expf(-x)))",
}

# math="approx": e^y = 2^k p(r), k = rint(y log2 e), r = y - k ln2 (Cody-Waite: k LN2_HI is exact
# for |k| <= 256), p = 1 + r + r^2 / 2 + r^3 q(r) of degree 6 on [-ln2/2, ln2/2], q fitted to the
# relative error of e^r - 1; sigmoid(x) = 1 / (1 + e^-x); tanh(x), scalar: x + x^3 q(x^2) for |x| <
# TANH_SMALL, else sign(x) (1 - 2 / (e^{2|x|} + 1)); vector: sign(x) (e^{2|x|} - 1) / (e^{2|x|} + 1)
# with e^y - 1 formed exactly near 0, one division and no branch. The coefficients come from
# tools/fit_activations.py's final_coefficients (`python tools/fit_activations.py --final`).
EXP_P = tuple(float.fromhex(h) for h in ("0x1p+0", "0x1p+0", "0x1p-1", "0x1.5554b8p-3", "0x1.5555bap-5",
                                         "0x1.122362p-7", "0x1.6c5566p-10"))
TANH_Q = tuple(float.fromhex(h) for h in ("-0x1.55554cp-2", "0x1.110a6p-3", "-0x1.b85d3ap-5", "0x1.5172a4p-6",
                                          "-0x1.6d9198p-8"))
TANH_SMALL = 0.7
TANH_SAT = 10.0  # tanh(x) rounds to 1 in float32 for x > 9.01; the scalar tanh's e^{2|x|} stops there
# The vector tanh, (e^{2a} - 1) / (e^{2a} + 1) for a = |x|, clamps a at TANH_CLAMP_VEC, where the
# denominator (e^{2a} - 1) + 2 is still exact (< 2^25), and gives 1 from TANH_ONE on: the smallest
# float32 whose tanh rounds to 1 (between the two the answer is 1 - 2^-24, as at the clamp).
TANH_CLAMP_VEC = 8.6
TANH_ONE = float.fromhex("0x1.205968p+3")  # 9.010914
LOG2E = float.fromhex("0x1.715476p+0")
LN2_HI, LN2_LO = float.fromhex("0x1.62e4p-1"), float.fromhex("0x1.7f7d1cp-20")
# y is clamped to [EXP_LO, EXP_HI] (NaN passes): e^EXP_LO is still a normal float32; at EXP_HI,
# k = 128 and 2^k is +inf, so sigmoid(-inf) = 1 / (1 + inf) = 0 as with expf (the vector forms
# stop at EXP_HI_VEC, where 2^k is finite: their sums 2^k r + 2^k +- 1 would be inf - inf; the
# vector sigmoid gives 0 below the clamp through its numerator).
EXP_LO, EXP_HI, EXP_HI_VEC = -87.3, 88.5, 88.0
# y log2e + EXP_MAGIC rounds to an integer whose float32 bits end in k + 127 (1.5 * 2^23 + 127)
EXP_MAGIC = 12582912.0 + 127.0

# Vector widths each ISA offers, widest first (floats per register).
_WIDTHS = {"portable": (), "avx2": (8, 4), "avx512": (16, 8, 4), "neon": (4,)}
# Rows per panel of the portable kernels. Static builds (microcontrollers): 16 sums in registers
# fill half a Cortex-M4's 32 float registers, the other half holding the eight inputs of a pass
# and a weight (2.1 instructions per MAC in the loop at -Os). Hosts: up to 1024 rows (4H of most
# models: one panel, whose loop over the rows runs at the load and store ports' pace; 4 KiB of sums
# per row of the input, in L1), PANEL_ROWS rows of the input sharing each weight load; 256-row
# panels measured up to 8% slower at B = 1 for H = 256.
STATIC_PANEL = 16
HOST_PANEL = 1024
MAX_NAMED_PANEL = 16  # panels up to this many rows keep their sums in named floats (registers)
MAX_PANEL = 1024  # rows per panel a plan may ask for (host panels: a (PANEL_ROWS, panel) array of sums on the stack)
PANEL_ROWS = 4  # rows of the input per host panel tile
# VNNI (plan.vnni = 1: AVX-512 at vw = 16 with int8 weights, where the host has AVX512_VNNI): each
# input row x of a product (K floats: the projection's inputs, the step's h, W_hr's h_full) is
# quantised on the fly to 16 bits, x ~ inv * xs with inv = max|x| / VNNI_Q and xs = rint(x / inv),
# split into two signed bytes xs = 256 hi + lo (lo in [-128, 127], hi in [-127, 127]). The weights,
# stored in quads of k (weights.py: (NB, ceil(K / 4), 4U, 4)) and made unsigned (q + 128, one xor)
# as they load, meet hi and lo in vpdpbusd: 64 multiply-adds per instruction into exact int32 sums,
# 128 sum(hi) and 128 sum(lo) taken off at the start. Each output is inv * scale * (256 acc_hi +
# acc_lo), then its initial value added as in the float kernels. Two instructions per 64 weights
# against four FMAs of float32 (plus widening for int8), a quarter of the bytes. The 16-bit inputs
# cost at most max|x| / 65278 per element, 1/250 of the int8 weights' own rounding (half a step of
# the row's largest weight / 127); a row with a NaN or an infinity gives NaN outputs.
VNNI_Q = 32639  # |xs| <= VNNI_Q keeps hi = (xs - lo) / 256 within [-127, 127]
VNNI_ROWS = 2  # rows per tile of the projection and multi-row step: 8 accumulators (4 gates x hi, lo) each (3 rows spill: 1.7x slower)
VNNI_BLOCKS = 2  # gate blocks per tile of the one-row step (16 accumulators, 4 weights, 2 inputs)
# Inputs up to VNNI_KMAX elements: the int32 sums stay far from overflow (255 * 128 * K) and each
# row's quantised copy on the stack small (2 K bytes); longer inputs keep the widening kernels.
VNNI_KMAX = 4096
# IDOT (plan.idot = 1: int8 weights in the portable named-sum kernels of static builds, for
# microcontrollers): each input row is quantised to 16 bits, x ~ inv * xs, xs = round(x / inv) with
# inv = max|x| / IDOT_Q, and every dot product is an exact int32 sum of int8 x int16 terms over
# the float kernels' panels, in quads of k: two SMLADs per four weights on Arm cores with the DSP
# extension (Cortex-M4/M7/M33, ARMv7-A), the same sums in plain C elsewhere. Then inv * scale * sum
# + the initial value in float32. A panel's int32 sums outnumber the Cortex-M's 13 core registers at
# any height that amortizes the input loads (kws on the M4: 4 rows 189,929 instructions per step, 6:
# 178,586, 8: 159,084, 12 and 16: 154.5k), so the panels stay 16 rows. The 16-bit inputs cost at most
# max|x| / 65534 per element, as for VNNI; exact int32 sums need K <= IDOT_KMAX (127 * 32767 * 512
# < 2^31), past which the float kernels run.
IDOT_Q = 32767
IDOT_KMAX = 512
# PMADD (plan.pmadd = 1: int8 weights for x86 hosts without VNNI, AVX2 at vw = 8 or AVX-512 at
# vw = 16 with AVX512BW): the input rows rounded to 16 bits as for IDOT (IDOT_Q), the weights stored
# in pairs of k ((NB, ceil(K / 2), 4U, 2)), sign-extended to 16 bits as they load and multiplied with
# vpmaddwd: 2 vw multiply-adds in exact int32 per load + vpmaddwd + vpaddd, a quarter of float32's
# bytes (a one-row step over H = 256: 0.37-0.40x float32's time on Zen 4 in AVX2 code, against 0.78x
# for the widening int8). Exact int32 sums need K <= IDOT_KMAX; tiles of 2 rows and 2 gate blocks
# (8 accumulators). On AVX-512 it is the int8 default where the host lacks VNNI (Skylake-SP/X).
# Architectural vector registers: decides how many rows one register tile holds.
_REGISTERS = {"avx2": 16, "avx512": 32, "neon": 32}


@dataclass(frozen=True)
class KernelPlan:
    isa: str  # portable | avx2 | avx512 | neon (never "native": resolved)
    math: str  # libm | approx
    vw: int  # floats per vector; 0 = the portable scalar kernels
    mr: int  # rows per register tile of the projection (mr rows x 4 gate vectors)
    vector_cell: bool  # the plain torch cell runs on vectors (math=approx, default activations)
    nb1: int = 1  # gate blocks per tile of the one-row (B = 1) step (the largest tile: ceil(NB / tiles1))
    tiles1: int = 1  # tiles of the one-row step: NB blocks split as evenly as possible
    ks: int = 1  # the recurrence's sum over k split into ks (1..4) interleaved partial sums (short chains)
    kc: int = 0  # K chunk for multi-row tiles: one block's (kc, 4 vw) weight panel stays in L1
    mrs: int = 0  # rows per register tile of the recurrence (mr / ks: ks partial sums each)
    panel: int = 0  # portable kernels: weight rows per panel (weights.py; 0 with vw > 0)
    vnni: int = 0  # 1: int8 weights times 16-bit activations on AVX-512 VNNI dot products (see VNNI below)
    idot: int = 0  # 1: int8 weights times 16-bit activations in the portable named-sum kernels (see IDOT below)
    pmadd: int = 0  # 1: int8 weights times 16-bit activations on pmaddwd, AVX2 or AVX-512 BW (see PMADD below)

    @property
    def input_q(self) -> int:
        """0, or the q to which int8 products round their input rows (reference.quantize_rows)."""
        return VNNI_Q if self.vnni else IDOT_Q if self.idot or self.pmadd else 0

    @property
    def unit_block(self) -> int:
        """Units per packed gate block (0: torch's order, i.e. one block of all H units)."""
        return self.vw

    @property
    def vector(self) -> bool:
        return self.vw > 0

    def __str__(self) -> str:
        s = f"target={self.isa}"
        if self.vw:
            s += f" vw={self.vw}"
        if self.vnni:
            s += " vnni"
        if self.idot:
            s += " idot"
        if self.pmadd:
            s += " pmadd"
        return s + f" math={self.math}"


def check_math(math: object) -> str:
    if math not in MATHS:
        raise ValueError(f"math must be one of {', '.join(map(repr, MATHS))}, got {math!r}")
    return str(math)


def check_weights_dtype(dtype: object) -> str:
    if dtype not in WEIGHT_DTYPES:
        raise ValueError(f"weights_dtype must be one of {', '.join(map(repr, WEIGHT_DTYPES))}, got {dtype!r}")
    return str(dtype)


def check_target(target: object) -> str:
    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(map(repr, TARGETS))}, got {target!r}")
    return str(target)


@functools.cache
def _native_macros(cc: str) -> frozenset[str]:
    """Macros the C compiler predefines with -march=native (empty if it cannot tell)."""
    exe = shutil.which(cc.split()[0]) if cc else None
    if exe is None:
        return frozenset()
    try:
        out = subprocess.run([*cc.split(), "-march=native", "-dM", "-E", "-x", "c", os.devnull],
                             capture_output=True, text=True, timeout=60, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return frozenset()
    return frozenset(line.split()[1] for line in out.splitlines() if line.startswith("#define "))


def _native_cc_macros() -> frozenset[str]:
    # the compiler build.py runs: LSTMGEN_CC, else CC, else cc
    return _native_macros(os.environ.get("LSTMGEN_CC") or os.environ.get("CC") or "cc")


def host_vnni() -> bool:
    """Does -march=native give AVX-512 with VNNI (vpdpbusd) here?"""
    return native_isa() == "avx512" and "__AVX512VNNI__" in _native_cc_macros()


def native_isa() -> str:
    """The vector ISA `-march=native` gives on this machine with this compiler."""
    macros = _native_cc_macros()
    if {"__AVX512F__", "__AVX512VL__", "__FMA__"} <= macros:
        return "avx512"
    if {"__AVX2__", "__FMA__"} <= macros:
        return "avx2"
    if "__aarch64__" in macros and "__ARM_NEON" in macros:
        return "neon"
    return "portable"


def host_runs(isa: str) -> bool:
    """Can this machine run code built for `isa`? (judged by what -march=native enables)"""
    native = native_isa()
    return isa == "portable" or isa == native or (isa == "avx2" and native == "avx512")


def resolve_target(target: object) -> str:
    """A target name -> an ISA name ('native' becomes what this host's compiler offers)."""
    target = check_target(target)
    return native_isa() if target == "native" else target


def vector_widths(isa: str) -> tuple[int, ...]:
    """Vector widths (floats per register) an ISA offers, widest first."""
    return _WIDTHS[isa]


def max_step_blocks(isa: str) -> int:
    """Most gate blocks one tile of the one-row step holds (4 accumulators each)."""
    return 4 if _REGISTERS.get(isa, 0) >= 32 else 2


def plan(spec: LSTMSpec, isa: str, math: str, *, static: bool = False) -> KernelPlan:
    """Choose the kernels for a spec on an ISA (already resolved, see resolve_target). static: a
    static-memory build (the embedded folder), whose portable kernels are for a microcontroller."""
    if isa not in ISAS:
        raise ValueError(f"isa must be one of {ISAS}, got {isa!r}")
    check_math(math)
    H = spec.hidden_size
    return plan_for_width(spec, isa, math, next((w for w in _WIDTHS[isa] if H % w == 0), 0), static=static)


def plan_for_width(spec: LSTMSpec, isa: str, math: str, vw: int, *, static: bool = False) -> KernelPlan:
    """The plan's heuristics for a given vector width (0: the portable scalar kernels)."""
    H = spec.hidden_size
    torch_acts = all(spec.direction_activations(d) == DEFAULT_ACTIVATIONS for d in range(spec.num_directions))
    vector_cell = bool(vw) and math == "approx" and torch_acts and not spec.peepholes and spec.clip is None and not spec.input_forget
    if not vw:
        return KernelPlan(isa=isa, math=math, vw=0, mr=0, vector_cell=False, panel=STATIC_PANEL if static else HOST_PANEL)
    regs = _REGISTERS[isa]
    nb = H // vw
    # One-row step: W_hh streams through once, in tiles of up to 4 gate blocks (16 accumulators;
    # 2 with 16 registers), NB split as evenly as possible so every tile keeps at least 8
    # independent FMA chains when NB >= 2 (NB = 5 runs as 3 + 2, not 4 + 1 or 5 x 1). The step
    # walks its tiles in zig-zag order (reversed on odd steps) so it starts on the panels the
    # last step read last, still in cache; a W_hh of more than 32 KiB (past some L1s) that one
    # tile would cover is split in two for that (H = 64: 2 x 32 KiB, ~20% faster per step).
    most = max_step_blocks(isa)
    tiles1 = -(-nb // most)
    if tiles1 == 1 and nb >= 4 and 4 * spec.output_size * 4 * H > 32 * 1024:
        tiles1 = 2
    nb1 = -(-nb // tiles1)
    # A single gate block (H = vw) has only 4 chains: split the sum over k in two to halve
    # the step's critical path. Fixed per model, so results never depend on B.
    ks = 2 if nb == 1 else 1
    # Tile = mr rows x 4 gate vectors of accumulators (x ks partial sums), plus 4 weights.
    # W_hh streams into the step tiles with the hardware prefetchers alone: software prefetch
    # ahead of it measured ~5% slower (interleaved A/B runs of the step at H = 64 and 256).
    mr = 6 if regs >= 32 else 2
    # ~24 KiB of weight panel per K chunk (half an L1): reused by every row group from L1.
    kc = max(16, 24576 // (16 * vw))
    return KernelPlan(isa=isa, math=math, vw=vw, mr=mr, vector_cell=vector_cell, nb1=nb1, tiles1=tiles1, ks=ks, kc=kc,
                      mrs=max(1, mr // ks))


# The x86 integer kernels of int8 by plan knob: its forms (isa, vw, longest input, rows per tile,
# gate blocks per one-row tile), one per ISA it runs on.
X86_INTEGER = {"vnni": (("avx512", 16, VNNI_KMAX, VNNI_ROWS, VNNI_BLOCKS),),
               "pmadd": (("avx2", 8, IDOT_KMAX, 2, 2), ("avx512", 16, IDOT_KMAX, 2, 2))}
# The x86 integer kernels are the int8 default from two gate blocks on: with one (H = vw) the step
# is a latency chain that quantising h lengthens (T = 2048 one-row forward, Zen 4, int8 / float32
# time: AVX-512 H = 16 VNNI 1.19x, widening 1.05x; H = 32 0.94x against 1.32x; H = 64 0.59x against
# 1.09x. AVX2 H = 8 pmaddwd 1.48x, widening 1.03x; H = 16 1.30x against 1.31x; H = 32 1.30x, 1.69x).
MIN_INTEGER_BLOCKS = 2


def integer_form(knob: str, plan: KernelPlan) -> tuple[str, int, int, int, int] | None:
    """The form of the x86 integer kernels `knob` (vnni | pmadd) for this plan's ISA and width, if any."""
    return next((f for f in X86_INTEGER[knob] if f[:2] == (plan.isa, plan.vw)), None)


def integer_needs(knob: str) -> str:
    """What `knob` needs, for error messages: its ISAs and widths."""
    return " or ".join(f"target {isa} at vw={vw}" for isa, vw, *_ in X86_INTEGER[knob])


def integer_fits(knob: str, plan: KernelPlan, spec: LSTMSpec, weights_dtype: str) -> bool:
    """Can int8 run on the x86 integer kernels `knob` (vnni | pmadd) of this plan? (its ISA and
    width, inputs short enough for exact int32 sums and a small quantised copy)"""
    form = integer_form(knob, plan)
    return weights_dtype == "int8" and form is not None and max_input(spec) <= form[2]


def integer_default(knob: str, plan: KernelPlan, spec: LSTMSpec, weights_dtype: str) -> bool:
    """Do int8 weights run on `knob` by default? (it fits, the model has MIN_INTEGER_BLOCKS gate
    blocks; on AVX-512 VNNI where the host has it, pmadd where it has not)"""
    if not (integer_fits(knob, plan, spec, weights_dtype) and spec.hidden_size // plan.vw >= MIN_INTEGER_BLOCKS):
        return False
    return plan.isa != "avx512" or host_vnni() == (knob == "vnni")


def with_integer(knob: str, plan: KernelPlan, nb: int) -> KernelPlan:
    """The plan's form for the integer kernels `knob` (see VNNI, PMADD above): exact sums need no
    partial sums (ks = 1) and no K chunks; tiles sized for their int32 accumulators."""
    form = integer_form(knob, plan)
    if form is None:
        raise ValueError(f"{knob} needs {integer_needs(knob)}, got {plan.isa} at vw={plan.vw}")
    rows, blocks = form[3:]
    tiles1 = -(-nb // blocks)
    return replace(plan, **{knob: 1}, ks=1, mr=rows, mrs=rows, tiles1=tiles1, nb1=-(-nb // tiles1))


def idot_default(plan: KernelPlan, spec: LSTMSpec, weights_dtype: str) -> bool:
    """Do int8 weights run on the integer named-sum kernels by default? (static portable builds)"""
    return weights_dtype == "int8" and not plan.vw and plan.panel <= MAX_NAMED_PANEL and max_input(spec) <= IDOT_KMAX


def max_input(spec: LSTMSpec) -> int:
    """The longest input row of a product: a layer's input, the recurrent h, W_hr's h_full."""
    return max(spec.input_size, spec.num_directions * spec.output_size, spec.hidden_size)


def compile_flags(target: str) -> list[str]:
    """Compiler flags for a target. ISO C99 without FMA contraction: FMAs only where the C
    spells them (the vector kernels), so every schedule computes the same bits."""
    check_target(target)
    flags = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-math-errno"]
    if target == "native":
        flags.append("-march=native")
    elif target == "avx2":
        flags += ["-mavx2", "-mfma", "-mf16c"]  # F16C: float16 weights (every AVX2 CPU has it)
    elif target == "avx512":
        # VNNI: only kernels planned with vnni=1 use it (vpdpbusd); BW: the pmadd kernels (every
        # AVX-512 CPU with VL has it); the rest run on any AVX-512 CPU
        flags += ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512vnni", "-mavx2", "-mfma", "-mf16c"]
    return flags
