"""Cache-hit compile() time: what a process pays to get a Model whose library is already cached.

    python benchmarks/compile_time.py [--calls 20] [--spec examples/kws.json]

Each measurement runs in a fresh Python process (so nothing is memoised from an earlier call in
the same process except what the first call there builds): it imports lstmgen, compiles once to
make sure the cache holds the library, then times `calls` more compile() calls of the same spec and
weights and prints their median, next to the first call's time. Run it at two commits to compare
(the cache is shared; `LSTMGEN_CACHE_DIR` picks it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import numpy as np
t0 = time.perf_counter()
import lstmgen
t_import = time.perf_counter() - t0
spec_path, calls = sys.argv[1], int(sys.argv[2])
spec = lstmgen.LSTMSpec.load(spec_path)
weights = dict(np.load(spec_path[:-5] + ".npz"))
t0 = time.perf_counter()
lstmgen.compile(spec, weights, prefix="kws")
first = time.perf_counter() - t0
times = []
for _ in range(calls):
    t0 = time.perf_counter()
    lstmgen.compile(spec, weights, prefix="kws")
    times.append(time.perf_counter() - t0)
times.sort()
print(json.dumps(dict(import_s=t_import, first_s=first, median_s=times[len(times) // 2], calls=calls)))
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=20)
    ap.add_argument("--spec", default=os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "kws.json"))
    args = ap.parse_args()
    warm = subprocess.run([sys.executable, "-c", CHILD, args.spec, "1"], capture_output=True, text=True, check=True)
    res = json.loads(subprocess.run([sys.executable, "-c", CHILD, args.spec, str(args.calls)], capture_output=True,
                                    text=True, check=True).stdout)
    del warm
    print(f"import lstmgen {res['import_s'] * 1e3:.0f} ms; first compile() in the process (cache hit) "
          f"{res['first_s'] * 1e3:.1f} ms; median of {res['calls']} more {res['median_s'] * 1e3:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
