"""ONNX export.

Input: an LSTMSpec (or anything as_spec takes) without projection and its weights.
Output: `to_onnx`: an onnx.ModelProto with one LSTM node per layer plus Slice/Transpose/Reshape/
Concat glue (opset 14 by default), checked by onnx.checker.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .gates import _ONNX_FROM_TORCH, _PH_TORCH_FROM_ONNX, OPSET_MAX, USES_ALPHA, USES_BETA, _blocks

EXPORT_OPSET = 14


def to_onnx(spec: Any, weights: Any, *, with_state: bool = False, with_lengths: bool = False,
            opset: int = EXPORT_OPSET) -> Any:
    """An onnx.ModelProto computing the same as compile(spec, weights): one LSTM node per layer.

    Graph inputs: x ((T, B, I), or (B, T, I) with batch_first), and with `with_state` h0 and c0
    ((L*D, B, H)), with `with_lengths` lengths ((B,) int64). Outputs: out, h_n, c_n, laid out as
    Model returns them. Models with proj_size have no ONNX LSTM equivalent: ValueError.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from ..spec import as_spec
    from ..weights import check_weights

    spec = as_spec(spec)
    if spec.proj_size:
        raise ValueError("to_onnx: ONNX's LSTM has no projection (proj_size > 0 cannot be exported)")
    if spec.head:
        raise ValueError("to_onnx: a spec with a head cannot be exported (only the LSTM itself); drop the head")
    if not 14 <= opset <= OPSET_MAX:
        raise ValueError(f"to_onnx: opset must be in [14, {OPSET_MAX}], got {opset}")
    w = check_weights(spec, weights)
    L, D, H, n_in = spec.num_layers, spec.num_directions, spec.hidden_size, spec.input_size
    nodes, inits = [], []

    def const(name: str, value: Any) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    x_shape = ["B", "T", n_in] if spec.batch_first else ["T", "B", n_in]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)]
    if with_state:
        inputs += [helper.make_tensor_value_info(n, TensorProto.FLOAT, [L * D, "B", H]) for n in ("h0", "c0")]
    if with_lengths:
        inputs.append(helper.make_tensor_value_info("lengths", TensorProto.INT64, ["B"]))
        nodes.append(helper.make_node("Cast", ["lengths"], ["lengths_i32"], to=TensorProto.INT32))
    seq = "x"
    if spec.batch_first:
        nodes.append(helper.make_node("Transpose", ["x"], ["x_tbi"], perm=[1, 0, 2]))
        seq = "x_tbi"
    acts = [a for d in range(D) for a in spec.direction_activations(d)]
    attrs: dict[str, Any] = dict(hidden_size=H, activations=[a.name for a in acts],
                                 direction="bidirectional" if D == 2 else ("reverse" if spec.reverse else "forward"))
    alphas = [a.alpha for a in acts if a.name in USES_ALPHA]
    betas = [a.beta for a in acts if a.name in USES_BETA]
    if alphas:
        attrs["activation_alpha"] = alphas
    if betas:
        attrs["activation_beta"] = betas
    if spec.clip is not None:
        attrs["clip"] = spec.clip
    if spec.input_forget:
        attrs["input_forget"] = 1
    const("merge_dh", np.array([0, 0, -1], np.int64))
    y_h, y_c = [], []
    for k in range(L):
        sfx = [f"l{k}" + ("_reverse" if d == 1 else "") for d in range(D)]
        Wn = const(f"W{k}", np.stack([_blocks(w[f"weight_ih_{s}"], 4, _ONNX_FROM_TORCH) for s in sfx]))
        Rn = const(f"R{k}", np.stack([_blocks(w[f"weight_hh_{s}"], 4, _ONNX_FROM_TORCH) for s in sfx]))
        Bn = Pn = ""
        if spec.bias:
            Bn = const(f"B{k}", np.stack([np.concatenate([_blocks(w[f"bias_ih_{s}"], 4, _ONNX_FROM_TORCH),
                                                          _blocks(w[f"bias_hh_{s}"], 4, _ONNX_FROM_TORCH)]) for s in sfx]))
        if spec.peepholes:
            Pn = const(f"P{k}", np.stack([_blocks(w[f"weight_ph_{s}"], 3, _PH_TORCH_FROM_ONNX) for s in sfx]))
        h_in = c_in = ""
        if with_state:
            if k == 0:
                const("axis0", np.array([0], np.int64))  # the Slices' axis
            const(f"rows{k}_start", np.array([k * D], np.int64))
            const(f"rows{k}_end", np.array([(k + 1) * D], np.int64))
            for src, dst in (("h0", f"h0_l{k}"), ("c0", f"c0_l{k}")):
                nodes.append(helper.make_node("Slice", [src, f"rows{k}_start", f"rows{k}_end", "axis0"], [dst]))
            h_in, c_in = f"h0_l{k}", f"c0_l{k}"
        lstm_in = [seq, Wn, Rn, Bn, "lengths_i32" if with_lengths else "", h_in, c_in, Pn]
        while lstm_in[-1] == "":
            lstm_in.pop()
        nodes.append(helper.make_node("LSTM", lstm_in, [f"Y{k}", f"Y_h{k}", f"Y_c{k}"], name=f"lstm_l{k}", **attrs))
        nodes.append(helper.make_node("Transpose", [f"Y{k}"], [f"Y{k}_tbdh"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [f"Y{k}_tbdh", "merge_dh"], [f"seq{k + 1}"]))
        seq = f"seq{k + 1}"
        y_h.append(f"Y_h{k}")
        y_c.append(f"Y_c{k}")
    if spec.batch_first:
        nodes.append(helper.make_node("Transpose", [seq], ["out"], perm=[1, 0, 2]))
    else:
        nodes.append(helper.make_node("Identity", [seq], ["out"]))
    nodes.append(helper.make_node("Concat", y_h, ["h_n"], axis=0))
    nodes.append(helper.make_node("Concat", y_c, ["c_n"], axis=0))
    out_shape = ["B", "T", D * H] if spec.batch_first else ["T", "B", D * H]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, out_shape),
               helper.make_tensor_value_info("h_n", TensorProto.FLOAT, [L * D, "B", H]),
               helper.make_tensor_value_info("c_n", TensorProto.FLOAT, [L * D, "B", H])]
    graph = helper.make_graph(nodes, "lstmgen", inputs, outputs, initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="lstmgen",
                              ir_version=8)
    onnx.checker.check_model(model)
    return model
