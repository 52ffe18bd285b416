"""Fit and measure float32 sigmoid/tanh approximations (issue 11's groundwork; not wired into the C).

    python tools/fit_activations.py            # the generated C's approx and libm, today's approx
                                               # emulated, then the candidates fitted here
    python tools/fit_activations.py --points 4000000 --no-c

It evaluates each approximation the way float32 C evaluates it (numpy float32 operations, one
rounding per C operation; an FMA as one rounding of the exact a*b + c, computed in float64 where
a*b is exact — a double rounding can differ from a hardware FMA in rare ties, which moves a max
by at most one count), against float64 truth, over a dense sweep of x (uniform on [-20, 20] plus
every decade from 1e-30 on both signs), and reports the max error in ulps of the true value, the
mean signed error (bias) in ulps and absolute, and the share of points below the truth.

    python tools/fit_activations.py --final    # kernels.py's EXP_P / TANH_Q (final_coefficients)

Candidates fitted (coefficients printed as C99 hex floats):
  sigmoid_exp  1 / (1 + e^-x), e^y = 2^k p(r): k = rint(y log2 e), r = y - k ln2 (hi/lo split),
               p a degree-6 minimax (Lawson) polynomial for e^r on [-ln2/2, ln2/2]
  tanh_r66     x P(x^2) / Q(x^2), degree 6 / 6, minimax in relative error on [0, 9] (Loeb's
               linearisation + Lawson reweighting), clamped outside like today's

main a7d32b8's approx (its rational tanh, OLD_TANH_P/Q; sigmoid from it) is measured first: its sigmoid comes from tanh(x/2)
and loses relative accuracy for x << 0; the sign of its bias is what compounds in c over long
sequences of a trained model (forget gates near 1).
"""

from __future__ import annotations

import argparse
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lstmgen import kernels  # noqa: E402

F = np.float32
# main a7d32b8's math="approx" (the rational tanh; sigmoid = 1/2 + tanh(x/2)/2), kept to measure it
OLD_TANH_CLAMP = 9.0
OLD_TANH_P = tuple(float.fromhex(h) for h in ("0x1p+0", "0x1.120b22p-3", "0x1.ca2c9cp-9", "0x1.59c3ap-16", "0x1.caddaep-27"))
OLD_TANH_Q = tuple(float.fromhex(h) for h in ("0x1p+0", "0x1.de5adap-2", "0x1.a7f7fep-6", "0x1.588644p-12", "0x1.a180bcp-21"))
TANH_SMALL = 0.7  # below it tanh is the odd polynomial; above, 1 - 2 / (e^{2|x|} + 1)
TANH_DEG = 4


def fma(a, b, c):
    return (a.astype(np.float64) * b.astype(np.float64) + c.astype(np.float64)).astype(F)


def horner_plain(s, coeffs):
    """c0 + s (c1 + s (...)) with separate multiply and add (as -ffp-contract=off scalar C)."""
    acc = np.full_like(s, F(coeffs[-1]))
    for c in reversed(coeffs[:-1]):
        acc = (acc * s).astype(F) + F(c)
    return acc.astype(F)


def horner_fma(s, coeffs):
    acc = np.full_like(s, F(coeffs[-1]))
    for c in reversed(coeffs[:-1]):
        acc = fma(acc, s, np.full_like(s, F(c)))
    return acc


def sweep(n: int) -> np.ndarray:
    lin = np.linspace(-20, 20, n).astype(F)
    dec = np.concatenate([np.logspace(-30, 1.3, n // 4), -np.logspace(-30, 1.3, n // 4)]).astype(F)
    return np.unique(np.concatenate([lin, dec, np.array([0.0, 9.0, -9.0, 18.0, -18.0, 88.0, -88.0, 100.0, -100.0], F)]))


def report(name: str, x: np.ndarray, y: np.ndarray, truth: np.ndarray, odd: bool = False) -> dict:
    """Max ulp error where the truth is a normal float32 (below FLT_MIN: the max abs error instead),
    and the bias: mean signed error in ulps and absolute, signed toward +|x| for odd functions
    (tanh: + means away from zero), and the same over x in [2, 10] (gates near 1)."""
    normal = np.abs(truth) >= np.finfo(F).tiny
    t32 = truth.astype(F)
    ulp = np.spacing(np.abs(t32)).astype(np.float64)
    d = y.astype(np.float64) - truth
    if odd:
        d = d * np.sign(x)
    err = d / ulp
    ok = normal & np.isfinite(err)
    e = err[ok]
    worst = int(np.argmax(np.where(ok, np.abs(err), -1)))
    gate = ok & (x >= 2) & (x <= 10)
    out = dict(name=name, max_ulp=float(np.abs(e).max()), at=float(x[worst]), mean_ulp=float(e.mean()),
               mean_signed=float(d[ok].mean()), below=float((d[ok] < 0).mean()),
               gate_mean_signed=float(d[gate].mean()), tiny_max_abs=float(np.abs(d[~normal & np.isfinite(d)]).max(initial=0)))
    print(f"{name:17s} max {out['max_ulp']:6.2f} ulp (x = {out['at']:+.4g}); bias {out['mean_ulp']:+.3f} ulp, "
          f"{out['mean_signed']:+.2e} abs, {100 * out['below']:.0f}% below{' (toward 0)' if odd else ''}; "
          f"on [2, 10] {out['gate_mean_signed']:+.2e}; below FLT_MIN max abs {out['tiny_max_abs']:.1e}")
    return out


def current(x: np.ndarray) -> None:
    """main a7d32b8's math="approx" (scalar C spelling: mul/add, division, clamp)."""
    tp, tq = OLD_TANH_P, OLD_TANH_Q
    sp = tuple(c / 4.0 ** (k + 1) for k, c in enumerate(tp))
    sq = tuple(c / 4.0 ** k for k, c in enumerate(tq))
    xt = np.clip(x, -F(OLD_TANH_CLAMP), F(OLD_TANH_CLAMP)).astype(F)
    s = (xt * xt).astype(F)
    tanh = ((xt * horner_plain(s, tp)).astype(F) / horner_plain(s, tq)).astype(F)
    xs = np.clip(x, -F(2 * OLD_TANH_CLAMP), F(2 * OLD_TANH_CLAMP)).astype(F)
    s2 = (xs * xs).astype(F)
    sig = (((xs * horner_plain(s2, sp)).astype(F) / horner_plain(s2, sq)).astype(F) + F(0.5)).astype(F)
    x64 = x.astype(np.float64)
    report("old approx tanh", x, tanh, np.tanh(x64), odd=True)
    report("old approx sigmoid", x, sig, 1 / (1 + np.exp(-x64)))


def lawson_poly(f, a: float, b: float, deg: int, n: int = 4000, iters: int = 60) -> np.ndarray:
    """Minimax (relative) polynomial coefficients for f on [a, b] by Lawson's reweighted least squares."""
    t = np.cos(np.pi * (np.arange(n) + 0.5) / n) * (b - a) / 2 + (a + b) / 2
    ft = f(t)
    V = np.vander(t, deg + 1, increasing=True) / ft[:, None]
    w = np.ones(n)
    for _ in range(iters):
        c, *_ = np.linalg.lstsq(V * np.sqrt(w)[:, None], np.sqrt(w), rcond=None)
        e = np.abs(V @ c - 1)
        w = w * e
        w /= w.sum()
    return c


def lawson_weighted(f, w, a: float, b: float, deg: int, n: int = 6000, iters: int = 100) -> np.ndarray:
    """Polynomial coefficients minimising max |w(t) (P(t) - f(t))| on [a, b] (Lawson's reweighted
    least squares on Chebyshev points)."""
    t = np.cos(np.pi * (np.arange(n) + 0.5) / n) * (b - a) / 2 + (a + b) / 2
    V = np.vander(t, deg + 1, increasing=True) * w(t)[:, None]
    ft = f(t) * w(t)
    lw = np.ones(n)
    for _ in range(iters):
        c, *_ = np.linalg.lstsq(V * np.sqrt(lw)[:, None], ft * np.sqrt(lw), rcond=None)
        lw = lw * np.abs(V @ c - ft)
        lw /= lw.sum()
    return c


def expm1_poly(deg: int = 3) -> list[float]:
    """p with e^y ~ 1 + y + y^2 / 2 + y^3 q(y) on [-ln2/2, ln2/2] (the first three exact): q of
    degree deg, minimax in the relative error of e^y - 1 (weight y^3 / (e^y - 1)), so the same p
    serves e^y (sigmoid; its relative error there is smaller still) and e^y - 1 (the vector tanh,
    accurate and unbiased down to y = 0, where a p2 off 1/2 would bias it)."""
    ln2 = math.log(2)

    def q(y):
        series = 1 / 6 + y / 24 + y * y / 120 + y ** 3 / 720 + y ** 4 / 5040 + y ** 5 / 40320
        with np.errstate(all="ignore"):
            direct = (np.expm1(y) - y - y * y / 2) / y ** 3
        return np.where(np.abs(y) < 3e-2, series, direct)

    def w(y):
        with np.errstate(all="ignore"):
            return np.where(np.abs(y) < 1e-9, y * y, y ** 3 / np.expm1(y))
    return [1.0, 1.0, 0.5] + [float(F(c)) for c in lawson_weighted(q, w, -ln2 / 2, ln2 / 2, deg)]


def exp_candidate(x: np.ndarray, coeffs: np.ndarray) -> np.ndarray:
    """sigmoid(x) = 1 / (1 + e^-x) with e^y = 2^k p(r) in float32 (y clamped to [-87.3, 88])."""
    y = np.clip(-x, F(-87.3), F(88.0)).astype(F)
    k = np.rint((y * F(1 / math.log(2))).astype(F)).astype(F)
    ln2_hi, ln2_lo = F(0.693145751953125), F(math.log(2) - 0.693145751953125)
    r = fma(-k, np.full_like(k, ln2_hi), y)
    r = fma(-k, np.full_like(k, ln2_lo), r)
    p = horner_fma(r, [F(c) for c in coeffs])
    e = (p * np.ldexp(F(1), k.astype(np.int32)).astype(F)).astype(F)
    return (F(1) / (F(1) + e).astype(F)).astype(F)


def tanh_odd_poly(t: float, deg: int) -> np.ndarray:
    """tanh(x) ~ x + x^3 q(x^2) on |x| <= t: q of degree deg, minimax relative to
    g(s) = (tanh(x) - x) / x^3 on s in [0, t^2] (its series below s = 1e-3, where the float64
    difference cancels)."""
    def g(s):
        x = np.sqrt(s)
        series = -1 / 3 + s * (2 / 15 + s * (-17 / 315 + s * 62 / 2835))
        with np.errstate(divide="ignore", invalid="ignore"):
            direct = (np.tanh(x) - x) / (x * s)
        return np.where(s < 1e-3, series, direct)
    return lawson_poly(g, 0.0, t * t, deg)


def tanh_exp_candidate(x: np.ndarray, q, p, t: float) -> np.ndarray:
    """tanh as the generated C spells it: |x| < t: x + x^3 q(x^2) (FMA Horner); otherwise
    sign(x) (1 - 2 / (e^{2|x|} + 1)), e^y as in exp_candidate, 2|x| clamped to 20."""
    ax = np.abs(x)
    s = (x * x).astype(F)
    small = fma((x * s).astype(F), horner_fma(s, [F(c) for c in q]), x)
    y = np.minimum(F(20), (ax + ax).astype(F)).astype(F)
    e = exp32(y, p)
    big = (F(1) - (F(2) / (e + F(1)).astype(F)).astype(F)).astype(F)
    return np.where(ax < F(t), small, np.copysign(big, x)).astype(F)


def exp32(y: np.ndarray, coeffs) -> np.ndarray:
    """e^y for y in [-87.3, 88.5] as the generated C computes it: 2^k p(r), k = rint(y log2 e)."""
    k = np.rint((y * F(1 / math.log(2))).astype(F)).astype(F)
    ln2_hi, ln2_lo = F(0.693145751953125), F(math.log(2) - 0.693145751953125)
    r = fma(-k, np.full_like(k, ln2_hi), y)
    r = fma(-k, np.full_like(k, ln2_lo), r)
    p = horner_fma(r, [F(c) for c in coeffs])
    with np.errstate(over="ignore"):
        return (p * np.ldexp(F(1), k.astype(np.int32)).astype(F)).astype(F)


def final_coefficients(x: np.ndarray | None = None, t: float = TANH_SMALL, deg_q: int = TANH_DEG) -> dict:
    """The float32 coefficients kernels.py carries (EXP_P, TANH_Q, TANH_SMALL), printed as C99
    hex floats, and (given a sweep x) the error of the forms built from them."""
    ln2 = math.log(2)
    p = expm1_poly()
    q = [float(F(c)) for c in tanh_odd_poly(t, deg_q)]
    print(f"EXP_P = {hexes(p)}  # e^r = 1 + r + r^2 / 2 + r^3 q(r) on [-ln2/2, ln2/2], q minimax for e^r - 1")
    print(f"TANH_Q = {hexes(q)}  # tanh(x) = x + x^3 q(x^2) on |x| < {t}")
    if x is not None:
        x64 = x.astype(np.float64)
        report("final sigmoid", x, exp_candidate(x, p), 1 / (1 + np.exp(-x64)))
        report("final tanh", x, tanh_exp_candidate(x, q, p, t), np.tanh(x64), odd=True)
    return dict(p=p, q=q, t=t)


def fit_tanh_rational(m: int, n: int, X: float = 9.0, pts: int = 6000, iters: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """tanh(x) ~ x P(s) / Q(s), s = x^2, P(0) = Q(0) = 1, minimax relative error on (0, X]."""
    x = np.cos(np.pi * (np.arange(pts) + 0.5) / pts) * X / 2 + X / 2
    x = x[x > 1e-4]
    s, th = x * x, np.tanh(x)
    q_prev = np.ones_like(x)
    w = np.ones_like(x)
    scale = X * X
    for _ in range(iters):
        # x P(s) - tanh Q(s) = 0, unknowns p1..pm, q1..qn (t = s / scale for conditioning)
        t = s / scale
        A = np.concatenate([x[:, None] * t[:, None] ** np.arange(1, m + 1), -th[:, None] * t[:, None] ** np.arange(1, n + 1)], 1)
        rhs = th - x
        wt = np.sqrt(w) / (th * q_prev)
        c, *_ = np.linalg.lstsq(A * wt[:, None], rhs * wt, rcond=None)
        P = np.concatenate([[1.0], c[:m] / scale ** np.arange(1, m + 1)])
        Q = np.concatenate([[1.0], c[m:] / scale ** np.arange(1, n + 1)])
        q_prev = np.polyval(Q[::-1], s)
        err = np.abs(x * np.polyval(P[::-1], s) / q_prev / th - 1)
        w = w * (err + 1e-30)
        w /= w.sum()
    return P, Q


def tanh_candidate(x: np.ndarray, P, Q, clamp: float = 9.0) -> np.ndarray:
    xt = np.clip(x, -F(clamp), F(clamp)).astype(F)
    s = (xt * xt).astype(F)
    return ((xt * horner_fma(s, [F(c) for c in P])).astype(F) / horner_fma(s, [F(c) for c in Q])).astype(F)


def hexes(cs) -> str:
    return ", ".join(float(F(c)).hex() for c in cs)


def generated_c(x: np.ndarray, isa: str | None = None) -> None:
    """The real generated C (codegen.math_probe_sources) on this host: approx scalar, approx
    vector (this host's ISA) and libm's tanhf / 1 / (1 + expf(-x))."""
    from lstmgen import build
    from lstmgen.codegen import math_probe_sources

    isa = isa or kernels.native_isa()
    module = build.build(math_probe_sources(isa, prefix="fitprobe"), target=isa)
    fn = module.lib.fitprobe_probe
    pad = (-x.size) % 16
    xp = np.ascontiguousarray(np.concatenate([x, np.zeros(pad, F)]), F)
    x64 = x.astype(np.float64)
    for which, name, truth, odd in ((0, "C approx tanh", np.tanh(x64), True), (1, "C approx sigmoid", 1 / (1 + np.exp(-x64)), False),
                                    (2, f"C {isa} tanh", np.tanh(x64), True), (3, f"C {isa} sigmoid", 1 / (1 + np.exp(-x64)), False),
                                    (4, "C tanhf", np.tanh(x64), True), (5, "C 1/(1+expf)", 1 / (1 + np.exp(-x64)), False)):
        if which in (2, 3) and isa == "portable":
            continue
        y = np.empty_like(xp)
        fn(which, module.ffi.from_buffer("float[]", xp), module.ffi.from_buffer("float[]", y), xp.size)
        report(name, x, y[: x.size], truth, odd=odd)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--points", type=int, default=2_000_000, help="points of the sweep (default 2e6)")
    ap.add_argument("--no-c", action="store_true", help="skip measuring the generated C (needs a C compiler)")
    ap.add_argument("--isa", default=None, help="vector ISA of the generated C to measure (default: this host's)")
    ap.add_argument("--final", action="store_true", help="only print kernels.py's coefficients and their error")
    args = ap.parse_args(argv)
    x = sweep(args.points)
    if args.final:
        final_coefficients(x)
        return 0
    x64 = x.astype(np.float64)
    print(f"{x.size} points; errors in ulps of the float64 truth rounded to float32\n")
    if not args.no_c:
        generated_c(x, args.isa)
        print()
    current(x)
    print()
    ln2 = math.log(2)
    for deg in (5, 6):
        c = lawson_poly(np.exp, -ln2 / 2, ln2 / 2, deg)
        report(f"sigmoid_exp d{deg}", x, exp_candidate(x, c), 1 / (1 + np.exp(-x64)))
        print(f"    p = {hexes(c)}")
    for m, n in ((4, 4), (5, 5), (6, 6)):
        P, Q = fit_tanh_rational(m, n)
        report(f"tanh_r{m}{n}", x, tanh_candidate(x, P, Q), np.tanh(x64), odd=True)
        print(f"    P = {hexes(P)}\n    Q = {hexes(Q)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
