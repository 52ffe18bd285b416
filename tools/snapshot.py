"""Render the C for a fixed sweep of configurations, to prove a refactor leaves it byte-identical.

    python tools/snapshot.py OUT_DIR                 # write every rendered file under OUT_DIR
    python tools/snapshot.py --against COMMIT        # render here and at COMMIT (a git worktree
                                                     # in a temporary folder), diff the two trees

The sweep covers every cell variant (ONNX activations, peepholes, clip, input_forget), projection,
bidirectional and reverse models, batch_first, no bias, several layers, every schedule (looped,
unrolled, chunked, fixed seq_len), every target and math option, hidden sizes that pick each vector
width (and none), the cffi cdef, sources with and without embedded weights, and embedded folders.
It uses only lstmgen.generate_sources and lstmgen.embedded_sources, whose signatures both sides
share. Exit status 0: identical; 1: some file differs (the diff is printed).
"""

from __future__ import annotations

import argparse
import difflib
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

CELLS = {
    "plain": {},
    "peep": dict(peepholes=True),
    "clip": dict(clip=3.5),
    "cifg": dict(input_forget=True),
    "acts": dict(activations=[["HardSigmoid", 0.3, 0.4], "Relu", ["ScaledTanh", 0.9, 1.1]]),
    "acts2": dict(bidirectional=True, activations=["Sigmoid", "Tanh", "Tanh", ["LeakyRelu", 0.02], "Elu", "Softplus"]),
    "acts3": dict(activations=[["Affine", 0.5, 0.25], "Softsign", ["ThresholdedRelu", 0.7]]),
    "everything": dict(peepholes=True, clip=2.0, input_forget=True, reverse=True),
}
SHAPES = {
    "h16": dict(input_size=5, hidden_size=16),
    "h7": dict(input_size=3, hidden_size=7),
    "h24": dict(input_size=6, hidden_size=24, num_layers=2),
    "h12p": dict(input_size=4, hidden_size=12, proj_size=5),
    "h32bi": dict(input_size=8, hidden_size=32, num_layers=2, bidirectional=True, proj_size=8, batch_first=True),
    "h20nb": dict(input_size=3, hidden_size=20, bias=False),
    "h64": dict(input_size=40, hidden_size=64, num_layers=2),
    "h48rev": dict(input_size=3, hidden_size=48, reverse=True),
}
SCHEDULES = {
    "looped": {},
    "unrolled": dict(time_loop="unrolled", seq_len=3),
    "chunk": dict(chunk=4),
    "seqlen": dict(seq_len=9),
}
TARGETS = ("portable", "avx2", "avx512", "neon")
MATHS = ("libm", "approx")


def configs():
    """(name, kind, spec dict, options) for the sweep: deterministic order."""
    out = []
    for shape, sd in SHAPES.items():
        for target in TARGETS:
            for math in MATHS:
                for sched, so in SCHEDULES.items():
                    if so.get("chunk") and sd.get("bidirectional"):
                        continue
                    if sched in ("unrolled", "seqlen") and (target, math) not in (("portable", "libm"), ("avx512", "approx"), ("neon", "libm")):
                        continue
                    opts = dict(so, target=target, math=math)
                    out.append((f"{shape}-{target}-{math}-{sched}", "sources", sd, opts))
    for cell, cd in CELLS.items():
        for shape in ("h16", "h7", "h32bi"):
            sd = dict(SHAPES[shape], **cd)
            if sd.get("bidirectional") and sd.get("reverse"):
                continue
            if len(cd.get("activations", [])) == 6 and not sd.get("bidirectional"):
                continue
            for target, math in (("portable", "libm"), ("portable", "approx"), ("avx2", "approx"), ("avx512", "libm"), ("avx512", "approx"), ("neon", "approx")):
                out.append((f"cell-{cell}-{shape}-{target}-{math}", "sources", sd, dict(target=target, math=math)))
            out.append((f"cell-{cell}-{shape}-unrolled", "sources", sd, dict(time_loop="unrolled", seq_len=2, target="avx512", math="approx")))
    embedded = [
        ("kws", dict(input_size=40, hidden_size=64, num_layers=2), dict(max_batch=1)),
        ("kws-approx", dict(input_size=40, hidden_size=64, num_layers=2), dict(max_batch=1, math="approx")),
        ("bidir_proj", dict(input_size=12, hidden_size=24, num_layers=2, bidirectional=True, proj_size=8), dict(max_batch=2, seq_len=16)),
        ("peep-chunk", dict(input_size=4, hidden_size=10, peepholes=True, clip=1.5), dict(max_batch=3, chunk=7)),
        ("unrolled", dict(input_size=4, hidden_size=8, num_layers=2), dict(max_batch=2, seq_len=4, time_loop="unrolled")),
        ("reverse", dict(input_size=4, hidden_size=8, reverse=True), dict(max_batch=1, seq_len=5)),
        ("nobias-bf", dict(input_size=3, hidden_size=6, bias=False, batch_first=True), dict(max_batch=2, chunk=3, tolerance=2e-5)),
        ("acts", dict(input_size=3, hidden_size=6, activations=["HardSigmoid", "Softsign", "Relu"]), dict(max_batch=1, math="approx")),
    ]
    for name, sd, opts in embedded:
        out.append((f"embedded-{name}", "embedded", sd, opts))
    return out


def render_all(out_dir: str) -> int:
    import lstmgen

    n = 0
    for name, kind, sd, opts in configs():
        spec = lstmgen.LSTMSpec.from_dict(sd)
        weights = lstmgen.random_weights(spec, seed=sum(map(ord, name)) % 1000)
        files: dict[str, str] = {}
        if kind == "sources":
            src = lstmgen.generate_sources(spec, weights, prefix="snap", **opts)
            files.update(src.files)
            files["cdef.h"] = src.cdef
            bare = lstmgen.generate_sources(spec, None, prefix="bare", **opts)
            files.update({"bare-" + k: v for k, v in bare.files.items()})
        else:
            files.update(lstmgen.embedded_sources(spec, weights, prefix="emb", **opts))
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        for fname, text in files.items():
            with open(os.path.join(d, fname), "w", encoding="utf-8", newline="\n") as fh:
                fh.write(text)
        n += 1
    return n


def tree(root: str) -> dict[str, str]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for n in names:
            p = os.path.join(dirpath, n)
            with open(p, encoding="utf-8") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


def against(commit: str) -> int:
    with tempfile.TemporaryDirectory(prefix="lstmgen-snap-") as tmp:
        old_src = os.path.join(tmp, "old-src")
        subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", old_src, commit], check=True, capture_output=True)
        try:
            new_out, old_out = os.path.join(tmp, "new"), os.path.join(tmp, "old")
            for src, out in ((ROOT, new_out), (old_src, old_out)):
                env = dict(os.environ, PYTHONPATH=src)
                subprocess.run([sys.executable, os.path.abspath(__file__), out], check=True, env=env, cwd=tmp)
            a, b = tree(old_out), tree(new_out)
        finally:
            subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", old_src], check=False, capture_output=True)
    differ = 0
    for path in sorted(set(a) | set(b)):
        if a.get(path) != b.get(path):
            differ += 1
            sys.stdout.writelines(difflib.unified_diff(a.get(path, "").splitlines(True), b.get(path, "").splitlines(True),
                                                       f"{commit}/{path}", f"HEAD/{path}", n=1))
    configs_n = len({p.split(os.sep)[0] for p in a})
    print(f"snapshot: {configs_n} configurations, {len(a)} files at {commit}, {len(b)} here, {differ} differ")
    return 1 if differ else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", nargs="?", help="write the rendered files here")
    ap.add_argument("--against", metavar="COMMIT", help="render here and at COMMIT and diff")
    args = ap.parse_args()
    if args.against:
        return against(args.against)
    if not args.out:
        ap.error("give OUT_DIR or --against COMMIT")
    n = render_all(args.out)
    print(f"rendered {n} configurations into {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
