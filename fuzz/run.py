"""Run lstmgen's fuzzers for a bounded time and report executions; keep every crash as a regression.

Input: --seconds per target, --targets (c: libFuzzer on the generated C API, see c_target.py;
spec, fields, onnx: atheris on the parsers, see py_targets.py), --out (work folder, default
build/fuzz). Output: one line per target (executions, seconds, new coverage units), exit 1 when a
target crashed; the crashing input is copied to fuzz/regressions/<target>/ where tests/test_fuzz.py
replays it on every `make test`.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
REGRESSIONS = os.path.join(HERE, "regressions")
PY_TARGETS = ("spec", "fields", "onnx")


def seeds(target: str, folder: str) -> None:
    """Starting inputs: the example specs, a few exotic ones, real ONNX exports."""
    os.makedirs(folder, exist_ok=True)
    import lstmgen

    examples = [lstmgen.LSTMSpec.load(os.path.join(ROOT, "examples", f)) for f in sorted(os.listdir(os.path.join(ROOT, "examples")))
                if f.endswith(".json")]
    specs = [
        lstmgen.LSTMSpec(input_size=2, hidden_size=3),
        lstmgen.LSTMSpec(input_size=3, hidden_size=2, num_layers=2, bias=False, batch_first=True),
        lstmgen.LSTMSpec(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, proj_size=2, batch_first=True),
        lstmgen.LSTMSpec(input_size=2, hidden_size=3, peepholes=True, clip=2.0, input_forget=True, reverse=True,
                         activations=["HardSigmoid", "LeakyRelu", "Softplus"]),
        lstmgen.LSTMSpec(input_size=2, hidden_size=3, bidirectional=True,
                         activations=["Sigmoid", "Tanh", "Tanh", "Affine", "ScaledTanh", "Elu"]),
    ]
    blobs = []
    if target == "spec":
        for s in specs + examples:
            blobs.append(b"\x00" + s.to_json().encode())
            blobs.append(b"\x01" + "".join(f"{k} = {_toml(v)}\n" for k, v in s.to_dict().items()).encode())
    elif target == "onnx":
        for s in specs:
            if s.proj_size == 0 and s.is_torch_cell:
                try:
                    blobs.append(lstmgen.to_onnx(s, lstmgen.random_weights(s, 0)).SerializeToString())
                except (ValueError, TypeError):
                    pass
    for blob in blobs:
        with open(os.path.join(folder, hashlib.sha1(blob).hexdigest()), "wb") as fh:
            fh.write(blob)


def _toml(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k} = {_toml(x)}" for k, x in v.items()) + "}"
    return '"' + str(v) + '"'


def command(target: str, out: str) -> list[str]:
    if target == "c":
        from c_target import build

        return [build(os.path.join(out, "c"))]
    return [sys.executable, os.path.join(HERE, "py_targets.py"), target]


def run(target: str, seconds: float, out: str) -> dict:
    """Fuzz one target; returns {target, runs, seconds, new_units, crashed, crash_file, log}."""
    os.makedirs(out, exist_ok=True)
    corpus = os.path.join(out, f"corpus-{target}")
    seeds(target, corpus)
    regress = os.path.join(REGRESSIONS, target)
    crash_prefix = os.path.join(out, f"{target}-")  # libFuzzer appends crash-<sha1> / leak-<sha1> / timeout-...
    cmd = command(target, out) + [f"-max_total_time={int(seconds)}", "-print_final_stats=1", "-timeout=20",
                                  "-rss_limit_mb=4096", f"-artifact_prefix={crash_prefix}", corpus]
    if os.path.isdir(regress):
        cmd.append(regress)  # read-only extra corpus: earlier crashes stay in the mix
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + HERE)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=seconds * 4 + 300)
    elapsed = time.time() - t0
    log = r.stdout + r.stderr
    runs = re.findall(r"stat::number_of_executed_units:\s*(\d+)", log) or re.findall(r"Done (\d+) runs", log)
    units = re.findall(r"stat::new_units_added:\s*(\d+)", log)
    artifacts = [f for f in os.listdir(out) if f.startswith(f"{target}-") and os.path.isfile(os.path.join(out, f))]
    crashed = r.returncode != 0
    crash_file = None
    if crashed:
        found = sorted(os.path.join(out, f) for f in artifacts)
        if found:
            os.makedirs(regress, exist_ok=True)
            crash_file = os.path.join(regress, os.path.basename(found[-1])[len(target) + 1:])
            shutil.copy(found[-1], crash_file)
    return dict(target=target, runs=int(runs[-1]) if runs else 0, seconds=elapsed, new_units=int(units[-1]) if units else 0,
                crashed=crashed, crash_file=crash_file, log=log[-8000:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60, help="fuzzing time per target")
    ap.add_argument("--targets", default="c,spec,fields,onnx")
    ap.add_argument("--out", default=os.path.join(ROOT, "build", "fuzz"))
    args = ap.parse_args(argv)
    failed = False
    total = 0
    for target in args.targets.split(","):
        res = run(target, args.seconds, args.out)
        total += res["runs"]
        status = "CRASH -> " + str(res["crash_file"]) if res["crashed"] else "no crash"
        print(f"{target:7s} {res['runs']:>10d} executions in {res['seconds']:5.1f} s, {res['new_units']} new units: {status}")
        if res["crashed"]:
            failed = True
            print(res["log"][-3000:])
    print(f"total   {total:>10d} executions")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
