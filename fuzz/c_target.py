"""The libFuzzer target for the generated C entry points (built with clang, ASan + UBSan).

Input: none (the models are fixed below). Output: `write(out_dir)` writes the models' C (weights
embedded) and fuzz_c.c; `build(out_dir)` compiles them into a libFuzzer binary.

Every fuzz input is decoded into one or more API calls on one of the models: `<p>_forward` with
chosen or raw (any int32/int64) sizes, lengths, NULL pointers, short workspaces and NULL weight
pointers; `<p>_step` sequences with resets of raw row indices; `<p>_workspace_floats` on raw sizes.
Buffers are always exactly what the arguments claim (the harness never lies to the C), so any
out-of-bounds access is the C's fault and AddressSanitizer reports it. Beyond "no crash, no UB" the
target checks, and aborts on violation:
  - the return code is 0 exactly when every argument is valid, else one of the documented codes
    that applies to the arguments; an error leaves every output untouched;
  - outputs past a row's length are exactly 0; finite moderate inputs give finite outputs;
  - differential: the same model compiled looped, chunked (K=3) and unrolled (T=4) agrees; the
    portable kernels agree with the AVX2 and AVX-512 ones (libm and approx math) where the host has
    them; T calls of `<p>_step` agree with one `<p>_forward` (|diff| <= 1e-5 * max(1, |v|)).
"""

from __future__ import annotations

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import lstmgen  # noqa: E402

S = lstmgen.LSTMSpec
BASE = S(input_size=3, hidden_size=4, num_layers=2, proj_size=2)
# (prefix, spec, schedule options); f0, f3 and f4 are one model under three schedules
MODELS = [
    ("f0", BASE, {}),
    ("f1", S(input_size=2, hidden_size=3, bidirectional=True, batch_first=True, bias=False), {}),
    ("f2", S(input_size=2, hidden_size=3, reverse=True, peepholes=True, clip=1.5, input_forget=True,
             activations=["HardSigmoid", "Softsign", "Elu"]), {}),
    ("f3", BASE, {"chunk": 3}),
    ("f4", BASE, {"time_loop": "unrolled", "seq_len": 4}),
    ("f5", S(input_size=3, hidden_size=5, bidirectional=True, peepholes=True, proj_size=2,
             activations=["Sigmoid", "Tanh", "Tanh", "HardSigmoid", "LeakyRelu", "Softplus"]), {"seq_len": None}),
]
# The vector kernels: one model (H = 16, a multiple of every vector width) in portable C and in
# each vector target this host runs, compared by the differential case.
WIDE = S(input_size=5, hidden_size=16, num_layers=2, proj_size=3)
_CPU = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
VECTOR_FLAGS: list[str] = []
MODELS.append(("g0", WIDE, {}))
if " avx2 " in _CPU and " fma " in _CPU:
    MODELS += [("g1", WIDE, {"target": "avx2", "math": "approx"}), ("g2", WIDE, {"target": "avx2", "math": "libm"})]
    VECTOR_FLAGS += ["-mavx2", "-mfma"]
if " avx512f " in _CPU and " avx512vl " in _CPU:
    MODELS.append(("g3", WIDE, {"target": "avx512", "math": "approx"}))
    VECTOR_FLAGS += ["-mavx512f", "-mavx512vl"]

_C = r"""/* libFuzzer target over lstmgen's generated C API (see fuzz/c_target.py). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
{includes}

#define CHECK(cond) do {{ if (!(cond)) {{ fprintf(stderr, "violated %s:%d: %s\n", __FILE__, __LINE__, #cond); abort(); }} }} while (0)
#define SENTINEL 1234.5f

typedef struct {{ const uint8_t *p; size_t n; }} Src;

static uint32_t u32(Src *s)
{{
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {{
        v = (v << 8) | (s->n ? (--s->n, *s->p++) : 0u);
    }}
    return v;
}}
static uint8_t u8(Src *s) {{ return s->n ? (--s->n, *s->p++) : 0u; }}
static int64_t i64(Src *s) {{ uint64_t hi = u32(s), lo = u32(s); return (int64_t)((hi << 32) | lo); }}

/* A float: raw bits (NaN, Inf, subnormals, 1e38) or a moderate value. */
static float fval(Src *s, int raw)
{{
    uint32_t b = u32(s);
    if (raw) {{
        float f;
        memcpy(&f, &b, sizeof f);
        return f;
    }}
    return ((float)(b % 20001u) - 10000.0f) / 1000.0f;
}}

static void *zalloc(size_t n) {{ void *p = calloc(n ? n : 1, 1); CHECK(p != NULL); return p; }}
static void fill(float *a, size_t n) {{ for (size_t i = 0; i < n; ++i) a[i] = SENTINEL; }}
static int untouched(const float *a, size_t n)
{{
    for (size_t i = 0; i < n; ++i) if (memcmp(&a[i], &(float){{SENTINEL}}, sizeof(float)) != 0) return 0;
    return 1;
}}
static int close_enough(const float *a, const float *b, size_t n)
{{
    for (size_t i = 0; i < n; ++i) {{
        if (isnan(a[i]) || isnan(b[i])) {{ if (!(isnan(a[i]) && isnan(b[i]))) return 0; continue; }}
        if (isinf(a[i]) || isinf(b[i])) {{ if (a[i] != b[i]) return 0; continue; }}
        const double d = fabs((double)a[i] - (double)b[i]), m = fabs((double)b[i]);
        if (d > 1e-5 * (m > 1.0 ? m : 1.0)) return 0;
    }}
    return 1;
}}

/* What one forward call produced, kept for differential comparison. */
typedef struct {{ int rc; float *y, *hn, *cn; size_t ny, nh, nc; }} Result;
static void drop(Result *r) {{ free(r->y); free(r->hn); free(r->cn); }}

{models}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{{
    Src s = {{data, size}};
    const uint8_t op = u8(&s);
    switch (op % 8) {{
{dispatch}
    }}
    return 0;
}}
"""

# Per model: forward with decoded arguments; {p} validated prefix, {P} its upper case.
_MODEL = r"""
/* {p}: {summary} */
static Result {p}_forward_case(Src *s, int32_t T, int32_t B, uint8_t flags, const float *xin, const int32_t *lin,
                                const float *h0in, const float *c0in)
{{
    const size_t I = {P}_INPUT_SIZE, H = {P}_HIDDEN_SIZE, R = {P}_OUTPUT_SIZE;
    const size_t C = {P}_NUM_LAYERS * {P}_NUM_DIRECTIONS, Yf = {P}_NUM_DIRECTIONS * {P}_OUTPUT_SIZE;
    const size_t nT = (size_t)T, nB = (size_t)B;
    Result r = {{0, NULL, NULL, NULL, nT * nB * Yf, C * nB * R, C * nB * H}};
    const int64_t need = {p}_workspace_floats(T, B);
    CHECK(need > 0);
    const int short_ws = (flags & 8) != 0, null_ptr = (flags & 16) != 0, null_w = (flags & 32) != 0;
    const int in_place = (flags & 4) && (flags & 2);
    const int64_t ws_floats = short_ws ? need - 1 - (int64_t)(u8(s) % 3) : need;
    float *x = zalloc(sizeof(float) * nT * nB * I);
    memcpy(x, xin, sizeof(float) * nT * nB * I);
    int32_t *lengths = NULL;
    int bad_lengths = 0;
    if (flags & 1) {{
        lengths = zalloc(sizeof(int32_t) * nB);
        memcpy(lengths, lin, sizeof(int32_t) * nB);
        for (size_t b = 0; b < nB; ++b) bad_lengths |= lengths[b] < 1 || lengths[b] > T;
    }}
    float *h0 = NULL, *c0 = NULL;
    if (flags & 2) {{
        h0 = zalloc(sizeof(float) * r.nh);
        c0 = zalloc(sizeof(float) * r.nc);
        memcpy(h0, h0in, sizeof(float) * r.nh);
        memcpy(c0, c0in, sizeof(float) * r.nc);
    }}
    r.y = zalloc(sizeof(float) * r.ny);
    r.hn = in_place ? h0 : zalloc(sizeof(float) * r.nh);
    r.cn = in_place ? c0 : zalloc(sizeof(float) * r.nc);
    float *ws = zalloc(sizeof(float) * (size_t)(ws_floats > 0 ? ws_floats : 1));
    fill(r.y, r.ny);
    if (!in_place) {{ fill(r.hn, r.nh); fill(r.cn, r.nc); }}
    {p}_weights w = {p}_model_weights;
    const uint8_t which = u8(s) % 6, wcell = (uint8_t)(u8(s) % C), wfield = u8(s) % 5;
    int weights_bad = 0;
    if (null_w) {{
        const float **fields[5] = {{&w.cell[wcell].w_ih, &w.cell[wcell].w_hh, &w.cell[wcell].bias, &w.cell[wcell].w_hr, &w.cell[wcell].w_ph}};
        weights_bad = *fields[wfield] != NULL; /* an unused pointer may be NULL */
        *fields[wfield] = NULL;
    }}
    r.rc = {p}_forward(null_ptr && which == 0 ? NULL : &w, null_ptr && which == 1 ? NULL : x, T, B, lengths, h0, c0,
                       null_ptr && which == 2 ? NULL : r.y, null_ptr && which == 3 ? NULL : r.hn,
                       null_ptr && which == 4 ? NULL : r.cn, null_ptr && which == 5 ? NULL : ws, ws_floats);
    const int size_bad = {size_bad};
    const int any_bad = null_ptr || size_bad || short_ws || weights_bad || bad_lengths;
    if (!any_bad) {{
        CHECK(r.rc == {P}_OK);
    }} else {{
        CHECK(r.rc < 0);
        CHECK((null_ptr && r.rc == {P}_ERR_NULL) || (size_bad && r.rc == {P}_ERR_SIZE) ||
              (short_ws && r.rc == {P}_ERR_WORKSPACE) || (weights_bad && r.rc == {P}_ERR_WEIGHTS) ||
              (bad_lengths && r.rc == {P}_ERR_LENGTHS));
        CHECK(untouched(r.y, r.ny));
        if (!in_place) CHECK(untouched(r.hn, r.nh) && untouched(r.cn, r.nc));
    }}
    if (r.rc == 0 && lengths != NULL) {{ /* packed semantics: 0 past each row's length */
        for (size_t t = 0; t < nT; ++t) for (size_t b = 0; b < nB; ++b) if ((int32_t)t >= lengths[b]) {{
            const size_t at = {P}_BATCH_FIRST ? (b * nT + t) * Yf : (t * nB + b) * Yf;
            for (size_t k = 0; k < Yf; ++k) CHECK(r.y[at + k] == 0.0f);
        }}
    }}
    if (in_place) {{ /* the result owns copies; the inputs go */
        r.hn = zalloc(sizeof(float) * r.nh);
        r.cn = zalloc(sizeof(float) * r.nc);
        memcpy(r.hn, h0, sizeof(float) * r.nh);
        memcpy(r.cn, c0, sizeof(float) * r.nc);
    }}
    free(x);
    free(lengths);
    free(h0);
    free(c0);
    free(ws);
    return r;
}}

/* Decode T, B, flags and the data, run forward; returns the Result (rc < 0 on error). */
static Result {p}_decode_forward(Src *s, int fixed_T, uint8_t force_flags, int raw)
{{
    const size_t I = {P}_INPUT_SIZE, H = {P}_HIDDEN_SIZE, R = {P}_OUTPUT_SIZE;
    const size_t C = {P}_NUM_LAYERS * {P}_NUM_DIRECTIONS;
    const int32_t T = fixed_T > 0 ? fixed_T : (int32_t)(1 + u8(s) % 9);
    const int32_t B = (int32_t)(1 + u8(s) % 3);
    const uint8_t flags = force_flags ? force_flags : u8(s);
    float *x = zalloc(sizeof(float) * (size_t)T * (size_t)B * I);
    int32_t lens[3];
    float *h0 = zalloc(sizeof(float) * C * (size_t)B * R), *c0 = zalloc(sizeof(float) * C * (size_t)B * H);
    for (size_t i = 0; i < (size_t)T * (size_t)B * I; ++i) x[i] = fval(s, raw);
    for (int b = 0; b < B; ++b) {{
        const uint32_t v = u32(s);
        switch (v >> 30) {{ /* mostly valid; else just past T, or any int32 */
        case 0: case 1: lens[b] = (int32_t)(1 + v % (uint32_t)T); break;
        case 2: lens[b] = T + 1 + (int32_t)(v % 3u); break;
        default: lens[b] = (int32_t)(v << 2); break;
        }}
    }}
    for (size_t i = 0; i < C * (size_t)B * R; ++i) h0[i] = fval(s, raw);
    for (size_t i = 0; i < C * (size_t)B * H; ++i) c0[i] = fval(s, raw);
    Result r = {p}_forward_case(s, T, B, flags, x, lens, h0, c0);
    if (r.rc == 0 && !raw) {{ /* moderate finite inputs: finite outputs */
        for (size_t i = 0; i < r.ny; ++i) CHECK(isfinite(r.y[i]));
        for (size_t i = 0; i < r.nh; ++i) CHECK(isfinite(r.hn[i]));
    }}
    free(x);
    free(h0);
    free(c0);
    return r;
}}

/* Raw sizes (any int32) and a raw workspace claim; buffers sized to what the arguments claim
 * when that is small, else tiny with a workspace claim that cannot be enough. */
static void {p}_raw(Src *s)
{{
    const int32_t T = (int32_t)u32(s), B = (int32_t)u32(s);
    const int64_t claim = i64(s);
    const int64_t need = {p}_workspace_floats(T, B);
    if (T < 1 || B < 1) {{
        CHECK(need == {P}_ERR_SIZE);
    }} else {{
        CHECK(need > 0 || need == {P}_ERR_OVERFLOW);
    }}
    const int small = T >= 1 && T <= 16 && B >= 1 && B <= 4;
    const size_t nT = small ? (size_t)T : 1, nB = small ? (size_t)B : 1;
    const size_t I = {P}_INPUT_SIZE, H = {P}_HIDDEN_SIZE, R = {P}_OUTPUT_SIZE;
    const size_t C = {P}_NUM_LAYERS * {P}_NUM_DIRECTIONS, Yf = {P}_NUM_DIRECTIONS * {P}_OUTPUT_SIZE;
    int64_t ws_floats = claim;
    size_t ws_alloc = 1;
    if (small && need > 0) {{
        ws_alloc = (size_t)need; /* any claim >= need is honest: the C may use need floats */
    }} else if (need > 0 && claim >= need) {{
        ws_floats = need - 1; /* tiny buffers: claim less than needed, so the C must refuse */
    }}
    float *x = zalloc(sizeof(float) * nT * nB * I), *y = zalloc(sizeof(float) * nT * nB * Yf);
    float *hn = zalloc(sizeof(float) * C * nB * R), *cn = zalloc(sizeof(float) * C * nB * H);
    float *ws = zalloc(sizeof(float) * ws_alloc);
    const int rc = {p}_forward(&{p}_model_weights, x, T, B, NULL, NULL, NULL, y, hn, cn, ws, ws_floats);
    if (!small) CHECK(rc < 0);
    CHECK((rc == 0) == (small && ws_floats >= need {size_ok}));
    free(x); free(y); free(hn); free(cn); free(ws);
}}
"""

_STEP = r"""
/* {p}: a step sequence with resets; each step's result is checked against one forward call. */
static void {p}_steps(Src *s)
{{
    const size_t I = {P}_INPUT_SIZE, H = {P}_HIDDEN_SIZE, R = {P}_OUTPUT_SIZE, L = {P}_NUM_LAYERS;
    const int32_t B = (int32_t)(1 + u8(s) % 3), T = {fixed_T} > 0 ? {fixed_T} : (int32_t)(1 + u8(s) % 8);
    const size_t nB = (size_t)B;
    const int64_t need = {p}_workspace_floats(1, B);
    float *h = zalloc(sizeof(float) * L * nB * R), *c = zalloc(sizeof(float) * L * nB * H);
    float *ws = zalloc(sizeof(float) * (size_t)need);
    float *xs = zalloc(sizeof(float) * (size_t)T * nB * I), *ys = zalloc(sizeof(float) * (size_t)T * nB * R);
    int resets = 0;
    CHECK({p}_reset(h, c, B) == {P}_OK);
    for (int32_t t = 0; t < T; ++t) {{
        float *xt = zalloc(sizeof(float) * nB * I), *yt = zalloc(sizeof(float) * nB * R);
        for (size_t i = 0; i < nB * I; ++i) xs[(size_t)t * nB * I + i] = xt[i] = fval(s, 0);
        CHECK({p}_step(&{p}_model_weights, xt, B, h, c, yt, ws, need) == {P}_OK);
        memcpy(ys + (size_t)t * nB * R, yt, sizeof(float) * nB * R);
        const uint8_t r = u8(s);
        if (r % 7 == 0) {{ /* a raw row index: in range resets that row, else ERR_SIZE */
            const int32_t row = (int32_t)u32(s);
            const int rc = {p}_reset_row(h, c, B, row);
            CHECK(rc == ((row >= 0 && row < B) ? {P}_OK : {P}_ERR_SIZE));
            resets += rc == 0;
        }}
        free(xt);
        free(yt);
    }}
    if (!resets) {{ /* no reset: the steps equal one whole-sequence call */
        Src none = {{NULL, 0}};
        int32_t lens[3] = {{T, T, T}};
        float *h0 = zalloc(sizeof(float) * L * nB * R), *c0 = zalloc(sizeof(float) * L * nB * H);
        float *xf = xs;
        if ({P}_BATCH_FIRST) {{ /* (T, B, I) -> (B, T, I) */
            xf = zalloc(sizeof(float) * (size_t)T * nB * I);
            for (int32_t t = 0; t < T; ++t) for (size_t b = 0; b < nB; ++b)
                memcpy(xf + (b * (size_t)T + (size_t)t) * I, xs + ((size_t)t * nB + b) * I, sizeof(float) * I);
        }}
        Result r = {p}_forward_case(&none, T, B, 0, xf, lens, h0, c0);
        CHECK(r.rc == 0);
        if (!{P}_BATCH_FIRST) CHECK(close_enough(ys, r.y, r.ny));
        CHECK(close_enough(h, r.hn, r.nh));
        CHECK(close_enough(c, r.cn, r.nc));
        drop(&r);
        if (xf != xs) free(xf);
        free(h0);
        free(c0);
    }}
    free(h); free(c); free(ws); free(xs); free(ys);
}}
"""

_DISPATCH = r"""    case 0: {{ const uint8_t m = u8(&s) % {n}; {forward_calls} break; }}
    case 1: {{ const uint8_t m = u8(&s) % {n}; {raw_forward_calls} break; }}
    case 2: {{ const uint8_t m = u8(&s) % {n}; {raw_calls} break; }}
    case 3: {{ const uint8_t m = u8(&s) % {ns}; {step_calls} break; }}
    case 5: {{ /* differential: portable kernels against each vector target on the same input */
        Src a = s, b = s;
        const uint8_t k = u8(&a) % {nvec};
        (void)u8(&b);
        Result r0 = g0_decode_forward(&a, 0, 0, 0);
        Result r1 = {vector_pick};
        CHECK(r0.rc == r1.rc);
        if (r0.rc == 0) {{
            CHECK(close_enough(r1.y, r0.y, r0.ny));
            CHECK(close_enough(r1.hn, r0.hn, r0.nh));
            CHECK(close_enough(r1.cn, r0.cn, r0.nc));
        }}
        drop(&r0);
        drop(&r1);
        break;
    }}
    case 4: {{ /* differential: f0 looped, f3 chunked, f4 unrolled (T = 4) on the same input */
        Src a = s, b = s;
        const int unrolled = (op & 0x80) != 0;
        Result r0 = f0_decode_forward(&a, unrolled ? 4 : 0, 0, 0);
        Result r1 = unrolled ? f4_decode_forward(&b, 4, 0, 0) : f3_decode_forward(&b, 0, 0, 0);
        CHECK(r0.rc == r1.rc);
        if (r0.rc == 0) {{
            CHECK(close_enough(r1.y, r0.y, r0.ny));
            CHECK(close_enough(r1.hn, r0.hn, r0.nh));
            CHECK(close_enough(r1.cn, r0.cn, r0.nc));
        }}
        drop(&r0);
        drop(&r1);
        break;
    }}
    default: {{ const uint8_t m = u8(&s) % {n}; {valid_calls} break; }}
"""


def models() -> list:
    """All models; with LSTMGEN_FUZZ_QUICK=1 (make test's short run) one vector target only: the
    vector kernels' C takes most of the build time."""
    if os.environ.get("LSTMGEN_FUZZ_QUICK"):
        return [m for m in MODELS if m[0] in ("g0", "g1") or not m[0].startswith("g")]
    return MODELS


def write(out_dir: str) -> list[str]:
    """Write every model's sources and fuzz_c.c into out_dir; return the .c files."""
    os.makedirs(out_dir, exist_ok=True)
    c_files, includes, bodies = [], [], []
    streaming = []
    chosen = models()
    for p, spec, opts in chosen:
        opts = {k: v for k, v in opts.items() if v is not None}
        src = lstmgen.generate_sources(spec, lstmgen.random_weights(spec, seed=3), prefix=p, **opts)
        for name, text in src.files.items():
            with open(os.path.join(out_dir, name), "w", encoding="utf-8") as fh:
                fh.write(text)
            if name.endswith(".c"):
                c_files.append(os.path.join(out_dir, name))
        includes.append(f'#include "{p}.h"')
        unrolled = opts.get("time_loop") == "unrolled"
        P = p.upper()
        size_bad = f"(T != {P}_SEQ_LEN)" if unrolled else "0"
        bodies.append(_MODEL.format(p=p, P=P, summary=spec.summary() + f" {opts}", size_bad=size_bad,
                                    size_ok=f"&& T == {P}_SEQ_LEN" if unrolled else ""))
        if spec.num_directions == 1 and not spec.reverse:
            bodies.append(_STEP.format(p=p, P=P, fixed_T=opts.get("seq_len", 0) if unrolled else 0))
            streaming.append(p)
    n = len(chosen)

    def calls(fmt: str, names: list[str]) -> str:
        return " ".join(f"if (m == {i}) {{ {fmt.format(p=p)} }}" for i, p in enumerate(names))

    names = [p for p, _, _ in chosen]
    fixed = {p: (opts.get("seq_len") if opts.get("time_loop") == "unrolled" else 0) for p, _, opts in chosen}
    fwd = " ".join(f"if (m == {i}) {{ Result r = {p}_decode_forward(&s, {fixed[p] or 0}, 0, 0); drop(&r); }}" for i, p in enumerate(names))
    rawf = " ".join(f"if (m == {i}) {{ Result r = {p}_decode_forward(&s, {fixed[p] or 0}, 0, 1); drop(&r); }}" for i, p in enumerate(names))
    valid = " ".join(f"if (m == {i}) {{ Result r = {p}_decode_forward(&s, {fixed[p] or 0}, 0x80, 0); CHECK(r.rc == 0); drop(&r); }}"
                     for i, p in enumerate(names))
    vec = [p for p in names if p.startswith("g") and p != "g0"] or ["g0"]
    pick = " : ".join(f"k == {i} ? {p}_decode_forward(&b, 0, 0, 0)" for i, p in enumerate(vec[:-1]))
    pick = (pick + " : " if pick else "") + f"{vec[-1]}_decode_forward(&b, 0, 0, 0)"
    dispatch = _DISPATCH.format(n=n, ns=len(streaming), forward_calls=fwd, raw_forward_calls=rawf, nvec=len(vec), vector_pick=pick,
                                raw_calls=calls("{p}_raw(&s);", names), step_calls=calls("{p}_steps(&s);", streaming),
                                valid_calls=valid)
    text = _C.format(includes="\n".join(includes), models="".join(bodies), dispatch=dispatch)
    path = os.path.join(out_dir, "fuzz_c.c")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
    return c_files + [path]


def build(out_dir: str, cc: str = "clang", extra: list[str] | None = None) -> str:
    """Compile the libFuzzer binary (ASan + UBSan, aborting on the first report)."""
    files = write(out_dir)
    exe = os.path.join(out_dir, "fuzz_c")
    cmd = [cc, "-std=c99", "-g", "-O1", "-fsanitize=fuzzer,address,undefined", "-fno-sanitize-recover=all",
           *(VECTOR_FLAGS if any(p == "g3" for p, _, _ in models()) else VECTOR_FLAGS[:2]), "-I", out_dir, *files, "-o", exe, "-lm", *(extra or [])]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-6000:]}")
    return exe


if __name__ == "__main__":
    print(build(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(HERE), "build", "fuzz")))
