"""The accuracy corpus (issue 11): float32 error against float64 on long sequences, next to torch
float32's own error on the same weights and inputs.

    python benchmarks/accuracy/run.py [--quick] [--T 100,1000] [--B 1,4] [--models a,b] [--json out.json]

`make accuracy` runs it (all models, T = 100, 1000, 10000, B = 1 and 4). For each model of
corpus.py (trained, adversarial, trained-like) and each (T, B), every peer runs the same float32
weights on the same float32 input; the reference is torch.nn.LSTM cast to float64 (module.double())
on those weights and that input. Error = max abs difference from the reference over out, h_n and
c_n. Peers: lstmgen.compile(spec, weights) with its default math, lstmgen with math="libm", torch
float32, and onnxruntime (the float32 module exported by torch.onnx.export, one thread; n/a for
proj_size models, which ONNX's LSTM cannot express). Printed: a markdown table with each error and
each lstmgen error as a multiple of torch float32's (<= 1.0: at least as accurate), the summary
counts, the models' cell-state and gate statistics (from a float64 numpy loop checked against the
reference) and the CPU. The table's last column is the run's sensitivity: how far float64 itself
moves when every weight is scaled by a random 1 +- 2^-24 (half a float32 ulp). Where it is as
large as the float32 errors, the network amplifies any rounding (the saturated models at long T)
and the peers' ratios there are draws of that amplification, not a ranking.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import io
import json
import logging
import os
import platform
import statistics
import sys
import time
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import numpy as np  # noqa: E402

import lstmgen  # noqa: E402
from benchmarks.accuracy import corpus  # noqa: E402

DEFAULT_MATH = inspect.signature(lstmgen.compile).parameters["math"].default
PEERS = ("lstmgen_default", "lstmgen_libm", "torch_f32", "onnxruntime")
LABELS = {"lstmgen_default": f"lstmgen default (math={DEFAULT_MATH})", "lstmgen_libm": "lstmgen libm",
          "torch_f32": "torch f32", "onnxruntime": "onnxruntime"}
TS = (100, 1000, 10000)
BS = (1, 4)
QUICK = ("adding-h32", "recall-h64-p16", "char-h128", "denoise-h48-bi", "adv-forget4-h64", "adv-c100-h32", "h64-2l-f3")
QUICK_TS = (1000,)
WITHIN = 1e-5
SATURATED = 4.0  # a gate pre-activation beyond this: sigmoid within 0.018 of 0 or 1


def _torch():
    import torch

    torch.set_num_threads(1)
    return torch


def torch_modules(spec: lstmgen.LSTMSpec, w: dict, seed: int = 0):
    """(float32 module, float64 copy of the same float32 weights, float64 copy whose weights are
    each scaled by 1 + u 2^-24, u uniform in [-1, 1]: half a float32 ulp, the sensitivity probe)."""
    torch = _torch()
    m = torch.nn.LSTM(spec.input_size, spec.hidden_size, spec.num_layers, bidirectional=spec.bidirectional,
                      proj_size=spec.proj_size).eval()
    m.load_state_dict({k: torch.from_numpy(np.asarray(v, np.float32)) for k, v in w.items()})
    m64 = copy.deepcopy(m).double()
    rng = np.random.default_rng(seed)
    shaken = copy.deepcopy(m64)
    shaken.load_state_dict({k: v * torch.from_numpy(1 + 2.0 ** -24 * rng.uniform(-1, 1, tuple(v.shape)))
                            for k, v in m64.state_dict().items()})
    return m, m64, shaken


def run_torch(module, x: np.ndarray, dtype) -> tuple:
    torch = _torch()
    with torch.inference_mode():
        y, (h, c) = module(torch.from_numpy(x.astype(dtype)))
    return y.numpy(), (h.numpy(), c.numpy())


def onnx_session(module, spec: lstmgen.LSTMSpec):
    """An onnxruntime session of the float32 module exported to an ONNX LSTM (dynamic T and B),
    or None when the model has a projection (ONNX's LSTM has none) or onnxruntime is missing."""
    if spec.proj_size:
        return None
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    torch = _torch()

    class Outputs(torch.nn.Module):
        def __init__(self, lstm):
            super().__init__()
            self.lstm = lstm

        def forward(self, x):
            y, (h, c) = self.lstm(x)
            return y, h, c

    f = io.BytesIO()
    x = torch.zeros(3, 2, spec.input_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            torch.onnx.export(Outputs(module), (x,), f, dynamo=False, input_names=["x"], output_names=["out", "h_n", "c_n"],
                              dynamic_axes={"x": {0: "T", 1: "B"}, "out": {0: "T", 1: "B"}, "h_n": {1: "B"}, "c_n": {1: "B"}})
        finally:
            logging.disable(logging.NOTSET)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(f.getvalue(), opts, providers=["CPUExecutionProvider"])


def run_onnx(sess, x: np.ndarray) -> tuple:
    y, h, c = sess.run(None, {"x": x})
    return y, (h, c)


def errors(got, ref) -> dict[str, float]:
    """Max abs difference from the reference, per output."""
    (y, (h, c)), (ry, (rh, rc)) = got, ref
    return {name: float(np.abs(np.asarray(a, np.float64) - b).max()) for name, a, b in (("out", y, ry), ("h_n", h, rh), ("c_n", c, rc))}


def _sigmoid(z):
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def trace(spec: lstmgen.LSTMSpec, w: dict, x: np.ndarray) -> tuple[dict, tuple]:
    """The LSTM in float64 numpy, step by step, for what torch does not return: max |c| over every
    step, layer and direction, the share of saturated gate pre-activations, the mean forget gate.
    Returns (stats, (out, (h_n, c_n))) so the caller can check it computes the reference's LSTM."""
    T, B, _ = x.shape
    H, R, D = spec.hidden_size, spec.output_size, spec.num_directions
    layer_in = x.astype(np.float64)
    cmax, nsat, ntot, fsum = 0.0, 0, 0, 0.0
    hn, cn = [], []
    for layer in range(spec.num_layers):
        outs = []
        for d in range(D):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            w_hh = w[f"weight_hh{sfx}"].astype(np.float64).T
            w_hr = w[f"weight_hr{sfx}"].astype(np.float64).T if spec.proj_size else None
            pre = layer_in @ w[f"weight_ih{sfx}"].astype(np.float64).T + (w[f"bias_ih{sfx}"].astype(np.float64)
                                                                         + w[f"bias_hh{sfx}"].astype(np.float64))
            h, c = np.zeros((B, R)), np.zeros((B, H))
            out = np.empty((T, B, R))
            cabs = np.zeros((B, H))
            for t in (range(T - 1, -1, -1) if d else range(T)):
                z = pre[t] + h @ w_hh
                nsat += int(np.count_nonzero(np.abs(z) > SATURATED))
                f = _sigmoid(z[:, H:2 * H])
                fsum += float(f.sum())
                c = f * c + _sigmoid(z[:, :H]) * np.tanh(z[:, 2 * H:3 * H])
                np.maximum(cabs, np.abs(c), out=cabs)
                h = _sigmoid(z[:, 3 * H:]) * np.tanh(c)
                if w_hr is not None:
                    h = h @ w_hr
                out[t] = h
            ntot += T * B * 4 * H
            cmax = max(cmax, float(cabs.max()))
            outs.append(out)
            hn.append(h)
            cn.append(c)
        layer_in = np.concatenate(outs, axis=-1)
    stats = dict(max_abs_c=cmax, saturated=nsat / ntot, mean_f=fsum / (ntot / 4))
    return stats, (layer_in, (np.stack(hn), np.stack(cn)))


def run(names, Ts=TS, Bs=BS, peers=PEERS, log=sys.stderr) -> list[dict]:
    """One row per (model, T, B): errors per peer and output, and the model's statistics."""
    rows = []
    for name in names:
        entry = corpus.ENTRIES[name]
        spec, w = entry.spec, entry.weights()
        t0 = time.perf_counter()
        t32, t64, shaken = torch_modules(spec, w)
        compiled = {}
        if "lstmgen_default" in peers:
            compiled["lstmgen_default"] = lstmgen.compile(spec, w)
        if "lstmgen_libm" in peers:
            compiled["lstmgen_libm"] = lstmgen.compile(spec, w, math="libm")
        sess = onnx_session(t32, spec) if "onnxruntime" in peers else None
        setup = time.perf_counter() - t0
        for T in Ts:
            for B in Bs:
                t1 = time.perf_counter()
                x = entry.inputs(T, B)
                ref = run_torch(t64, x, np.float64)
                stats, mine = trace(spec, w, x)
                sensitivity = max(errors(run_torch(shaken, x, np.float64), ref).values())
                # the trace is the same LSTM: it agrees with torch float64 to float64 rounding, as
                # amplified by the network (a chaotic one amplifies 1e-16 to O(1) over 10^4 steps)
                check = max(errors(mine, ref).values())
                scale = max(1.0, stats["max_abs_c"])
                if check > 1e-8 * scale and sensitivity < 1e-3 * scale:
                    raise RuntimeError(f"{name} T={T} B={B}: the float64 trace differs from torch float64 by {check:.3g} "
                                       f"(sensitivity {sensitivity:.3g})")
                parts = {}
                for peer in peers:
                    if peer in compiled:
                        parts[peer] = errors(compiled[peer](x), ref)
                    elif peer == "torch_f32":
                        parts[peer] = errors(run_torch(t32, x, np.float32), ref)
                    elif peer == "onnxruntime" and sess is not None:
                        parts[peer] = errors(run_onnx(sess, x), ref)
                err = {p: max(v.values()) for p, v in parts.items()}
                row = dict(model=name, section=entry.section, T=T, B=B, **stats, sensitivity=sensitivity, trace_vs_f64=check,
                           err=err, err_parts=parts,
                           seconds=round(time.perf_counter() - t1, 3))
                rows.append(row)
                if log is not None:
                    print(f"{name:24s} T={T:6d} B={B} |c|max {stats['max_abs_c']:8.3g}  "
                          + "  ".join(f"{p} {e:.2e}" for p, e in err.items()), file=log, flush=True)
        if log is not None:
            print(f"{name}: set-up (compile, export) {setup:.1f} s, runs {time.perf_counter() - t0 - setup:.1f} s", file=log, flush=True)
    return rows


def ratio(row: dict, peer: str) -> float:
    e, t = row["err"][peer], row["err"]["torch_f32"]
    return e / t if t > 0 else (0.0 if e == 0 else float("inf"))


def table(rows: list[dict]) -> str:
    peers = [p for p in PEERS if any(p in r["err"] for r in rows)]
    mine = [p for p in peers if p.startswith("lstmgen")]
    head = ["section", "model", "T", "B", "max abs c", *(LABELS[p] for p in peers), *(f"{LABELS[p]} / torch f32" for p in mine),
            "sensitivity (f64, weights +-half ulp)"]
    out = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for r in rows:
        e = r["err"]
        cells = [r["section"], r["model"], str(r["T"]), str(r["B"]), f"{r['max_abs_c']:.3g}",
                 *(f"{e[p]:.2e}" if p in e else "n/a" for p in peers), *(f"{ratio(r, p):.2f}" for p in mine),
                 f"{r['sensitivity']:.1e}" + (" *" if r["sensitivity"] >= e["torch_f32"] else "")]
        out.append("| " + " | ".join(cells) + " |")
    if any(r["sensitivity"] >= r["err"]["torch_f32"] for r in rows):
        out.append("\n\\* float64 itself moves by at least torch f32's error when the weights move by half an ulp: the network "
                   "amplifies any rounding, so the peers' ratios in that run are draws, not a ranking.")
    return "\n".join(out)


def summary(rows: list[dict]) -> str:
    peers = [p for p in PEERS if any(p in r["err"] for r in rows)]
    models = list(dict.fromkeys(r["model"] for r in rows))
    lines = []
    for section in (None, *corpus.SECTIONS):
        sel = [r for r in rows if section is None or r["section"] == section]
        if not sel or (section is not None and len({r["section"] for r in rows}) == 1):
            continue
        ms = [m for m in models if any(r["model"] == m for r in sel)]
        lines.append(f"**{section or 'all'}** ({len(ms)} models, {len(sel)} runs):")
        for p in peers:
            have = [r for r in sel if p in r["err"]]
            if not have:
                continue
            byp = {m: [r for r in have if r["model"] == m] for m in ms if any(r["model"] == m for r in have)}
            ok = sum(ratio(r, p) <= 1.0 for r in have)
            within = sum(r["err"][p] <= WITHIN for r in have)
            mok = sum(all(ratio(r, p) <= 1.0 for r in v) for v in byp.values())
            mwithin = sum(all(r["err"][p] <= WITHIN for r in v) for v in byp.values())
            rs = sorted(ratio(r, p) for r in have)
            text = (f"- {LABELS[p]}: within {WITHIN:g} of float64 in {within}/{len(have)} runs "
                    f"({mwithin}/{len(byp)} models in every run)")
            if p != "torch_f32":
                text += (f"; error <= torch f32's in {ok}/{len(have)} runs ({mok}/{len(byp)} models in every run); "
                         f"ratio to torch f32 median {statistics.median(rs):.2f}, max {rs[-1]:.2f}")
            lines.append(text)
        noisy = [r for r in sel if r["sensitivity"] >= r["err"]["torch_f32"]]
        rest = [r for r in sel if r not in noisy]
        text = (f"- runs whose float64 result moves by at least torch f32's error when the weights move by half an ulp "
                f"(rounding amplified by the network; a peer's ratio there is a draw): {len(noisy)}/{len(sel)}")
        if rest:
            text += "; in the other runs error <= torch f32's: " + ", ".join(
                f"{LABELS[p]} {sum(ratio(r, p) <= 1.0 for r in rest if p in r['err'])}/{sum(p in r['err'] for r in rest)}"
                for p in peers if p != "torch_f32")
        lines.append(text)
    return "\n".join(lines)


def model_table(rows: list[dict]) -> str:
    """One line per model: its statistics, each peer's worst error over its runs, and how the
    lstmgen columns compare with torch float32 run by run."""
    peers = [p for p in PEERS if any(p in r["err"] for r in rows)]
    mine = [p for p in peers if p.startswith("lstmgen")]
    short = {"lstmgen_default": "default", "lstmgen_libm": "libm", "torch_f32": "torch f32", "onnxruntime": "onnxruntime"}
    head = ["model", "about", "max abs c", "saturated gate inputs (abs > 4)", "mean forget gate",
            *(f"max error {short[p]}" for p in peers),
            *(f"{short[p]}: runs <= torch f32, ratio median / max" for p in mine)]
    out = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for m in dict.fromkeys(r["model"] for r in rows):
        sel = [r for r in rows if r["model"] == m]
        n = sum(r["T"] * r["B"] for r in sel)
        sat = sum(r["saturated"] * r["T"] * r["B"] for r in sel) / n
        f = sum(r["mean_f"] * r["T"] * r["B"] for r in sel) / n
        cells = [m, corpus.ENTRIES[m].about, f"{max(r['max_abs_c'] for r in sel):.3g}", f"{100 * sat:.1f}%", f"{f:.3f}"]
        for p in peers:
            have = [r["err"][p] for r in sel if p in r["err"]]
            cells.append(f"{max(have):.2e}" if have else "n/a")
        for p in mine:
            rs = sorted(ratio(r, p) for r in sel)
            cells.append(f"{sum(x <= 1.0 for x in rs)}/{len(rs)}, {statistics.median(rs):.2f} / {rs[-1]:.2f}")
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def info() -> dict:
    torch = _torch()
    d = dict(cpu=cpu_name(), isa=lstmgen.kernels.native_isa(), default_math=DEFAULT_MATH, torch=torch.__version__,
             torch_onednn=bool(torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled),
             numpy=np.__version__, python=platform.python_version())
    try:
        import onnxruntime

        d["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        d["onnxruntime"] = None
    return d


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help=f"models {', '.join(QUICK)} at T = {QUICK_TS[0]} only")
    ap.add_argument("--T", default=None, help="comma-separated sequence lengths (default 100,1000,10000)")
    ap.add_argument("--B", default=None, help="comma-separated batch sizes (default 1,4)")
    ap.add_argument("--models", default=None, help="comma-separated model names or sections (default: all)")
    ap.add_argument("--json", default=None, help="also write the rows and the machine here")
    args = ap.parse_args(argv)
    Ts = [int(t) for t in args.T.split(",")] if args.T else list(QUICK_TS if args.quick else TS)
    Bs = [int(b) for b in args.B.split(",")] if args.B else list(BS)
    names = []
    for item in args.models.split(",") if args.models else (list(QUICK) if args.quick else list(corpus.ENTRIES)):
        names += [e.name for e in corpus.ENTRIES.values() if e.section == item] if item in corpus.SECTIONS else [item]
    unknown = sorted(set(names) - set(corpus.ENTRIES))
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {', '.join(corpus.SECTIONS)}, {', '.join(corpus.ENTRIES)}")
    t0 = time.perf_counter()
    rows = run(names, Ts, Bs)
    elapsed = time.perf_counter() - t0
    inf = info()
    cmd = "python benchmarks/accuracy/run.py" + ("" if argv is None and len(sys.argv) == 1 else " " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"`{cmd}`: {len(names)} models, T in {Ts}, B in {Bs}, {elapsed:.0f} s. CPU: {inf['cpu']} (lstmgen native ISA "
          f"{inf['isa']}), 1 thread; torch {inf['torch']}, onnxruntime {inf['onnxruntime']}. Reference: torch float64 on the "
          "same float32 weights and input; error = max abs difference over out, h_n and c_n. torch f32 "
          + ("runs oneDNN's LSTM (torch.backends.mkldnn), except for proj_size models, which oneDNN does not take"
             if inf["torch_onednn"] else "runs torch's own LSTM (oneDNN off)") + ".\n")
    print(table(rows))
    print()
    print(summary(rows))
    print()
    print(model_table(rows))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(dict(info=inf, command=cmd, seconds=round(elapsed, 1), rows=rows), fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
