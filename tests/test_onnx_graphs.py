"""ONNX graphs beyond a plain export: weights as graph inputs, cuts of bigger graphs, refusals.

Input: ONNX's own backend node tests `test_lstm_*` (model.onnx and test_data_set_0/*.pb, weights
given as graph inputs and bound with constants=), hand-built graphs (Conv feeding an LSTM, a
squeezed Y_h), a torch-exported LSTM + Linear, models with external data, to_onnx's graphs and the
CLI's `inspect --graph`. Output: pass/fail; the compiled C (or the reference) must match the
shipped outputs, onnxruntime or torch within ATOL, and refusals must name what is wrong.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import need_module

import lstmgen
from lstmgen.reference import lstm_forward

ATOL = 1e-5
I, H, T, B = 3, 4, 5, 2  # noqa: E741 - input, hidden, time, batch sizes


@pytest.fixture(scope="module")
def ort():
    need_module("onnx")
    return need_module("onnxruntime")


def run_ort(ort, model, feeds):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))


def run_import(imp, feeds, compiled=True):
    """The graph's outputs computed by lstmgen's compiled C (or the reference) through `imp`'s mapping."""
    x, hx, lengths = imp.model_inputs(feeds)
    if compiled:
        out, hn = lstmgen.compile(imp.spec, imp.weights)(x, hx, lengths=lengths)
    else:
        out, hn = lstm_forward(imp.spec, imp.weights, x, hx, lengths)
    return imp.graph_outputs(out, hn)


def assert_close(got, want, what):
    assert got.shape == want.shape, f"{what}: shape {got.shape} != {want.shape}"
    err = float(np.abs(got - want).max()) if want.size else 0.0
    assert err < ATOL, f"{what}: max abs error {err:.3g}"


# ---- refusals name the first op lstmgen cannot read ---------------------------------------


def conv_lstm_model(with_if=False):
    """x (B, I, T) -> Conv (kernel 1) -> Transpose (T, B, I) -> LSTM -> Y_h; an int scalar input 'sr'."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((I, I, 1)).astype(np.float32), "conv_w"),
             numpy_helper.from_array(rng.standard_normal((1, 4 * H, I)).astype(np.float32) * 0.5, "W"),
             numpy_helper.from_array(rng.standard_normal((1, 4 * H, H)).astype(np.float32) * 0.5, "R")]
    nodes = [helper.make_node("Conv", ["x", "conv_w"], ["conv_out"], name="conv"),
             helper.make_node("Transpose", ["conv_out"], ["seq"], perm=[2, 0, 1], name="to_tbi"),
             helper.make_node("LSTM", ["seq", "W", "R"], ["Y", "Y_h"], hidden_size=H, name="lstm")]
    if with_if:
        branch = helper.make_graph([helper.make_node("Identity", ["Y_h"], ["b_out"])], "branch", [],
                                   [helper.make_tensor_value_info("b_out", TensorProto.FLOAT, None)])
        nodes += [helper.make_node("Cast", ["sr"], ["cond"], to=TensorProto.BOOL, name="cond"),
                  helper.make_node("If", ["cond"], ["picked"], then_branch=branch, else_branch=branch, name="pick")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, [B, I, T]),
              helper.make_tensor_value_info("sr", TensorProto.INT64, [])]
    out = "picked" if with_if else "Y_h"
    outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "conv_lstm", inputs, outputs, initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_refusal_names_the_first_unsupported_op():
    need_module("onnx")
    for with_if in (False, True):
        with pytest.raises(ValueError, match=r"^node #0 Conv 'conv': op Conv is not supported"):
            lstmgen.from_onnx(conv_lstm_model(with_if))
    model = conv_lstm_model(True)
    model.graph.node[0].op_type = "Identity"  # Identity(x, conv_w): now If is the first op lstmgen cannot read
    model.graph.node[0].input.pop()
    with pytest.raises(ValueError, match=r"^node #4 If 'pick': op If is not supported"):
        lstmgen.from_onnx(model)
