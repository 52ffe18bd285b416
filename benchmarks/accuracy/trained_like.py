"""Accuracy on long sequences of trained-like models: lstmgen's float32 error against float64,
next to torch float32's own error on the same weights and inputs (issue 11's measurement).

    python benchmarks/accuracy/trained_like.py [--quick] [--T 1000,10000] [--json out.json]

(benchmarks/accuracy.py runs this script too.) The corpus of trained and adversarial models is
benchmarks/accuracy/run.py (make accuracy); it keeps these models as its "trained-like" section.

Random weights and short sequences hide the failure that matters: trained LSTMs keep memory
(forget gates near 1), so a small bias in sigmoid compounds in c over hundreds of steps. The
corpus here is made to look like that: weights of trained scale (uniform +-k/sqrt(H), k from 1
to 2), forget-gate biases of +1 to +5 (sigmoid 0.73 .. 0.993), and inputs that are smooth, audio
feature-like random walks, so |c| grows large. For each model and T every peer runs the same
float32 weights and input; the error is the max abs difference of out, h_n and c_n from the
float64 numpy reference (lstmgen.reference) run on the same (float32-rounded) weights. The
table gives each error, the ratio to torch float32's error (<= 1.0: at least as accurate) and
how many models stay within 1e-5. Needs torch; onnxruntime is not needed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import zlib

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import lstmgen  # noqa: E402

# name: (LSTMSpec kwargs, weight gain k, forget-gate bias)
CORPUS = {
    "h16-f3": (dict(input_size=8, hidden_size=16), 1.5, 3.0),
    "h32-f5": (dict(input_size=13, hidden_size=32), 1.0, 5.0),
    "h64-2l-f3": (dict(input_size=40, hidden_size=64, num_layers=2), 1.5, 3.0),
    "h64-bi-f2": (dict(input_size=40, hidden_size=64, bidirectional=True), 1.5, 2.0),
    "h96-proj-f4": (dict(input_size=20, hidden_size=96, proj_size=32), 1.2, 4.0),
    "h128-f1": (dict(input_size=40, hidden_size=128), 2.0, 1.0),
    "h128-2l-f4": (dict(input_size=40, hidden_size=128, num_layers=2), 1.2, 4.0),
    "h256-3l-f3": (dict(input_size=40, hidden_size=256, num_layers=3, proj_size=0), 1.0, 3.0),
}
QUICK = ("h16-f3", "h64-2l-f3", "h128-f1")


def trained_like(spec: lstmgen.LSTMSpec, gain: float, forget_bias: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    w = {}
    k = gain / np.sqrt(spec.hidden_size)
    for name, shape in spec.weight_shapes().items():
        arr = rng.uniform(-k, k, size=shape)
        if name.startswith("bias_ih"):
            arr[spec.hidden_size: 2 * spec.hidden_size] += forget_bias  # torch gate order i, f, g, o
        w[name] = arr.astype(np.float32)
    return w


def feature_input(T: int, B: int, I: int, seed: int) -> np.ndarray:
    """Smooth, correlated, zero-mean features (a leaky random walk per channel), scale ~1."""
    rng = np.random.default_rng(seed)
    x = np.empty((T, B, I), np.float64)
    state = np.zeros((B, I))
    for t in range(T):
        state = 0.95 * state + 0.3 * rng.standard_normal((B, I))
        x[t] = state
    return x.astype(np.float32)


def max_err(got, ref) -> float:
    (y, (h, c)), (ry, (rh, rc)) = got, ref
    return max(float(np.abs(np.asarray(a, np.float64) - b).max()) for a, b in ((y, ry), (h, rh), (c, rc)))


def run(names, Ts, B: int = 2, seeds: int = 1) -> list[dict]:
    import torch

    torch.set_num_threads(1)
    rows = []
    for name, seed in ((n, s) for n in names for s in range(seeds)):
        kw, gain, fb = CORPUS[name]
        spec = lstmgen.LSTMSpec(**kw)
        w = trained_like(spec, gain, fb, seed=zlib.crc32(name.encode()) + seed)
        models = {m: lstmgen.compile(spec, w, math=m) for m in ("approx", "libm")}
        lstm = torch.nn.LSTM(spec.input_size, spec.hidden_size, spec.num_layers, bidirectional=spec.bidirectional,
                             proj_size=spec.proj_size).eval()
        lstm.load_state_dict({k: torch.from_numpy(v) for k, v in w.items()})
        for T in Ts:
            x = feature_input(T, B, spec.input_size, seed=T + 1000 * seed)
            t0 = time.perf_counter()
            ref = lstmgen.reference.lstm_forward(spec, w, x)
            with torch.inference_mode():
                ty, (th, tc) = lstm(torch.from_numpy(x))
            errs = {"torch_f32": max_err((ty.numpy(), (th.numpy(), tc.numpy())), ref)}
            for m, model in models.items():
                errs[f"lstmgen_{m}"] = max_err(model(x), ref)
            cmax = float(np.abs(ref[1][1]).max())
            rows.append(dict(model=name, seed=seed, T=T, max_abs_c=cmax, err=errs, seconds=round(time.perf_counter() - t0, 2)))
            print(f"{name:12s} seed {seed} T={T:6d} |c|max {cmax:7.2f}  " + "  ".join(f"{k} {v:.2e}" for k, v in errs.items()),
                  file=sys.stderr, flush=True)
    return rows


def table(rows: list[dict]) -> str:
    peers = ["lstmgen_approx", "lstmgen_libm", "torch_f32"]
    out = ["| model | seed | T | max abs c | " + " | ".join(peers) + " | approx / torch | libm / torch |",
           "|---|---:|---:|---:|" + "---:|" * len(peers) + "---:|---:|"]
    for r in rows:
        e = r["err"]
        t = max(e["torch_f32"], 1e-12)
        out.append(f"| {r['model']} | {r.get('seed', 0)} | {r['T']} | {r['max_abs_c']:.3g} | " + " | ".join(f"{e[p]:.2e}" for p in peers)
                   + f" | {e['lstmgen_approx'] / t:.2f} | {e['lstmgen_libm'] / t:.2f} |")
    n = len(rows)
    within = {p: sum(r["err"][p] <= 1e-5 for r in rows) for p in peers}
    ok = {p: sum(r["err"][p] <= r["err"]["torch_f32"] for r in rows) for p in peers[:2]}
    out.append("")
    for p in peers[:2]:
        ratios = sorted(r["err"][p] / max(r["err"]["torch_f32"], 1e-12) for r in rows)
        out.append(f"{p} / torch_f32: median {ratios[len(ratios) // 2]:.2f}, max {ratios[-1]:.2f} over {n} runs")
    out.append("within 1e-5 of float64: " + ", ".join(f"{p} {within[p]}/{n}" for p in peers)
               + "; at least as accurate as torch float32: " + ", ".join(f"{p} {ok[p]}/{n}" for p in ok))
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"models {', '.join(QUICK)} at T = 1000 only")
    ap.add_argument("--T", default=None, help="comma-separated sequence lengths (default 100,1000,10000)")
    ap.add_argument("--models", default=None, help="comma-separated model names (default: all)")
    ap.add_argument("--json", default=None, help="also write the rows here")
    ap.add_argument("--seeds", type=int, default=1, help="weight and input draws per model (one max error is noisy: use 5+)")
    args = ap.parse_args(argv)
    Ts = [int(t) for t in (args.T or ("1000" if args.quick else "100,1000,10000")).split(",")]
    names = args.models.split(",") if args.models else (list(QUICK) if args.quick else list(CORPUS))
    unknown = sorted(set(names) - set(CORPUS))
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {', '.join(CORPUS)}")
    rows = run(names, Ts, seeds=args.seeds)
    print(f"CPU: {_cpu()}; lstmgen compile defaults (target native); B = 2\n")
    print(table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(rows, fh, indent=1)
    return 0


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
