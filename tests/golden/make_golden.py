"""Record golden LSTM cases from torch.nn.LSTM (torch 2.13, CPU, float32, eval mode).

Input: nothing (fixed seeds). Output: tests/golden/<case>.npz, each holding `spec_json`
(LSTMSpec.to_json()), every state_dict tensor as `w.<name>` (float32), `x`, optional `h0`,
`c0`, `lengths` (int64), and torch's `out`, `h_n`, `c_n` (float32).

Run from the repo root: .venv/bin/python tests/golden/make_golden.py
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))  # repo root, for lstmgen

from lstmgen.spec import LSTMSpec  # noqa: E402

TORCH_VERSION = "2.13"

# name -> (LSTMSpec kwargs, T, B (None = unbatched), use lengths, use h0/c0)
CASES = {
    "plain": (dict(input_size=5, hidden_size=7), 6, 2, False, False),
    "multilayer": (dict(input_size=4, hidden_size=6, num_layers=3), 5, 3, False, False),
    "bidirectional": (dict(input_size=5, hidden_size=6, num_layers=2, bidirectional=True), 6, 2, False, False),
    "proj": (dict(input_size=6, hidden_size=10, num_layers=2, proj_size=4), 5, 2, False, False),
    "proj_bidirectional": (
        dict(input_size=6, hidden_size=9, num_layers=2, proj_size=5, bidirectional=True), 5, 3, False, False,
    ),
    "nobias": (dict(input_size=5, hidden_size=6, num_layers=2, bias=False), 5, 2, False, False),
    "batch_first": (dict(input_size=4, hidden_size=6, num_layers=2, batch_first=True), 6, 3, False, False),
    "unbatched": (dict(input_size=5, hidden_size=6, num_layers=2, bidirectional=True), 6, None, False, True),
    "lengths": (
        dict(input_size=5, hidden_size=8, num_layers=2, bidirectional=True, proj_size=3), 7, 3, True, False,
    ),
    "lengths_unidirectional": (dict(input_size=4, hidden_size=7, num_layers=2), 7, 3, True, False),
    "h0c0": (dict(input_size=5, hidden_size=6, num_layers=2), 5, 2, False, True),
    "everything": (
        dict(input_size=6, hidden_size=12, num_layers=2, bidirectional=True, proj_size=5, batch_first=True),
        7, 3, True, True,
    ),
}


def make_case(seed: int, kwargs: dict, T: int, B: int | None, use_lengths: bool, use_h0: bool) -> dict:
    torch.manual_seed(seed)
    spec = LSTMSpec(**kwargs)
    lstm = torch.nn.LSTM(**kwargs).float().eval()
    sd = lstm.state_dict()
    assert {k: tuple(v.shape) for k, v in sd.items()} == spec.weight_shapes(), "spec/torch weight mismatch"
    L, D, H, R = spec.num_layers, spec.num_directions, spec.hidden_size, spec.output_size

    if B is None:
        x = torch.randn(T, spec.input_size)
    elif spec.batch_first:
        x = torch.randn(B, T, spec.input_size)
    else:
        x = torch.randn(T, B, spec.input_size)
    rec: dict[str, np.ndarray] = {"spec_json": np.array(spec.to_json())}
    for name, v in sd.items():
        rec[f"w.{name}"] = v.detach().numpy().astype(np.float32)
    rec["x"] = x.numpy()

    hx = None
    if use_h0:
        batch = () if B is None else (B,)
        h0 = torch.randn(L * D, *batch, R) * 0.5
        c0 = torch.randn(L * D, *batch, H) * 0.5
        hx = (h0, c0)
        rec["h0"], rec["c0"] = h0.numpy(), c0.numpy()

    with torch.no_grad():
        if use_lengths:
            assert B is not None
            lengths = torch.randint(1, T + 1, (B,), dtype=torch.int64)
            lengths[0] = T  # at least one full-length row ...
            lengths[-1] = max(1, T // 2)  # ... and one short one, in unsorted order
            packed = torch.nn.utils.rnn.pack_padded_sequence(
                x, lengths, batch_first=spec.batch_first, enforce_sorted=False
            )
            out_p, (h_n, c_n) = lstm(packed, hx)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out_p, batch_first=spec.batch_first, total_length=T)
            rec["lengths"] = lengths.numpy().astype(np.int64)
        else:
            out, (h_n, c_n) = lstm(x, hx)
    rec["out"] = out.numpy().astype(np.float32)
    rec["h_n"] = h_n.numpy().astype(np.float32)
    rec["c_n"] = c_n.numpy().astype(np.float32)
    return rec


def main() -> None:
    if not torch.__version__.startswith(TORCH_VERSION):
        print(f"warning: goldens were recorded with torch {TORCH_VERSION}, this is {torch.__version__}")
    torch.set_num_threads(1)
    for seed, (name, (kwargs, T, B, use_lengths, use_h0)) in enumerate(CASES.items()):
        rec = make_case(1000 + seed, kwargs, T, B, use_lengths, use_h0)
        path = os.path.join(HERE, f"{name}.npz")
        np.savez_compressed(path, **rec)
        print(f"{path}: out {rec['out'].shape} h_n {rec['h_n'].shape}")


if __name__ == "__main__":
    main()
