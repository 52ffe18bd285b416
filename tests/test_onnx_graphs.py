"""ONNX graphs beyond a plain export: weights as graph inputs, cuts of bigger graphs, refusals.

Input: ONNX's own backend node tests `test_lstm_*` (model.onnx and test_data_set_0/*.pb, weights
given as graph inputs and bound with constants=), hand-built graphs (Conv feeding an LSTM, a
squeezed Y_h), a torch-exported LSTM + Linear, models with external data, to_onnx's graphs and the
CLI's `inspect --graph`. Output: pass/fail; the compiled C (or the reference) must match the
shipped outputs, onnxruntime or torch within ATOL, and refusals must name what is wrong.
"""

from __future__ import annotations

import glob
import io
import logging
import os
import warnings

import numpy as np
import pytest
from conftest import need_module, run_ort

import lstmgen
from lstmgen.reference import lstm_forward

ATOL = 1e-5
I, H, T, B = 3, 4, 5, 2  # noqa: E741 - input, hidden, time, batch sizes


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


# ---- ONNX's own backend node tests --------------------------------------------------------

NODE_TESTS = ["test_lstm_defaults", "test_lstm_with_initial_bias", "test_lstm_with_peepholes",
              "test_lstm_batchwise", "test_lstm_reverse", "test_lstm_bidirectional"]


@pytest.fixture(scope="module")
def node_test_dirs(tmp_path_factory):
    """name -> folder of ONNX's backend node test, as the onnx package ships it (data/node/...).

    Wheels that leave the data out still carry the cases that generate it (onnx.backend.test.case);
    then the folders are written here the way `backend-test-tools generate-data` writes them.
    """
    onnx = need_module("onnx")
    shipped = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    found = {os.path.basename(d): d for d in glob.glob(os.path.join(shipped, "test_lstm_*"))}
    if found:
        return found
    from onnx import numpy_helper

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        from onnx.backend.test.case import node as node_cases

        try:
            import onnx.backend.test.case.node.lstm  # noqa: F401 - its exports register the LSTM cases

            cases = list(node_cases._NodeTestCases)
        except AttributeError:  # pragma: no cover - another onnx layout
            cases = node_cases.collect_testcases("LSTM")
    root = tmp_path_factory.mktemp("onnx_node")
    for case in cases:
        if not case.name.startswith("test_lstm"):
            continue
        folder = root / case.name
        (folder / "test_data_set_0").mkdir(parents=True)
        (folder / "model.onnx").write_bytes(case.model.SerializeToString())
        inputs, outputs = case.data_sets[0]
        for kind, arrays, infos in (("input", inputs, case.model.graph.input), ("output", outputs, case.model.graph.output)):
            for j, (arr, vi) in enumerate(zip(arrays, infos)):
                (folder / "test_data_set_0" / f"{kind}_{j}.pb").write_bytes(
                    numpy_helper.from_array(np.asarray(arr), vi.name).SerializeToString())
        found[case.name] = str(folder)
    return found


def read_pb(path):
    from onnx import TensorProto, numpy_helper

    t = TensorProto()
    with open(path, "rb") as f:
        t.ParseFromString(f.read())
    return numpy_helper.to_array(t)


def test_node_tests_are_all_covered(node_test_dirs):
    assert sorted(node_test_dirs) == sorted(NODE_TESTS)


@pytest.mark.parametrize("name", NODE_TESTS)
def test_onnx_backend_node_test(node_test_dirs, name):
    """The compiled C, with W, R, B, P bound by constants=, gives the shipped outputs."""
    import onnx

    folder = node_test_dirs[name]
    model = onnx.load(os.path.join(folder, "model.onnx"))
    data = os.path.join(folder, "test_data_set_0")
    ins = {vi.name: read_pb(os.path.join(data, f"input_{j}.pb")) for j, vi in enumerate(model.graph.input)}
    outs = {vi.name: read_pb(os.path.join(data, f"output_{j}.pb")) for j, vi in enumerate(model.graph.output)}
    lstm = model.graph.node[0]
    weights = {lstm.input[k] for k in (1, 2, 3, 7) if k < len(lstm.input) and lstm.input[k]}
    with pytest.raises(ValueError, match=r"input W must be a constant .* constants=\{'W': array\}"):
        lstmgen.import_onnx(model)
    imp = lstmgen.import_onnx(model, constants={n: ins[n] for n in weights})
    feeds = {n: a for n, a in ins.items() if n not in weights}  # X, and sequence_lens, initial_h/c if given
    got = run_import(imp, feeds)
    assert sorted(got) == sorted(outs)
    for n, want in outs.items():
        assert_close(got[n], want, f"{name}: {n}")


def test_constants_checks_names_and_values(node_test_dirs):
    import onnx
    from onnx import numpy_helper

    model = onnx.load(os.path.join(node_test_dirs["test_lstm_defaults"], "model.onnx"))
    W = np.full((1, 12, 2), 0.1, np.float32)
    R = np.full((1, 12, 3), 0.1, np.float32)
    with pytest.raises(ValueError, match=r"constants= names 'Wx', 'Q', which are not graph inputs"):
        lstmgen.from_onnx(model, constants={"Wx": W, "R": R, "Q": 1.0})
    with pytest.raises(TypeError, match=r"constants\['W'\] must be a numeric array"):
        lstmgen.from_onnx(model, constants={"W": "weights", "R": R})
    with pytest.raises(TypeError, match="constants= must be a dict"):
        lstmgen.from_onnx(model, constants=[W, R])
    with pytest.raises(ValueError, match=r"input W expects input_size 3, but the graph input has 2"):
        lstmgen.from_onnx(model, constants={"W": R, "R": R})
    spec, w = lstmgen.from_onnx(model, constants={"W": numpy_helper.from_array(W), "R": R})  # TensorProto too
    assert (spec.input_size, spec.hidden_size, spec.bias) == (2, 3, False)
    np.testing.assert_array_equal(w["weight_ih_l0"], np.full((12, 2), 0.1, np.float32))


# ---- refusals name the first op lstmgen cannot read; cuts ----------------------------------


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


def test_cut_at_an_intermediate_tensor_matches_onnxruntime(ort):
    from onnx import TensorProto, helper

    model = conv_lstm_model(with_if=True)
    imp = lstmgen.import_onnx(model, inputs=["seq"], outputs=["Y_h", "Y"])  # seq: Conv's output as (T, B, I)
    assert imp.x == "seq" and sorted(imp.outputs) == ["Y", "Y_h"]
    full = conv_lstm_model(with_if=True)
    full.graph.output.extend([helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("seq", "Y", "Y_h")])
    x = np.random.default_rng(1).standard_normal((B, I, T)).astype(np.float32)
    want = run_ort(ort, full, {"x": x, "sr": np.array(1, np.int64)})
    got = run_import(imp, {"seq": want["seq"]})
    for n in ("Y", "Y_h"):
        assert_close(got[n], want[n], f"cut: {n}")
    # the cut's outputs only: the graph inputs they need (x, through the Conv) are reached, the Conv refused
    with pytest.raises(ValueError, match=r"node #0 Conv 'conv': op Conv"):
        lstmgen.from_onnx(model, outputs=["Y_h"])


def test_cut_refuses_bad_names():
    need_module("onnx")
    model = conv_lstm_model(with_if=True)
    cases = [
        (dict(inputs=["conv_out", "nope"], outputs=["Y_h"]), r"inputs= names 'nope', which no node produces"),
        (dict(inputs=["conv_out"], outputs=["Y_h", "gone", "x"]), r"outputs= names 'gone', 'x', which no node produces"),
        (dict(inputs=["seq"], outputs=["Y_h"], constants={"seq": np.zeros((T, B, I), np.float32)}),
         r"'seq' named in both inputs= and constants="),
        (dict(inputs=["sr"], outputs=["Y_h"]), r"the cut needs graph input\(s\) 'x', which are not in inputs="),
        (dict(inputs=["W"], outputs=["Y_h"]), r"inputs= names 'W', which no node produces"),  # an initializer
        (dict(inputs=["conv_out", "conv_out"], outputs=["Y_h"]), r"inputs= names 'conv_out' more than once"),
        (dict(inputs=["conv_out"], outputs=["Y"], constants={"nope": np.zeros(1)}),
         r"constants= names 'nope', which are not graph inputs"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            lstmgen.from_onnx(model, **kw)
    with pytest.raises(TypeError, match="inputs= must be a list of tensor names"):
        lstmgen.from_onnx(model, inputs="conv_out", outputs=["Y_h"])


def test_cut_of_torch_lstm_and_linear_matches_torch():
    torch = need_module("torch")
    onnx = need_module("onnx")

    class Tagger(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(I, H, num_layers=2, bidirectional=True)
            self.fc = torch.nn.Linear(2 * H, 3)

        def forward(self, x):
            return self.fc(self.lstm(x)[0])

    torch.manual_seed(0)
    module = Tagger().eval()
    x = torch.randn(T, B, I)
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            torch.onnx.export(module, (x,), f, dynamo=False, input_names=["x"], output_names=["tags"])
        finally:
            logging.disable(logging.NOTSET)
    model = onnx.load_from_string(f.getvalue())
    whole = lstmgen.import_onnx(model)  # the Linear after the LSTM is read as the spec's head
    assert [h.kind for h in whole.spec.head] == ["Linear"]
    with torch.no_grad():
        assert_close(run_import(whole, {"x": x.numpy()})["tags"], module(x).numpy(), "LSTM + Linear as a head")
    matmul = next(n for n in model.graph.node if n.op_type == "MatMul")
    cut_at = matmul.input[0]  # the LSTM's output as the Linear reads it
    imp = lstmgen.import_onnx(model, outputs=[cut_at])
    assert imp.x == "x" and imp.outputs[cut_at][0] == "out"
    got = run_import(imp, {"x": x.numpy()})[cut_at]
    with torch.no_grad():
        want = module.lstm(x)[0].numpy()
    assert_close(got, want, "LSTM + Linear cut at the LSTM")


# ---- Squeeze of the direction axis of a state ---------------------------------------------


def squeezed_state_model(direction="forward", opset=17):
    """LSTM with Y_h -> Squeeze(axes=[0]) -> h (B, H), and Y_c kept (1, B, H)."""
    from onnx import TensorProto, helper, numpy_helper

    D = 2 if direction == "bidirectional" else 1
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal((D, 4 * H, I)).astype(np.float32) * 0.5, "W"),
             numpy_helper.from_array(rng.standard_normal((D, 4 * H, H)).astype(np.float32) * 0.5, "R"),
             numpy_helper.from_array(rng.standard_normal((D, 8 * H)).astype(np.float32) * 0.5, "B")]
    nodes = [helper.make_node("LSTM", ["x", "W", "R", "B"], ["", "Y_h", "Y_c"], hidden_size=H, direction=direction,
                              name="lstm")]
    if opset >= 13:
        inits.append(numpy_helper.from_array(np.array([0], np.int64), "axes0"))
        nodes.append(helper.make_node("Squeeze", ["Y_h", "axes0"], ["h"], name="squeeze"))
    else:
        nodes.append(helper.make_node("Squeeze", ["Y_h"], ["h"], axes=[0], name="squeeze"))
    graph = helper.make_graph(nodes, "squeezed", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [T, "B", I])],
                              [helper.make_tensor_value_info("h", TensorProto.FLOAT, ["B", H]),
                               helper.make_tensor_value_info("Y_c", TensorProto.FLOAT, [D, "B", H])],
                              initializer=inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("direction,opset", [("forward", 17), ("reverse", 17), ("forward", 11)])
def test_squeeze_of_a_one_row_state_matches_onnxruntime(ort, direction, opset):
    model = squeezed_state_model(direction, opset)
    imp = lstmgen.import_onnx(model)
    assert imp.outputs["h"] == ("h_n", ("B", "H"), None)
    x = np.random.default_rng(3).standard_normal((T, 3, I)).astype(np.float32)
    want = run_ort(ort, model, {"x": x})
    got = run_import(imp, {"x": x}, compiled=opset == 17 and direction == "forward")
    for n in ("h", "Y_c"):
        assert_close(got[n], want[n], f"squeezed {direction}: {n}")


def test_squeeze_of_a_two_row_state_is_refused():
    need_module("onnx")
    with pytest.raises(ValueError, match=r"node #1 Squeeze 'squeeze': Squeeze of axis 0, which is not of size 1"):
        lstmgen.from_onnx(squeezed_state_model("bidirectional"))


# ---- external data ------------------------------------------------------------------------


def test_external_data_is_read_from_base_dir_not_the_cwd(tmp_path, monkeypatch):
    onnx = need_module("onnx")
    from onnx.external_data_helper import uses_external_data

    spec = lstmgen.LSTMSpec(input_size=I, hidden_size=H, num_layers=2)
    weights = lstmgen.random_weights(spec, seed=5)
    folder = tmp_path / "model"
    folder.mkdir()
    path = folder / "model.onnx"
    onnx.save_model(lstmgen.to_onnx(spec, weights), str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="weights.bin", size_threshold=0)
    cwd = tmp_path / "cwd"  # a same-named file of zeros where the process runs must not be read
    cwd.mkdir()
    (cwd / "weights.bin").write_bytes(bytes((folder / "weights.bin").stat().st_size))
    monkeypatch.chdir(cwd)

    def same(got):
        assert got[0] == spec and sorted(got[1]) == sorted(weights)
        for k in weights:
            np.testing.assert_array_equal(got[1][k], weights[k], err_msg=k)

    same(lstmgen.from_onnx(str(path)))  # a path: the file's folder
    data = path.read_bytes()
    proto = onnx.load(str(path), load_external_data=False)
    for model in (data, proto):
        with pytest.raises(ValueError, match=r"keeps tensors '\w+', '\w+', '\w+' and \d+ more in external "
                                             r"data files; pass base_dir="):
            lstmgen.from_onnx(model)
        same(lstmgen.from_onnx(model, base_dir=folder))
    assert uses_external_data(proto.graph.initializer[0])  # the caller's proto is left as it was
    same(lstmgen.from_onnx(str(path), base_dir=str(folder)))
    with pytest.raises(ValueError, match=r"cannot read the external data of .* from"):
        lstmgen.from_onnx(data, base_dir=tmp_path)  # no weights.bin there
    with pytest.raises(ValueError, match="is not a folder"):
        lstmgen.from_onnx(data, base_dir=path)
    with pytest.raises(TypeError, match="base_dir must be a folder path"):
        lstmgen.from_onnx(data, base_dir=3)


# ---- export -------------------------------------------------------------------------------


@pytest.mark.parametrize("with_state,with_lengths", [(False, False), (True, False), (False, True), (True, True)])
def test_to_onnx_every_initializer_is_used(with_state, with_lengths):
    need_module("onnx")
    spec = lstmgen.LSTMSpec(input_size=I, hidden_size=H, num_layers=2, bidirectional=True, peepholes=True)
    model = lstmgen.to_onnx(spec, lstmgen.random_weights(spec), with_state=with_state, with_lengths=with_lengths)
    used = {name for node in model.graph.node for name in node.input}
    assert [t.name for t in model.graph.initializer if t.name not in used] == []


# ---- command line -------------------------------------------------------------------------


def test_cli_inspect_graph_lists_tensors(tmp_path, capsys):
    onnx = need_module("onnx")
    from lstmgen.cli import main

    path = tmp_path / "conv.onnx"
    onnx.save(conv_lstm_model(with_if=True), str(path))
    assert main(["inspect", "--graph", str(path)]) == 0  # listed although lstmgen cannot import it whole
    text = capsys.readouterr().out
    assert "'sr' int64 ()" in text and "initializers: 3" in text
    assert "#0 Conv 'conv': 'x', 'conv_w'(init) -> 'conv_out'" in text
    assert "#2 LSTM 'lstm': 'seq', 'W'(init), 'R'(init) -> 'Y', 'Y_h'" in text
    assert "graph outputs:\n  'picked' float (shape unknown)" in text
    assert main(["inspect", "--graph", os.path.join(os.path.dirname(__file__), "..", "examples", "kws.json")]) == 2
    assert "give a .onnx file" in capsys.readouterr().err
