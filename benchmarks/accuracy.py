"""Compatibility entry point: the trained-like accuracy models moved to benchmarks/accuracy/.

    python benchmarks/accuracy.py [--quick] [--T 1000,10000] [--seeds 5] [--json out.json]

runs benchmarks/accuracy/trained_like.py with the same arguments. The full corpus (trained and
adversarial models, every peer) is benchmarks/accuracy/run.py, run by `make accuracy`.
"""

import os
import runpy

if __name__ == "__main__":
    runpy.run_path(os.path.join(os.path.dirname(os.path.abspath(__file__)), "accuracy", "trained_like.py"), run_name="__main__")
