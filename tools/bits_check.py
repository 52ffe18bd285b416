"""Build a sweep of models here and at another commit, run both on the same inputs, and demand the
same bits: the numeric proof that a kernel refactor changed no result.

    python tools/bits_check.py                    # against 0cdcdb5
    python tools/bits_check.py --against COMMIT

The other commit is checked out as a git worktree in a temporary folder. Each side runs this file
in its own subprocess (`--child OUT.npz`) with PYTHONPATH pointing at its checkout and its own
LSTMGEN_CACHE_DIR, so neither side sees the other's modules or compiled code. A child compiles
every configuration, runs it for B = 1, 3 and 7 (with per-row lengths when B > 1, and the
streaming step where the model streams) and saves every output, h_n and c_n. The parent compares
them as uint32 bit patterns. Exit status 0: every array identical; 1: some array differs.

The sweep: every target this machine runs (portable, avx2, avx512) x math libm / approx x
H = 7, 8, 16, 24, 32, 64, 80, 256 (no vector width, 8-, 16-lane, one and many gate blocks,
uneven one-row tiles), each with one feature set from a rotation (projection, bidirectional,
peepholes, chunked, unrolled, batch_first, two layers, an input wider than the K chunk), so
every feature meets every target, both maths and several widths.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DEFAULT_AGAINST = "0cdcdb5"

TARGETS = ("portable", "avx2", "avx512")
MATHS = ("libm", "approx")
HIDDEN = (7, 8, 16, 24, 32, 64, 80, 256)
BATCHES = (1, 3, 7)
T = 6
# Feature sets, rotated over the sweep: (name, spec fields, compile options). proj_size is filled
# in per H (odd and past whole vectors, so the projection's tail paths run too).
FEATURES = (
    ("plain", {}, {}),
    ("proj", dict(proj_size=-1), {}),
    ("bidir", dict(bidirectional=True, num_layers=2), {}),
    ("peep", dict(peepholes=True), {}),
    ("chunk", dict(proj_size=-1, num_layers=2), dict(chunk=4)),
    ("unrolled", dict(num_layers=2), dict(time_loop="unrolled", seq_len=T)),
    ("bidir_proj_bf", dict(bidirectional=True, proj_size=-1, batch_first=True), {}),
    ("wide_in", dict(input_size=130), {}),
    ("peep_proj_unrolled", dict(peepholes=True, proj_size=-1), dict(time_loop="unrolled", seq_len=T)),
)


def configs() -> list[tuple[str, dict, dict]]:
    """(name, spec dict, compile options) in a fixed order."""
    from lstmgen import kernels

    out = []
    runs = [t for t in TARGETS if kernels.host_runs(t)]
    for ti, target in enumerate(runs):
        for mi, math in enumerate(MATHS):
            for hi, H in enumerate(HIDDEN):
                fname, fspec, fopts = FEATURES[(hi + 3 * ti + 5 * mi) % len(FEATURES)]
                spec = dict(dict(input_size=5, hidden_size=H), **fspec)
                if spec.get("proj_size") == -1:
                    spec["proj_size"] = H // 2 + 1 if H > 2 else 1
                out.append((f"{target}-{math}-h{H}-{fname}", spec, dict(fopts, target=target, math=math)))
    # A few more where the rotation leaves a gap: the one-block split sum (H = vw) with projection
    # and streaming on both maths, and many blocks with projection on the vector cell.
    for target, H in (("avx512", 16), ("avx2", 8), ("avx512", 256), ("avx2", 64)):
        if kernels.host_runs(target):
            for math in MATHS:
                out.append((f"{target}-{math}-h{H}-extra-proj", dict(input_size=20, hidden_size=H, proj_size=H // 2 + 1),
                            dict(target=target, math=math)))
    return out


def run_child(out_path: str) -> int:
    import lstmgen

    results: dict[str, np.ndarray] = {}
    for ci, (name, sd, opts) in enumerate(configs()):
        spec = lstmgen.LSTMSpec(**sd)
        weights = lstmgen.random_weights(spec, seed=100 + ci)
        model = lstmgen.compile(spec, weights, **opts)
        rng = np.random.default_rng(1000 + ci)
        C = spec.num_layers * spec.num_directions
        for B in BATCHES:
            shape = (B, T, spec.input_size) if spec.batch_first else (T, B, spec.input_size)
            x = rng.standard_normal(shape).astype(np.float32)
            h0 = rng.standard_normal((C, B, spec.output_size)).astype(np.float32)
            c0 = rng.standard_normal((C, B, spec.hidden_size)).astype(np.float32)
            lengths = rng.integers(1, T + 1, size=B) if B > 1 else None
            y, (hn, cn) = model(x, (h0, c0), lengths=lengths)
            results[f"{name}/B{B}/y"], results[f"{name}/B{B}/h_n"], results[f"{name}/B{B}/c_n"] = y, hn, cn
            if spec.num_directions == 1 and not spec.reverse:  # the model streams
                s = model.stream(batch=B)
                s.state = (h0, c0)
                xt = x.transpose(1, 0, 2) if spec.batch_first else x
                results[f"{name}/B{B}/stream"] = np.stack([s.step(np.ascontiguousarray(xt[t])) for t in range(T)])
                results[f"{name}/B{B}/stream_h"], results[f"{name}/B{B}/stream_c"] = s.state
        print(f"  {ci + 1:3d} {name}", flush=True)
    np.savez(out_path, **{k: np.ascontiguousarray(v, dtype=np.float32) for k, v in results.items()})
    return 0


def compare(old: dict[str, np.ndarray], new: dict[str, np.ndarray]) -> list[str]:
    bad = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a is None or b is None:
            bad.append(f"{key}: only on one side")
        elif a.shape != b.shape:
            bad.append(f"{key}: shape {a.shape} vs {b.shape}")
        elif not np.array_equal(a.view(np.uint32), b.view(np.uint32)):
            n = int((a.view(np.uint32) != b.view(np.uint32)).sum())
            bad.append(f"{key}: {n} of {a.size} floats differ (max |diff| {float(np.abs(a - b).max()):.3g})")
    return bad


def against(commit: str) -> int:
    with tempfile.TemporaryDirectory(prefix="lstmgen-bits-") as tmp:
        old_src = os.path.join(tmp, "old-src")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", old_src, commit], check=True, capture_output=True)
        try:
            procs = []
            started = time.time()
            for side, src in (("new", ROOT), ("old", old_src)):
                cache = os.path.join(tmp, f"cache-{side}")
                os.makedirs(cache)
                env = dict(os.environ, PYTHONPATH=src, LSTMGEN_CACHE_DIR=cache)
                log = open(os.path.join(tmp, f"{side}.log"), "w")  # closed below, once the child exits
                procs.append((side, log, subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child",
                                                           os.path.join(tmp, f"{side}.npz")], env=env, cwd=tmp,
                                                          stdout=log, stderr=subprocess.STDOUT)))
            failed = False
            for side, log, proc in procs:
                rc = proc.wait()
                log.close()
                if rc != 0:
                    failed = True
                    with open(log.name) as fh:
                        print(f"{side} side failed (exit {rc}):\n{fh.read()[-4000:]}")
            if failed:
                return 1
            with np.load(os.path.join(tmp, "old.npz")) as f:
                old = {k: f[k] for k in f.files}
            with np.load(os.path.join(tmp, "new.npz")) as f:
                new = {k: f[k] for k in f.files}
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old_src], check=False, capture_output=True)
    bad = compare(old, new)
    for line in bad:
        print("DIFFERS", line)
    n_cfg = len({k.split("/")[0] for k in new})
    print(f"bits_check: {n_cfg} configurations, {len(new)} arrays here, {len(old)} at {commit}, "
          f"{len(bad)} differ ({time.time() - started:.0f} s)")
    return 1 if bad else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", metavar="COMMIT", default=DEFAULT_AGAINST, help=f"the commit to compare with ({DEFAULT_AGAINST})")
    ap.add_argument("--child", metavar="OUT_NPZ", help=argparse.SUPPRESS)
    ap.add_argument("--list", action="store_true", help="print the configurations and exit")
    args = ap.parse_args()
    if args.list:
        for name, sd, opts in configs():
            print(name, sd, opts)
        return 0
    if args.child:
        return run_child(args.child)
    return against(args.against)


if __name__ == "__main__":
    sys.exit(main())
