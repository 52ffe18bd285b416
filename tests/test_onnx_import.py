"""ONNX import/export against onnxruntime: lstmgen.from_onnx / import_onnx / to_onnx and the CLI.

Input: models exported from torch.nn.LSTM by both torch.onnx exporters (legacy TorchScript,
dynamo=False, and dynamo=True), hand-built single LSTM nodes covering every attribute, and
to_onnx's own graphs. Output: pass/fail. onnxruntime runs each graph; lstmgen's reference and
compiled C (for a representative subset, builds cached) must match it within ATOL, and graphs
lstmgen cannot express must be refused with the node named.
"""

from __future__ import annotations

import io
import logging
import os
import warnings

import numpy as np
import pytest
from conftest import need_module, run_ort

import lstmgen
from lstmgen.onnx import USES_ALPHA, USES_BETA, import_onnx
from lstmgen.reference import lstm_forward

ATOL = 1e-5
MAX_ERR: dict[str, float] = {}  # case -> max abs error vs onnxruntime (printed by test_report_max_error)
I, H, T, B = 3, 4, 5, 3  # noqa: E741 - input, hidden, time, batch sizes


def compare(case, got: dict, want: dict) -> float:
    worst = 0.0
    for name, w in want.items():
        g = got[name]
        assert g.shape == w.shape, f"{case}: {name} shape {g.shape} != onnxruntime {w.shape}"
        err = float(np.abs(g - w).max()) if w.size else 0.0
        assert err < ATOL, f"{case}: {name} max abs error {err:.3g} vs onnxruntime"
        worst = max(worst, err)
    MAX_ERR[case] = max(MAX_ERR.get(case, 0.0), worst)
    return worst


def check_import(ort, case, model, feeds, *, compiled=False, ort_model=None, ort_map=None):
    """Import `model`, run reference (and compiled C) through the import's mapping, compare to ORT."""
    imp = import_onnx(model)
    want = run_ort(ort, ort_model or model, feeds if ort_map is None else ort_map[0](feeds))
    if ort_map is not None:
        want = ort_map[1](want)
    x, hx, lengths = imp.model_inputs(feeds)
    out, hn = lstm_forward(imp.spec, imp.weights, x, hx, lengths)
    compare(case + "/reference", imp.graph_outputs(out, hn), want)
    if compiled:
        model_c = lstmgen.compile(imp.spec, imp.weights)
        out, hn = model_c(x, hx, lengths=lengths)
        compare(case + "/C", imp.graph_outputs(out, hn), want)
    return imp


# ---- models exported from torch -----------------------------------------------------------


def export(torch, module, args, dynamo, names, dynamic=None):
    kw = {}
    if dynamic is not None:
        kw = dict(dynamic_shapes=dynamic[1]) if dynamo else dict(dynamic_axes=dynamic[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            if dynamo:
                prog = torch.onnx.export(module, args, dynamo=True, verbose=False, input_names=names,
                                         output_names=["out", "h_n", "c_n"], **kw)
                return prog.model_proto
            import onnx

            f = io.BytesIO()
            torch.onnx.export(module, args, f, dynamo=False, input_names=names, output_names=["out", "h_n", "c_n"], **kw)
            return onnx.load_from_string(f.getvalue())
        finally:
            logging.disable(logging.NOTSET)


def torch_cases(torch):
    class WithState(torch.nn.Module):
        def __init__(self, **cfg):
            super().__init__()
            self.lstm = torch.nn.LSTM(**cfg)

        def forward(self, x, h0, c0):
            return self.lstm(x, (h0, c0))

    class Packed(torch.nn.Module):
        def __init__(self, enforce_sorted, **cfg):
            super().__init__()
            self.lstm = torch.nn.LSTM(**cfg)
            self.enforce_sorted = enforce_sorted

        def forward(self, x, lengths):
            packed = torch.nn.utils.rnn.pack_padded_sequence(x, lengths, enforce_sorted=self.enforce_sorted)
            out, (h, c) = self.lstm(packed)
            out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, total_length=x.shape[0])
            return out, h, c

    g = torch.Generator().manual_seed(0)

    def rnd(*shape):
        return torch.randn(*shape, generator=g)

    Dim = torch.export.Dim
    return {
        "plain": (lambda: torch.nn.LSTM(I, H), (rnd(T, B, I),), ["x"], None),
        "bidir_2layer_batch_first": (lambda: torch.nn.LSTM(I, H, num_layers=2, bidirectional=True, batch_first=True),
                                     (rnd(B, T, I),), ["x"], None),
        "initial_state": (lambda: WithState(input_size=I, hidden_size=H, num_layers=2),
                          (rnd(T, B, I), rnd(2, B, H), rnd(2, B, H)), ["x", "h0", "c0"], None),
        "dynamic_axes": (lambda: torch.nn.LSTM(I, H, num_layers=2, bidirectional=True), (rnd(T, B, I),), ["x"],
                         ({"x": {0: "T", 1: "B"}}, ({0: Dim("T"), 1: Dim("B")},))),
        "unbatched": (lambda: torch.nn.LSTM(I, H, bidirectional=True), (rnd(T, I),), ["x"], None),
        "packed_sorted": (lambda: Packed(True, input_size=I, hidden_size=H, num_layers=2),
                          (rnd(T, B, I), torch.tensor([5, 3, 2])), ["x", "lengths"], None),
        "packed_unsorted": (lambda: Packed(False, input_size=I, hidden_size=H, bidirectional=True),
                            (rnd(T, B, I), torch.tensor([2, 5, 3])), ["x", "lengths"], None),
        "packed_unsorted_dynamic": (lambda: Packed(False, input_size=I, hidden_size=H, num_layers=2),
                                    (rnd(T, B, I), torch.tensor([2, 5, 3])), ["x", "lengths"],
                                    ({"x": {0: "T", 1: "B"}, "lengths": {0: "B"}}, None)),
    }


# torch 2.13's dynamo exporter cannot trace pack_padded_sequence (torch.export fails on the
# data-dependent batch sizes), so packed cases are legacy-only.
DYNAMO_CASES = ["bidir_2layer_batch_first", "initial_state", "dynamic_axes", "unbatched"]
LEGACY_CASES = ["plain", "bidir_2layer_batch_first", "initial_state", "dynamic_axes", "unbatched",
                "packed_sorted", "packed_unsorted", "packed_unsorted_dynamic"]


@pytest.mark.parametrize("dynamo,case", [(False, c) for c in LEGACY_CASES] + [(True, c) for c in DYNAMO_CASES],
                         ids=[f"legacy-{c}" for c in LEGACY_CASES] + [f"dynamo-{c}" for c in DYNAMO_CASES])
def test_torch_export_imports_and_matches(ort, dynamo, case):
    torch = need_module("torch")
    make, args, names, dynamic = torch_cases(torch)[case]
    torch.manual_seed(1)
    module = make().eval()
    model = export(torch, module, args, dynamo, names, dynamic)
    imp = import_onnx(model)
    # a torch-exported graph's outputs are Model's outputs, unchanged
    canonical = {"out": ("T", "B", "DH"), "h_n": ("S", "B", "H"), "c_n": ("S", "B", "H")}
    lstm = module.lstm if hasattr(module, "lstm") else module
    if lstm.batch_first:
        canonical["out"] = ("B", "T", "DH")
    if case == "unbatched":
        canonical = {"out": ("T", "DH"), "h_n": ("S", "H"), "c_n": ("S", "H")}
    assert {k: v[1] for k, v in imp.outputs.items()} == canonical
    assert all(v[0] == k and v[2] is None for k, v in imp.outputs.items())
    spec_t, w_t = lstmgen.from_torch(lstm)
    assert imp.spec == spec_t
    for k, v in w_t.items():
        np.testing.assert_array_equal(imp.weights[k], v, err_msg=k)

    feeds = {n: a.numpy() for n, a in zip(names, args)}
    want = run_ort(ort, model, feeds)
    x, hx, lengths = imp.model_inputs(feeds)
    if "h0" in feeds:
        np.testing.assert_array_equal(hx[0], feeds["h0"])
    model_c = lstmgen.compile(imp.spec, imp.weights)
    out, (h_n, c_n) = model_c(x, hx, lengths=lengths)
    compare(f"torch-{'dynamo' if dynamo else 'legacy'}-{case}/C", {"out": out, "h_n": h_n, "c_n": c_n}, want)
    with torch.no_grad():
        t_out = module(*args)
    if isinstance(t_out[1], tuple):
        t_out = (t_out[0],) + t_out[1]
    for got, ref in zip((out, h_n, c_n), t_out):
        assert float(np.abs(got - ref.numpy()).max()) < ATOL


@pytest.mark.parametrize("opset", [9, 11, 13])
@pytest.mark.parametrize("case", ["bidir_2layer_batch_first", "initial_state", "unbatched"])
def test_legacy_exporter_older_opsets(ort, opset, case):
    """Opsets 9..12 spell Squeeze/Unsqueeze/Slice with attributes; opsets 7 and 8 make the zero
    state with the experimental ConstantFill, which onnxruntime cannot run and lstmgen refuses."""
    torch = need_module("torch")
    make, args, names, _ = torch_cases(torch)[case]
    torch.manual_seed(1)
    module = make().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = io.BytesIO()
        torch.onnx.export(module, args, f, dynamo=False, opset_version=opset, input_names=names,
                          output_names=["out", "h_n", "c_n"])
    import onnx

    model = onnx.load_from_string(f.getvalue())
    assert model.opset_import[0].version == opset
    check_import(ort, f"torch-legacy-opset{opset}-{case}", model, {n: a.numpy() for n, a in zip(names, args)})


def test_legacy_opset8_constantfill_is_refused():
    torch = need_module("torch")
    need_module("onnx")
    import onnx

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = io.BytesIO()
        torch.onnx.export(torch.nn.LSTM(I, H).eval(), (torch.randn(T, B, I),), f, dynamo=False, opset_version=8)
    with pytest.raises(ValueError, match=r"node #\d+ ConstantFill .*op ConstantFill is not supported"):
        lstmgen.from_onnx(onnx.load_from_string(f.getvalue()))


def test_dynamo_proj_size_is_refused(ort):
    """torch 2.13's dynamo exporter writes an LSTM with proj_size as a plain LSTM of hidden_size =
    proj_size with the full-size cell state (the projection is dropped; onnxruntime then fails at
    run time). The legacy exporter refuses proj_size itself. lstmgen refuses the graph."""
    torch = need_module("torch")
    model = export(torch, torch.nn.LSTM(I, H, proj_size=2).eval(), (torch.randn(T, B, I),), True, ["x"])
    with pytest.raises(ValueError, match=r"node #\d+ LSTM .*initial_c.*drops the projection"):
        lstmgen.from_onnx(model)
    with pytest.raises(Exception, match="projections"):
        export(torch, torch.nn.LSTM(I, H, proj_size=2).eval(), (torch.randn(T, B, I),), False, ["x"])


# ---- hand-built single nodes --------------------------------------------------------------


def node_model(attrs, *, D, I_=I, H_=H, bias=True, peep=False, lengths=False, h0=False, c0=False, layout=0,
               opset=14, seed=0, scale=0.5, pscale=1.0, name="lstm"):
    """One LSTM node; weights are initializers in ONNX layout (gates i, o, f, c). Returns (model, feeds)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [numpy_helper.from_array((rng.standard_normal((D, 4 * H_, I_)) * scale).astype(np.float32), "W"),
             numpy_helper.from_array((rng.standard_normal((D, 4 * H_, H_)) * scale).astype(np.float32), "R")]
    names = ["X", "W", "R", "", "", "", "", ""]
    if bias:
        inits.append(numpy_helper.from_array((rng.standard_normal((D, 8 * H_)) * scale).astype(np.float32), "B"))
        names[3] = "B"
    if peep:
        inits.append(numpy_helper.from_array((rng.standard_normal((D, 3 * H_)) * pscale).astype(np.float32), "P"))
        names[7] = "P"
    xs = (T, B, I_) if layout == 0 else (B, T, I_)
    ss = (D, B, H_) if layout == 0 else (B, D, H_)
    feeds = {"X": rng.standard_normal(xs).astype(np.float32) * attrs.pop("xscale", 1.0)}
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, list(xs))]
    if lengths:
        names[4] = "seq_lens"
        feeds["seq_lens"] = rng.integers(1, T + 1, size=B).astype(np.int32)
        inputs.append(helper.make_tensor_value_info("seq_lens", TensorProto.INT32, [B]))
    for flag, pos, n in ((h0, 5, "h_init"), (c0, 6, "c_init")):
        if flag:
            names[pos] = n
            feeds[n] = rng.standard_normal(ss).astype(np.float32)
            inputs.append(helper.make_tensor_value_info(n, TensorProto.FLOAT, list(ss)))
    while names[-1] == "":
        names.pop()
    if layout:
        attrs["layout"] = 1
    node = helper.make_node("LSTM", names, ["Y", "Y_h", "Y_c"], name=name, hidden_size=H_, **attrs)
    outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in ("Y", "Y_h", "Y_c")]
    model = helper.make_model(helper.make_graph([node], "g", inputs, outputs, initializer=inits),
                              opset_imports=[helper.make_opsetid("", opset)], ir_version=8)
    return model, feeds


def acts_attrs(acts):
    out = {"activations": [a[0] if isinstance(a, tuple) else a for a in acts]}
    alphas = [a[1] for a in acts if isinstance(a, tuple) and a[0] in USES_ALPHA]
    betas = [a[2] for a in acts if isinstance(a, tuple) and a[0] in USES_BETA]
    if alphas:
        out["activation_alpha"] = alphas
    if betas:
        out["activation_beta"] = betas
    return out


ACTS = [
    [("HardSigmoid", 0.3, 0.4), ("ScaledTanh", 1.2, 0.7), ("LeakyRelu", 0.05)],
    ["Sigmoid", ("Affine", 0.8, 0.1), ("Elu", 0.9)],
    ["Softsign", "Softplus", ("ThresholdedRelu", 0.3)],
    ["Sigmoid", "Relu", "Tanh"],
]

# name -> (attributes, node_model options)
NODE_CASES = {
    "plain": ({}, dict(D=1)),
    "nobias": ({}, dict(D=1, bias=False)),
    "peepholes": ({}, dict(D=1, peep=True, pscale=2.0)),
    "clip": ({"clip": 0.4, "xscale": 3.0}, dict(D=1, h0=True, c0=True)),
    "input_forget": ({"input_forget": 1}, dict(D=1)),
    **{f"activations_{i}": (acts_attrs(a), dict(D=1, scale=0.4)) for i, a in enumerate(ACTS)},
    "reverse": ({"direction": "reverse"}, dict(D=1, h0=True, c0=True)),
    "bidirectional": ({"direction": "bidirectional"}, dict(D=2)),
    "bidirectional_two_activation_sets": ({"direction": "bidirectional", **acts_attrs(ACTS[0] + ACTS[1])}, dict(D=2)),
    "sequence_lens": ({}, dict(D=1, lengths=True, seed=3)),
    "sequence_lens_reverse": ({"direction": "reverse"}, dict(D=1, lengths=True, h0=True, c0=True, seed=4)),
    "sequence_lens_bidirectional": ({"direction": "bidirectional"}, dict(D=2, lengths=True, seed=5)),
    "initial_h_only": ({}, dict(D=1, h0=True)),
    "initial_c_only": ({"direction": "bidirectional"}, dict(D=2, c0=True)),
    "opset7": ({}, dict(D=1, opset=7, lengths=True)),
    "opset22": ({"direction": "bidirectional"}, dict(D=2, opset=22, h0=True, c0=True)),
    "everything": ({"direction": "bidirectional", "clip": 0.6, "input_forget": 1, "xscale": 2.0,
                    **acts_attrs([("Affine", 0.5, 0.2), ("Elu", 1.3), "Softplus", "Softsign", "Softplus",
                                  ("ThresholdedRelu", 0.3)])},
                   dict(D=2, peep=True, pscale=2.0, lengths=True, h0=True, c0=True, seed=7)),
}
COMPILED_NODE_CASES = {"everything", "sequence_lens_reverse", "initial_c_only"}


@pytest.mark.parametrize("case", list(NODE_CASES))
def test_hand_built_node_matches_onnxruntime(ort, case):
    attrs, opts = NODE_CASES[case]
    model, feeds = node_model(dict(attrs), **opts)
    imp = check_import(ort, f"node-{case}", model, feeds, compiled=case in COMPILED_NODE_CASES)
    # the documented bare-node relation: Y = out.reshape(T, B, D, H).transpose(0, 2, 1, 3)
    assert imp.outputs == {"Y": ("out", ("T", "D", "B", "H"), None), "Y_h": ("h_n", ("S", "B", "H"), None),
                           "Y_c": ("c_n", ("S", "B", "H"), None)}
    assert imp.spec.peepholes == opts.get("peep", False)
    assert imp.spec.bias == opts.get("bias", True)


def test_random_sequence_lens_many_seeds(ort):
    """Random lengths (including 1 and T) over several seeds, bidirectional with initial states."""
    model, _ = node_model({"direction": "bidirectional"}, D=2, lengths=True, h0=True, c0=True, seed=11)
    imp = import_onnx(model)
    rng = np.random.default_rng(12)
    for _ in range(8):
        feeds = {"X": rng.standard_normal((T, B, I)).astype(np.float32),
                 "seq_lens": rng.integers(1, T + 1, size=B).astype(np.int32),
                 "h_init": rng.standard_normal((2, B, H)).astype(np.float32),
                 "c_init": rng.standard_normal((2, B, H)).astype(np.float32)}
        want = run_ort(ort, model, feeds)
        x, hx, lengths = imp.model_inputs(feeds)
        out, hn = lstm_forward(imp.spec, imp.weights, x, hx, lengths)
        compare("node-random-sequence-lens/reference", imp.graph_outputs(out, hn), want)


@pytest.mark.parametrize("direction", ["forward", "reverse", "bidirectional"])
def test_layout_1(ort, direction):
    """layout=1 (batch-major X, Y, Y_h, Y_c) imports as batch_first. onnxruntime refuses layout=1,
    so the expected values come from the layout=0 twin with the ONNX spec's transposes."""
    D = 2 if direction == "bidirectional" else 1
    opts = dict(D=D, peep=True, lengths=True, h0=True, c0=True, seed=21)
    model1, feeds1 = node_model({"direction": direction}, layout=1, **opts)
    model0, _ = node_model({"direction": direction}, layout=0, **opts)

    def to_layout0(feeds):
        f = dict(feeds, X=feeds["X"].transpose(1, 0, 2))
        for k in ("h_init", "c_init"):
            f[k] = feeds[k].transpose(1, 0, 2)
        return f

    def to_layout1(outs):  # Y (T, D, B, H) -> (B, T, D, H); Y_h (D, B, H) -> (B, D, H)
        return {"Y": outs["Y"].transpose(2, 0, 1, 3), "Y_h": outs["Y_h"].transpose(1, 0, 2),
                "Y_c": outs["Y_c"].transpose(1, 0, 2)}

    imp = check_import(ort, f"node-layout1-{direction}", model1, feeds1, compiled=direction == "reverse",
                       ort_model=model0, ort_map=(to_layout0, to_layout1))
    assert imp.spec.batch_first
    assert imp.outputs["Y"][1] == ("B", "T", "D", "H")


# ---- refusals ----------------------------------------------------------------------------


def _append_node(model, node, output_name):
    from onnx import TensorProto, helper

    model.graph.node.append(node)
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info(output_name, TensorProto.FLOAT, None))
    return model


def test_refuses_other_ops_naming_the_node():
    need_module("onnx")
    from onnx import helper

    model, _ = node_model({}, D=1, name='evil"name*/')
    model2 = _append_node(model, helper.make_node("LeakyRelu", ["Y"], ["Z"], name="act"), "Z")
    with pytest.raises(ValueError, match=r"node #1 LeakyRelu 'act': op LeakyRelu is not supported"):
        lstmgen.from_onnx(model2)
    # a head op (read after the LSTM's merged (T, B, D*H) output) on the raw 4-D Y is refused naming the node
    model, _ = node_model({}, D=1, name='evil"name*/')
    model3 = _append_node(model, helper.make_node("Relu", ["Y"], ["Z"], name="act"), "Z")
    with pytest.raises(ValueError, match=r"node #1 Relu 'act': Relu of an LSTM output with axes .* merged last"):
        lstmgen.from_onnx(model3)


def test_refuses_unsupported_attributes_and_mismatches():
    need_module("onnx")
    from onnx import helper

    cases = [
        ({"output_sequence": 1}, dict(D=1), "attribute 'output_sequence' is not supported"),
        ({"hidden_size": H + 1}, dict(D=1), "attribute 'hidden_size' is 5"),
        ({"direction": "bidirectional", "activations": ["Sigmoid", "Tanh", "Tanh"]}, dict(D=2),
         "'activations' has 3 entries; 6 expected"),
        ({"activations": ["Sigmoid", "Tanh", "Gelu"]}, dict(D=1), "unknown activation 'Gelu'"),
        ({"activations": ["Sigmoid", "Tanh", "Tanh"], "activation_alpha": [0.5]}, dict(D=1), "more values"),
        ({}, dict(D=1, opset=6), "opset 6 is not supported"),
    ]
    for attrs, opts, msg in cases:
        hidden = attrs.pop("hidden_size", None)
        model, _ = node_model(attrs, **opts)
        if hidden is not None:
            node = model.graph.node[0]
            for a in node.attribute:
                if a.name == "hidden_size":
                    a.i = hidden
        with pytest.raises(ValueError, match=msg):
            lstmgen.from_onnx(model)
    # a constant non-zero initial state cannot become a run-time argument
    model, _ = node_model({}, D=1)
    model.graph.initializer.append(helper.make_tensor("h_const", 1, [1, B, H], [0.5] * (B * H)))
    model.graph.node[0].input.extend(["", "h_const"])  # sequence_lens absent, initial_h
    with pytest.raises(ValueError, match=r"node #0 LSTM 'lstm': input initial_h is a non-zero constant"):
        lstmgen.from_onnx(model)


def test_refuses_intermediate_layer_output_and_disagreeing_layers(ort):
    from onnx import helper

    spec = lstmgen.LSTMSpec(input_size=I, hidden_size=H, num_layers=2)
    model = lstmgen.to_onnx(spec, lstmgen.random_weights(spec))
    import copy

    m2 = copy.deepcopy(model)
    m2.graph.output.append(helper.make_tensor_value_info("seq1", 1, None))
    with pytest.raises(ValueError, match="graph output 'seq1' is an LSTM output that is not the last layer"):
        lstmgen.from_onnx(m2)
    # layer glue that does not put (T, B, D*H) together: the Transpose before the merge left out
    m4 = copy.deepcopy(model)
    for n in m4.graph.node:
        if n.op_type == "Transpose" and list(n.attribute[0].ints) == [0, 2, 1, 3]:
            del n.attribute[:]
            n.attribute.append(helper.make_attribute("perm", [0, 1, 2, 3]))
    with pytest.raises(ValueError, match=r"node #\d+ Reshape: Reshape to \[0, 0, -1\] of an LSTM output with "
                                         r"axes \('x'\[0\], D, 'x'\[1\], H\) is not a merge"):
        lstmgen.from_onnx(m4)
    m3 = copy.deepcopy(model)
    lstm1 = [n for n in m3.graph.node if n.op_type == "LSTM"][1]
    lstm1.attribute.append(helper.make_attribute("clip", 2.0))
    with pytest.raises(ValueError, match=r"LSTM 'lstm_l1': attribute 'clip' \(2.0\) differs"):
        lstmgen.from_onnx(m3)


# ---- export ------------------------------------------------------------------------------


@pytest.mark.parametrize("extras", ["torch_cell", "onnx_cell"])
def test_to_onnx_round_trip_and_onnxruntime(ort, extras):
    if extras == "torch_cell":
        spec = lstmgen.LSTMSpec(input_size=I, hidden_size=H, num_layers=2, bidirectional=True, batch_first=True)
    else:
        spec = lstmgen.LSTMSpec(input_size=I, hidden_size=H, bidirectional=True, peepholes=True, clip=0.6,
                                input_forget=True, activations=[("Affine", 0.5, 0.2), ("Elu", 1.3), "Softplus",
                                                                "Softsign", "Softplus", ("ThresholdedRelu", 0.3)])
    weights = lstmgen.random_weights(spec, seed=3, scale=0.6)
    model = lstmgen.to_onnx(spec, weights, with_state=True, with_lengths=True)
    spec2, w2 = lstmgen.from_onnx(model)
    assert spec2 == spec
    assert sorted(w2) == sorted(weights)
    for k in weights:
        np.testing.assert_array_equal(w2[k], weights[k], err_msg=k)
    rng = np.random.default_rng(4)
    L, D = spec.num_layers, spec.num_directions
    x = rng.standard_normal((B, T, I) if spec.batch_first else (T, B, I)).astype(np.float32)
    feeds = {"x": x, "h0": rng.standard_normal((L * D, B, H)).astype(np.float32),
             "c0": rng.standard_normal((L * D, B, H)).astype(np.float32), "lengths": np.array([5, 1, 3])}
    want = run_ort(ort, model, feeds)
    out, (h_n, c_n) = lstmgen.compile(spec, weights)(x, (feeds["h0"], feeds["c0"]), lengths=feeds["lengths"])
    compare(f"to_onnx-{extras}/C", {"out": out, "h_n": h_n, "c_n": c_n}, want)


def test_to_onnx_refuses_projection():
    need_module("onnx")
    spec = lstmgen.LSTMSpec(input_size=I, hidden_size=H, proj_size=2)
    with pytest.raises(ValueError, match="projection"):
        lstmgen.to_onnx(spec, lstmgen.random_weights(spec))


# ---- command line ------------------------------------------------------------------------


def test_cli_generate_and_inspect_onnx(tmp_path, capsys):
    need_module("onnx")
    import onnx

    from lstmgen.cli import main

    spec = lstmgen.LSTMSpec(input_size=I, hidden_size=H, num_layers=2)
    path = tmp_path / "model.onnx"
    onnx.save(lstmgen.to_onnx(spec, lstmgen.random_weights(spec)), str(path))
    assert main(["inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "graph output 'out' = out" in text and "InputProjection" in text
    assert main(["generate", str(path), "--out", str(tmp_path / "c"), "--prefix", "kws"]) == 0
    assert sorted(os.listdir(tmp_path / "c"))[:3] == ["kws.c", "kws.h", "kws_weights.c"]
    capsys.readouterr()
    assert main(["generate", str(path), "--weights", str(path), "--out", str(tmp_path / "d")]) == 2
    assert "carries its own weights" in capsys.readouterr().err
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["inspect", str(bad)]) == 2


def test_report_max_error():
    """Prints the max abs error per case seen in this module (run with -s to see it)."""
    for kind in ("C", "reference"):
        errs = {k: v for k, v in MAX_ERR.items() if k.endswith("/" + kind)}
        if errs:
            worst = max(errs, key=errs.get)
            print(f"\nmax abs error vs onnxruntime, {kind}, over {len(errs)} graphs: {errs[worst]:.3g} ({worst})")
            assert errs[worst] < ATOL
