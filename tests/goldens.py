"""Loader for the torch-recorded golden cases in tests/golden/*.npz (see make_golden.py).

Input: a path to one .npz. Output: a dict with spec (LSTMSpec), weights (name -> float32
array, torch state_dict names), x, hx ((h0, c0) or None), lengths (int64 or None) and
torch's out, h_n, c_n.
"""

from __future__ import annotations

import glob
import json
import os

import numpy as np

from lstmgen.spec import LSTMSpec

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
CASES = sorted(glob.glob(os.path.join(GOLDEN_DIR, "*.npz")))


def load_case(path: str) -> dict:
    with np.load(path, allow_pickle=False) as d:
        spec = LSTMSpec.from_dict(json.loads(str(d["spec_json"])), where=path)
        weights = {k[2:]: d[k] for k in d.files if k.startswith("w.")}
        hx = (d["h0"], d["c0"]) if "h0" in d.files else None
        return dict(
            spec=spec,
            weights=weights,
            x=d["x"],
            hx=hx,
            lengths=d["lengths"] if "lengths" in d.files else None,
            out=d["out"],
            h_n=d["h_n"],
            c_n=d["c_n"],
        )
