"""Regenerate generated/ and the example weights: `make generate`.

For each example spec in examples/*.json: weights from a fixed seed (saved as examples/<name>.npz,
so the CLI can be tried on them) and the embedded folder in generated/<name>/ (`lstmgen generate
--embedded`: the standalone C, the static-memory API, a self-test with golden vectors, a Makefile
and a README).
A test regenerates into a temp folder and fails when generated/ differs.
"""

from __future__ import annotations

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import lstmgen  # noqa: E402

EXAMPLES = ("kws", "bidir_proj")
# The embedded folder's static-build options per example (lstmgen.generate_embedded): kws streams
# one channel with the default chunked schedule; bidir_proj reads whole sequences, so it needs a
# fixed maximum length, and serves two rows to show one row's reset.
EMBEDDED = {"kws": dict(max_batch=1), "bidir_proj": dict(max_batch=2, seq_len=16)}


def example(name: str):
    spec = lstmgen.LSTMSpec.load(os.path.join(HERE, f"{name}.json"))
    return spec, lstmgen.random_weights(spec, seed=0)


def write_all(out_root: str, write_weights: bool = True) -> None:
    for name in EXAMPLES:
        spec, weights = example(name)
        if write_weights:
            np.savez(os.path.join(HERE, f"{name}.npz"), **weights)
        lstmgen.generate_embedded(spec, weights, os.path.join(out_root, name), prefix=name, **EMBEDDED[name])


if __name__ == "__main__":
    write_all(os.path.join(ROOT, "generated"))
    print("generated/ and examples/*.npz regenerated")
