"""Regenerate generated/ and the example weights: `make generate`.

For each example spec in examples/*.json: weights from a fixed seed (saved as examples/<name>.npz,
so the CLI can be tried on them) and the standalone C in generated/<name>/.
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


def example(name: str):
    spec = lstmgen.LSTMSpec.load(os.path.join(HERE, f"{name}.json"))
    return spec, lstmgen.random_weights(spec, seed=0)


def write_all(out_root: str, write_weights: bool = True) -> None:
    for name in EXAMPLES:
        spec, weights = example(name)
        if write_weights:
            np.savez(os.path.join(HERE, f"{name}.npz"), **weights)
        lstmgen.generate(spec, weights, os.path.join(out_root, name), prefix=name)


if __name__ == "__main__":
    write_all(os.path.join(ROOT, "generated"))
    print("generated/ and examples/*.npz regenerated")
