"""int8's kernel forms side by side on this host, against float32, timed from Python (one thread).

    python benchmarks/int8_forms.py --configs kws,medium,batch,large_bidir_proj

Forms: float32; int8 on the widening kernels (every integer knob off); int8 on pmaddwd at 16 lanes
(AVX-512 BW, the default on AVX-512 hosts without VNNI); int8 on VNNI (where the host has it); and
in AVX2 code float32 and int8 on pmaddwd. Each cell: the median over `--rounds` interleaved rounds
of the median of 5 calls of model(x), its ratio to float32's in the same run, and the max abs error
of y against the float64 reference with the float32 weights.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from bench import CONFIGS, timed_calls  # noqa: E402

import lstmgen  # noqa: E402
from lstmgen import kernels, reference  # noqa: E402


def forms() -> dict[str, dict]:
    out = {"float32": {}}
    if kernels.host_runs("avx512"):
        out["int8 widening"] = dict(weights_dtype="int8", target="avx512", plan=dict.fromkeys(kernels.X86_INTEGER, 0))
        out["int8 pmadd (AVX-512)"] = dict(weights_dtype="int8", target="avx512", plan={"pmadd": 1})
        if kernels.host_vnni():
            out["int8 vnni"] = dict(weights_dtype="int8", target="avx512", plan={"vnni": 1})
    if kernels.host_runs("avx2"):
        out["float32 (AVX2)"] = dict(target="avx2")
        out["int8 pmadd (AVX2)"] = dict(weights_dtype="int8", target="avx2", plan={"pmadd": 1})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--configs", default="kws,medium,batch,large_bidir_proj")
    ap.add_argument("--rounds", type=int, default=9)
    args = ap.parse_args(argv)
    names = args.configs.split(",")
    unknown = set(names) - {c.name for c in CONFIGS}
    if unknown:
        ap.error(f"unknown config(s): {', '.join(sorted(unknown))}")
    for cfg in (c for c in CONFIGS if c.name in names):
        spec = cfg.spec
        w = lstmgen.random_weights(spec, seed=0)
        x = np.random.default_rng(0).standard_normal((cfg.T, cfg.B, cfg.inputs)).astype(np.float32)
        models = {k: lstmgen.compile(spec, w, **kw) for k, kw in forms().items()}
        ref = reference.lstm_forward(spec, w, x)[0]
        times: dict[str, list[float]] = {k: [] for k in models}
        for _ in range(args.rounds):
            for k, m in models.items():
                times[k].append(float(np.median(timed_calls(lambda m=m, x=x: m(x), 5))) * 1e-9)
        base = float(np.median(times["float32"]))
        cells = [f"{k} {np.median(v) * 1e3:.3f} ms {np.median(v) / base:.2f}x err {np.abs(models[k](x)[0] - ref).max():.1e}"
                 for k, v in times.items()]
        print(f"{cfg.name}: " + "; ".join(cells), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
