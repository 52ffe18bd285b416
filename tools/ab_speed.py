"""A/B speed of lstmgen's generated C from several checkouts, interleaved in one run.

    python tools/ab_speed.py OLD_CHECKOUT NEW_CHECKOUT[@'{"ks": 2}'] --configs tiny_stream,kws [--rounds 15]

Each checkout (e.g. a git worktree: `git worktree add /tmp/old <commit>`) generates the C of the
benchmark configs (benchmarks/bench.py's CONFIGS; math="approx", target native, random weights)
with its own lstmgen and builds it against its own benchmarks/harness.c. The harness processes
then take turns (`forward 5`, and `step 5 200` for streaming configs) for the given rounds, so
all of them see the same machine load. Prints the 10th-percentile times (robust to other
tenants) and each one's ratio to the first checkout's. A checkout may carry a plan override after
'@' (JSON). Compare ratios of one run; for large configs add callgrind instruction counts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

BUILD = r"""
import json, subprocess, sys
tree, cfg_name, out, plan = sys.argv[1:5]
sys.path[:0] = [tree, tree + "/benchmarks"]
import bench, lstmgen
from lstmgen import build
cfg = next(c for c in bench.CONFIGS if c.name == cfg_name)
kw = dict(prefix="bench", target="native", math="approx")
if plan:
    kw["plan"] = json.loads(plan)
lstmgen.generate(cfg.spec, None, out, force=True, **kw)
subprocess.run(["cc", *build.compile_flags("native"), "-I", out, tree + "/benchmarks/harness.c", out + "/bench.c",
                "-lm", "-o", out + "/harness"], check=True)
print(cfg.T, cfg.B, int(cfg.stream))
"""


def build(checkout: str, config: str, out: str) -> tuple[list[str], bool]:
    """Generate and compile one checkout's harness for a config: (command, streams?)."""
    tree, _, plan = checkout.partition("@")
    done = subprocess.run([sys.executable, "-c", BUILD, os.path.abspath(tree), config, out, plan],
                          capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{checkout}: {done.stderr[-2000:]}")
    T, B, stream = done.stdout.split()
    return [os.path.join(out, "harness"), T, B], stream == "1"


class Harness:
    def __init__(self, cmd: list[str]):
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, line: str) -> list[float]:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return [float(v) for v in self.proc.stdout.readline().split()]

    def close(self) -> None:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.proc.wait()


def p10(values: list[float]) -> float:
    return sorted(values)[len(values) // 10]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("checkouts", nargs="+", help="lstmgen checkouts; the first is the baseline")
    ap.add_argument("--configs", default="tiny_stream,kws", help="comma-separated bench configs")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args(argv)
    work = tempfile.mkdtemp(prefix="lstmgen-ab-")
    for config in args.configs.split(","):
        runs = [build(c, config, os.path.join(work, f"{i}-{config}")) for i, c in enumerate(args.checkouts)]
        harnesses = [Harness(cmd) for cmd, _ in runs]
        stream = runs[0][1]
        forward: list[list[float]] = [[] for _ in harnesses]
        step: list[list[float]] = [[] for _ in harnesses]
        for h in harnesses:
            h.ask("forward 3")  # warm-up
        for _ in range(args.rounds):
            for i, h in enumerate(harnesses):
                forward[i] += h.ask("forward 5")
                if stream:
                    step[i] += h.ask("step 5 200")
        f = [p10(v) / 1e3 for v in forward]
        line = f"{config:18s} forward us (p10): " + "  ".join(f"{m:9.1f} ({m / f[0]:.3f})" for m in f)
        if stream:
            s = [p10(v) for v in step]
            line += "   step ns: " + "  ".join(f"{m:8.1f} ({m / s[0]:.3f})" for m in s)
        print(line, flush=True)
        for h in harnesses:
            h.close()
    print(json.dumps({"checkouts": args.checkouts, "rounds": args.rounds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
