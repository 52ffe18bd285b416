"""What the ONNX importer and exporter share: gate orders, activation parameters, opsets.

Input: ONNX's LSTM tensors W, R, B, P (gate blocks in order i, o, f, c; peepholes i, o, f), or
torch.nn.LSTM's state_dict tensors (gate blocks i, f, g, o; peepholes i, f, o).
Output: the same tensors in the other order (`_blocks` with one of the permutations below), and
`_weights_from_onnx`: the per-layer ONNX tensors the importer collected as a state_dict.
ONNX's B is [Wb, Rb] per direction: Wb becomes bias_ih, Rb bias_hh.
"""

from __future__ import annotations

import numpy as np

from ..spec import ACTIVATIONS, LSTMSpec

OPSET_MIN, OPSET_MAX = 7, 22

# ONNX gate block k (i, o, f, c) <-> torch block (i, f, g, o)
_ONNX_FROM_TORCH = [0, 3, 1, 2]  # onnx blocks, taken from torch blocks
_TORCH_FROM_ONNX = [0, 2, 3, 1]  # torch blocks, taken from onnx blocks
_PH_TORCH_FROM_ONNX = [0, 2, 1]  # peepholes: torch (i, f, o) from onnx (i, o, f); its own inverse

# onnxruntime reads activation_alpha/activation_beta as holding values only for the activations
# that take them, in (f, g, h[, f, g, h]) order; lstmgen reads and writes them the same way.
USES_ALPHA = frozenset(n for n, (a, _) in ACTIVATIONS.items() if a is not None)
USES_BETA = frozenset(n for n, (_, b) in ACTIVATIONS.items() if b is not None)


def _blocks(a: np.ndarray, n: int, order: list[int], axis: int = 0) -> np.ndarray:
    parts = np.split(a, n, axis=axis)
    return np.concatenate([parts[i] for i in order], axis=axis)


def _weights_from_onnx(spec: LSTMSpec, layers: list[dict]) -> dict[str, np.ndarray]:
    H = spec.hidden_size
    out: dict[str, np.ndarray] = {}
    for k, lay in enumerate(layers):
        for d in range(spec.num_directions):
            sfx = f"l{k}" + ("_reverse" if d == 1 else "")
            out[f"weight_ih_{sfx}"] = _blocks(lay["W"][d], 4, _TORCH_FROM_ONNX).astype(np.float32)  # (4H, I_k)
            out[f"weight_hh_{sfx}"] = _blocks(lay["R"][d], 4, _TORCH_FROM_ONNX).astype(np.float32)  # (4H, H)
            if spec.bias:
                b = lay["B"][d] if lay["B"] is not None else np.zeros(8 * H)
                out[f"bias_ih_{sfx}"] = _blocks(b[:4 * H], 4, _TORCH_FROM_ONNX).astype(np.float32)
                out[f"bias_hh_{sfx}"] = _blocks(b[4 * H:], 4, _TORCH_FROM_ONNX).astype(np.float32)
            if spec.peepholes:
                p = lay["P"][d] if lay["P"] is not None else np.zeros(3 * H)
                out[f"weight_ph_{sfx}"] = _blocks(p, 3, _PH_TORCH_FROM_ONNX).astype(np.float32)
    return out
