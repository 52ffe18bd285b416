"""A compiled Model as a torch.nn.Module with torch.nn.LSTM's forward signature (inference only).

Input: a `runtime.Model`. Output: `LSTMModule`, so `net.lstm = lstmgen.compile(net.lstm).as_torch()`
keeps the rest of a torch model unchanged: torch tensors in and out, `hx`, batch_first, unbatched
input, and a `PackedSequence` input giving a `PackedSequence` output (same batch_sizes and
indices as torch's). The module holds no parameters (the weights live in the Model), runs the C
under any grad mode but refuses an input that needs a gradient, and works on CPU float tensors
(other float dtypes are converted to float32 and back). torch is imported only here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence


def _numpy(name: str, t: Any) -> np.ndarray:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.requires_grad and torch.is_grad_enabled():
        raise RuntimeError(f"{name} requires grad: a compiled lstmgen module is inference-only (no backward); "
                           "run it under torch.no_grad() / torch.inference_mode(), or detach the input")
    if t.device.type != "cpu":
        raise ValueError(f"{name} is on {t.device}; the compiled module runs on the CPU (move it with .cpu())")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {t.dtype}")
    return t.detach().to(torch.float32).contiguous().numpy()


class LSTMModule(torch.nn.Module):
    """torch.nn.LSTM's forward over a compiled lstmgen Model (see lstmgen.Model.as_torch)."""

    def __init__(self, model: Any):
        super().__init__()
        self.model = model
        spec = model.spec
        # what torch code reads off an nn.LSTM
        self.input_size, self.hidden_size, self.num_layers = spec.input_size, spec.hidden_size, spec.num_layers
        self.bias, self.batch_first, self.bidirectional = spec.bias, spec.batch_first, spec.bidirectional
        self.proj_size = spec.proj_size

    def extra_repr(self) -> str:
        return repr(self.model)

    def forward(self, input: Any, hx: tuple[Any, Any] | None = None):  # noqa: A002 - torch's name
        packed = isinstance(input, PackedSequence)
        if packed:
            padded, lengths = pad_packed_sequence(input, batch_first=self.batch_first)  # original batch order
            x, dtype = _numpy("input", padded), padded.dtype
            lens = lengths.numpy().astype(np.int64)
        else:
            x, dtype, lens = _numpy("input", input), getattr(input, "dtype", torch.float32), None
        h = None
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx must be a tuple (h_0, c_0) of tensors")
            h = (_numpy("h_0", hx[0]), _numpy("c_0", hx[1]))
        out, (h_n, c_n) = self.model(x, h, lengths=lens)
        out_t = torch.from_numpy(out).to(dtype)
        state = (torch.from_numpy(h_n).to(dtype), torch.from_numpy(c_n).to(dtype))
        if not packed:
            return out_t, state
        # pack in the input's own order, then carry its batch_sizes and permutation over
        sorted_idx = input.sorted_indices
        if sorted_idx is not None:
            out_t = out_t.index_select(0 if self.batch_first else 1, sorted_idx)
            lengths = lengths.index_select(0, sorted_idx.cpu())
        data = pack_padded_sequence(out_t, lengths, batch_first=self.batch_first, enforce_sorted=True).data
        return PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices), state
