"""What bounds the one-row recurrence step here: the evidence behind the README's speed notes.

For hidden sizes from 16 to 512 (one layer, target native, math approx, prefix `bench`) this
builds benchmarks/limits.c against the generated C and times, inside C:

- the latency of one vector FMA, tanh and sigmoid of math=approx (dependent chains);
- one B = 1 step (gates += h . W_hh^T, then the cell), called over and over on the same inputs;
- a bare vector sum over the same W_hh: the read bandwidth the caches give those bytes.

It prints a table: W_hh's size and which cache it fits (from /sys), ns per step, the GB/s at
which the step streams W_hh, and the step in cycles counted as FMA latencies (4 cycles each on
recent x86 cores; no hardware counters are needed). Small H is latency-bound (cycles ~ the
chain FMA sum -> sigmoid -> cell -> tanh); once W_hh leaves L1 the step's GB/s settle near the
bare read's: what the cache can deliver, whatever the kernel does.

    python benchmarks/limits.py                 # H = 16 32 48 64 128 256 512
    python benchmarks/limits.py --hidden 16,256
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import lstmgen  # noqa: E402
from lstmgen import build as lg_build  # noqa: E402

FMA_CYCLES = 4  # FMA latency on Intel since Skylake and on AMD Zen: turns ns into cycles


def cache_sizes() -> dict[str, int]:
    """Per-core data cache sizes in bytes, from sysfs (empty where the system does not say)."""
    out = {}
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        entries = sorted(os.listdir(base))
    except OSError:
        return out
    for entry in entries:
        try:
            with open(os.path.join(base, entry, "level")) as fh:
                level = fh.read().strip()
            with open(os.path.join(base, entry, "type")) as fh:
                kind = fh.read().strip()
            with open(os.path.join(base, entry, "size")) as fh:
                size = fh.read().strip()
        except OSError:
            continue
        if kind in ("Data", "Unified") and size.endswith("K"):
            out[f"L{level}"] = int(size[:-1]) * 1024
    return out


def fits(nbytes: int, caches: dict[str, int]) -> str:
    return next((name for name in sorted(caches) if nbytes <= caches[name]), "memory")


def measure(H: int, workdir: str) -> dict[str, float]:
    spec = lstmgen.LSTMSpec(input_size=H, hidden_size=H)
    src = os.path.join(workdir, f"h{H}")
    lstmgen.generate(spec, None, src, prefix="bench", target="native", math="approx")
    exe = os.path.join(src, "limits")
    cc = os.environ.get("CC", "cc")
    subprocess.run([cc, *lg_build.compile_flags("native"), "-I", src, os.path.join(HERE, "limits.c"), "-lm", "-o", exe],
                   check=True)
    words = subprocess.run([exe], check=True, capture_output=True, text=True).stdout.split()
    return {words[i]: float(words[i + 1]) for i in range(0, len(words) - 1, 2)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--hidden", default="16,32,48,64,128,256,512", help="hidden sizes, comma-separated")
    args = ap.parse_args(argv)
    if lstmgen.kernels.native_isa() == "portable":
        print("no vector ISA on this host: the limits probe times the vector kernels only")
        return 1
    caches = cache_sizes()
    print("caches per core:", ", ".join(f"{k} {v // 1024} KiB" for k, v in sorted(caches.items())) or "unknown")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lstmgen-limits-") as tmp:
        for H in (int(h) for h in args.hidden.split(",")):
            m = measure(H, tmp)
            whh = 4 * H * 4 * H
            cyc = m["step"] / m["fma"] * FMA_CYCLES
            rows.append((H, whh, m, cyc))
    m0 = rows[0][2]
    print(f"vector FMA latency {m0['fma']:.3f} ns (= {FMA_CYCLES} cycles: {FMA_CYCLES / m0['fma']:.2f} GHz); "
          f"tanh {m0['tanh']:.2f} ns ({m0['tanh'] / m0['fma'] * FMA_CYCLES:.0f} cycles), "
          f"sigmoid {m0['sigmoid']:.2f} ns ({m0['sigmoid'] / m0['fma'] * FMA_CYCLES:.0f} cycles)")
    print()
    print("| H | W_hh | fits in | ns / step | W_hh GB/s in the step | bare read GB/s | cycles / step | FMA / cycle |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|")
    vw = lstmgen.kernels.plan(lstmgen.LSTMSpec(input_size=1, hidden_size=16), lstmgen.kernels.native_isa(), "approx").vw
    for H, whh, m, cyc in rows:
        fmas = H * 4 * H / vw
        print(f"| {H} | {whh / 1024:g} KiB | {fits(whh, caches)} | {m['step']:.1f} | {whh / m['step']:.0f} | "
              f"{whh / m['read']:.0f} | {cyc:.0f} | {fmas / cyc:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
