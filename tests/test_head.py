"""A head after the LSTM (issue 12 item 2): Linear, ReLU, Tanh, Sigmoid, Softmax, Identity, stacked.

Parity with torch (nn.LSTM followed by the same torch layers on every step) for every layer kind
and the model options that change the C (bidirectional, proj_size, batch_first, lengths, chunked,
unrolled, stream steps); the spec's validation and serialisation; the generated C compiled strictly;
a trained LSTM + Linear + Softmax classifier end to end in Python, as generated C and as an
embedded folder.
"""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest
from conftest import need_tool
from embedded_tools import STRICT, build_selftest, passed

import lstmgen
from lstmgen import reference
from lstmgen.spec import LSTMSpec

torch = pytest.importorskip("torch")
nn = torch.nn

TOL = 1e-5


def _torch_pair(seed: int, lstm_kw: dict, layers: list) -> tuple:
    torch.manual_seed(seed)
    lstm = nn.LSTM(**lstm_kw)
    head = nn.Sequential(*layers)
    return lstm.eval(), head.eval()


def _torch_out(lstm, head, x, lengths=None):
    with torch.no_grad():
        xt = torch.from_numpy(x)
        if lengths is None:
            y, (h, c) = lstm(xt)
        else:
            packed = nn.utils.rnn.pack_padded_sequence(xt, torch.as_tensor(lengths), batch_first=lstm.batch_first,
                                                       enforce_sorted=False)
            y, (h, c) = lstm(packed)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=lstm.batch_first, total_length=x.shape[1 if lstm.batch_first else 0])
        return head(y).numpy(), h.numpy(), c.numpy()


W = 6  # LSTM output features in the single-kind cases
KINDS = {
    "linear": lambda: [nn.Linear(W, 5)],
    "linear_nobias": lambda: [nn.Linear(W, 3, bias=False)],
    "relu": lambda: [nn.ReLU()],
    "tanh": lambda: [nn.Tanh()],
    "sigmoid": lambda: [nn.Sigmoid()],
    "softmax": lambda: [nn.Softmax(dim=-1)],
    "identity": lambda: [nn.Identity()],
    "stacked": lambda: [nn.Linear(W, 7), nn.ReLU(), nn.Linear(7, 5, bias=False), nn.Tanh(), nn.Dropout(0.3),
                        nn.Linear(5, 4), nn.Sigmoid(), nn.Linear(4, 3), nn.Softmax(dim=-1)],
}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_layer_kind_matches_torch(kind):
    lstm, head = _torch_pair(1, dict(input_size=4, hidden_size=W), KINDS[kind]())
    spec, weights = lstmgen.from_torch(lstm, head=head)
    model = lstmgen.compile(spec, weights, prefix="hk")
    x = np.random.default_rng(2).standard_normal((5, 3, 4)).astype(np.float32)
    y, (h, c) = model(x)
    ty, th, tc = _torch_out(lstm, head, x)
    assert y.shape == ty.shape == (5, 3, spec.head_output_size)
    assert np.abs(y - ty).max() < TOL and np.abs(h - th).max() < TOL and np.abs(c - tc).max() < TOL
    stream = model.stream(3)
    steps = np.stack([stream.step(x[t]) for t in range(5)])
    assert np.abs(steps - ty).max() < TOL
    ry, _ = reference.lstm_forward(spec, weights, x)
    assert np.abs(ry - ty).max() < 1e-6


OPTIONS = {
    "bidirectional": (dict(bidirectional=True, num_layers=2), {}),
    "proj": (dict(proj_size=3, num_layers=2), {}),
    "batch_first": (dict(batch_first=True), {}),
    "chunked": (dict(), dict(chunk=2)),
    "unrolled": (dict(), dict(time_loop="unrolled", seq_len=5)),
    "portable": (dict(num_layers=2), dict(target="portable", math="libm")),
}


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_head_with_each_model_option_matches_torch(name):
    lstm_kw, sched = OPTIONS[name]
    lstm_kw = dict(input_size=4, hidden_size=8, **lstm_kw)
    width = (2 if lstm_kw.get("bidirectional") else 1) * (lstm_kw.get("proj_size") or 8)
    lstm, head = _torch_pair(3, lstm_kw, [nn.Linear(width, 6), nn.Tanh(), nn.Linear(6, 4), nn.Softmax(dim=-1)])
    spec, weights = lstmgen.from_torch(lstm, head=head)
    model = lstmgen.compile(spec, weights, prefix="ho", **sched)
    rng = np.random.default_rng(4)
    T, B = 5, 3
    x = rng.standard_normal((B, T, 4) if spec.batch_first else (T, B, 4)).astype(np.float32)
    y, (h, c) = model(x)
    ty, th, tc = _torch_out(lstm, head, x)
    assert np.abs(y - ty).max() < TOL and np.abs(h - th).max() < TOL and np.abs(c - tc).max() < TOL
    lengths = np.array([5, 2, 4])  # past a length y is the head of a zero LSTM output, as in torch
    y2, (h2, c2) = model(x, lengths=lengths)
    ty2, th2, tc2 = _torch_out(lstm, head, x, lengths)
    assert np.abs(y2 - ty2).max() < TOL and np.abs(h2 - th2).max() < TOL and np.abs(c2 - tc2).max() < TOL
    if model.streams and not spec.batch_first:
        stream = model.stream(B)
        steps = np.stack([stream.step(x[t]) for t in range(T)])
        assert np.abs(steps - ty).max() < TOL
    y1, _ = model(x[:, 0] if not spec.batch_first else x[0])  # unbatched
    assert y1.shape == (T, 4)


def test_single_linear_head_and_softmax_is_stable():
    lstm, _ = _torch_pair(5, dict(input_size=3, hidden_size=4), [])
    lin = nn.Linear(4, 2)
    with torch.no_grad():
        lin.weight.mul_(1e4)  # logits in the thousands: a naive exp would overflow
    spec, weights = lstmgen.from_torch(lstm, head=nn.Sequential(lin, nn.Softmax(dim=-1)))
    assert spec.head[0].kind == "Linear" and set(weights) >= {"head.0.weight", "head.0.bias"}
    y, _ = lstmgen.compile(spec, weights, prefix="hs")(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32))
    assert np.isfinite(y).all() and np.allclose(y.sum(axis=-1), 1.0, atol=1e-6)
    spec1, w1 = lstmgen.from_torch(lstm, head=lin)  # a bare nn.Linear is head index 0
    assert [h.kind for h in spec1.head] == ["Linear"] and np.array_equal(w1["head.0.weight"], weights["head.0.weight"])


def test_spec_round_trips_json_and_toml(tmp_path):
    head = [{"type": "Linear", "in_features": 16, "out_features": 12, "bias": True}, {"type": "ReLU"},
            {"type": "Linear", "in_features": 12, "out_features": 3, "bias": False}, {"type": "Softmax"}]
    spec = LSTMSpec(input_size=5, hidden_size=8, bidirectional=True, head=head)
    assert spec.to_dict()["head"] == head
    assert LSTMSpec.loads(spec.to_json()) == spec
    toml = ("input_size = 5\nhidden_size = 8\nbidirectional = true\n"
            + "".join("\n[[head]]\n" + "".join(f"{k} = {str(v).lower() if isinstance(v, bool) else repr(v).replace(chr(39), chr(34))}\n"
                                               for k, v in layer.items()) for layer in head))
    path = tmp_path / "spec.toml"
    path.write_text(toml)
    assert LSTMSpec.load(path) == spec
    assert spec.head_output_size == 3 and spec.summary().endswith("head=Linear12,ReLU,Linear3,Softmax")
    assert set(spec.weight_shapes()) - set(LSTMSpec(5, 8, bidirectional=True).weight_shapes()) == {
        "head.0.weight", "head.0.bias", "head.2.weight"}
    assert "head" not in LSTMSpec(5, 8).to_dict()  # no head: the spec's JSON is unchanged
    assert LSTMSpec(5, 8, head=["relu", "Identity"]).head_output_size == 8


@pytest.mark.parametrize("head, error, words", [
    ([{"type": "Conv1d"}], ValueError, "unsupported head layer type 'Conv1d'"),
    ([{"type": "Linear", "in_features": 7, "out_features": 2}], ValueError, "in_features=7"),
    ([{"type": "Linear", "in_features": 8, "out_features": 4}, {"type": "Linear", "in_features": 8, "out_features": 2}],
     ValueError, "head[1]: Linear in_features=8"),
    ([{"type": "Linear", "in_features": 8}], ValueError, "'out_features'"),
    ([{"type": "Linear", "in_features": 8, "out_features": 1 << 20}], ValueError, "out_features must be in"),
    ([{"type": "Linear", "in_features": 8, "out_features": 2, "bias": "yes"}], TypeError, "bias must be a bool"),
    ([{"type": "ReLU", "inplace": True}], ValueError, "unknown field(s) ['inplace'] for a ReLU"),
    ([{"kind": "ReLU"}], ValueError, "needs a 'type'"),
    ([3], TypeError, "head[0]"),
    ("ReLU", TypeError, "head must be a list"),
])
def test_bad_heads_are_refused_by_name(head, error, words):
    with pytest.raises(error) as exc:
        LSTMSpec(input_size=3, hidden_size=8, head=head)
    assert words in str(exc.value)


def test_bad_torch_heads_and_weights_are_refused_by_name():
    lstm = nn.LSTM(3, 4)
    with pytest.raises(ValueError, match="unsupported head module LeakyReLU"):
        lstmgen.from_torch(lstm, head=nn.Sequential(nn.Linear(4, 2), nn.LeakyReLU()))
    with pytest.raises(ValueError, match=r"head: Softmax\(dim=0\) is not over the features"):
        lstmgen.from_torch(lstm, head=nn.Softmax(dim=0))
    with pytest.raises(ValueError, match="in_features=5"):
        lstmgen.from_torch(lstm, head=nn.Linear(5, 2))
    with pytest.raises(TypeError, match="head must be a torch.nn.Linear"):
        lstmgen.from_torch(lstm, head="Linear")
    spec, weights = lstmgen.from_torch(lstm, head=nn.Linear(4, 2))
    del weights["head.0.bias"]
    with pytest.raises(ValueError, match=r"head.0.bias \(2,\)"):
        lstmgen.compile(spec, weights, prefix="hb")


def _compile_strict(folder: str, prefix: str, extra: list[str] = ()) -> None:
    for cc in ("gcc", "clang"):
        if cc == "clang" and not os.path.exists("/usr/bin/clang"):
            continue
        for name in (f"{prefix}.c", f"{prefix}_weights.c"):
            r = subprocess.run([cc, *STRICT, "-O2", *extra, "-c", name, "-o", os.devnull], cwd=folder,
                               capture_output=True, text=True)
            assert r.returncode == 0, f"{cc} {name}:\n{r.stderr}"


@pytest.mark.parametrize("head, sched", [
    ([{"type": "Linear", "in_features": 8, "out_features": 3}, {"type": "Softmax"}], {}),
    ([{"type": "ReLU"}, {"type": "Identity"}, {"type": "Sigmoid"}, {"type": "Tanh"}], dict(chunk=3)),
    ([{"type": "Linear", "in_features": 8, "out_features": 6, "bias": False}, {"type": "Linear", "in_features": 6, "out_features": 7},
      {"type": "Linear", "in_features": 7, "out_features": 2}], dict(time_loop="unrolled", seq_len=3)),
    ([{"type": "Linear", "in_features": 8, "out_features": 1}], dict(target="avx2", math="approx")),
])
def test_generated_c_with_a_head_compiles_warning_free(tmp_path, head, sched):
    need_tool("gcc")
    spec = LSTMSpec(input_size=5, hidden_size=8, head=head)
    lstmgen.generate(spec, lstmgen.random_weights(spec), tmp_path, prefix="hc", **sched)
    _compile_strict(str(tmp_path), "hc", ["-mavx2", "-mfma"] if sched.get("target") == "avx2" else [])
    header = (tmp_path / "hc.h").read_text()
    assert f"#define HC_HEAD_OUTPUT_SIZE {spec.head_output_size}" in header
    assert ("hc_linear_weights head[" in header) == any(h["type"] == "Linear" for h in head)


def _trained_classifier(seed: int = 0):
    """A small LSTM + Linear + Softmax classifier trained a few dozen steps on a toy task (which of
    3 input channels has the largest mean), so its weights are no longer torch's random init."""
    torch.manual_seed(seed)
    lstm, lin = nn.LSTM(3, 12), nn.Linear(12, 3)
    opt = torch.optim.Adam(list(lstm.parameters()) + list(lin.parameters()), lr=0.05)
    for _ in range(60):
        x = torch.randn(10, 16, 3)
        label = x.mean(0).argmax(-1)
        y, _ = lstm(x)
        loss = nn.functional.cross_entropy(lin(y[-1]), label)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return lstm.eval(), nn.Sequential(lin, nn.Softmax(dim=-1)).eval()


_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "clf.h"

/* usage: main x.bin y.bin ys.bin: forward over (T, B, I) and the same sequence step by step */
int main(int argc, char **argv)
{
    enum { T = %(T)d, B = %(B)d };
    static float x[T * B * CLF_INPUT_SIZE], y[T * B * CLF_HEAD_OUTPUT_SIZE], ys[T * B * CLF_HEAD_OUTPUT_SIZE];
    static float h[B * CLF_OUTPUT_SIZE], c[B * CLF_HIDDEN_SIZE];
    FILE *f;
    if (argc != 4 || (f = fopen(argv[1], "rb")) == NULL || fread(x, sizeof x, 1, f) != 1) {
        return 2;
    }
    fclose(f);
    const int64_t need = clf_workspace_floats(T, B);
    float *ws = malloc(sizeof(float) * (size_t)need);
    if (ws == NULL || clf_forward(&clf_model_weights, x, T, B, NULL, NULL, NULL, y, h, c, ws, need) != CLF_OK) {
        return 3;
    }
    clf_weights nul = clf_model_weights;
    nul.head[0].bias = NULL;
    if (clf_forward(&nul, x, T, B, NULL, NULL, NULL, y, h, c, ws, need) != CLF_ERR_WEIGHTS) {
        return 4;
    }
    clf_reset(h, c, B);
    for (int t = 0; t < T; ++t) {
        if (clf_step(&clf_model_weights, x + t * B * CLF_INPUT_SIZE, B, h, c, ys + t * B * CLF_HEAD_OUTPUT_SIZE, ws,
                     need) != CLF_OK) {
            return 5;
        }
    }
    free(ws);
    f = fopen(argv[2], "wb");
    fwrite(y, sizeof y, 1, f);
    fclose(f);
    f = fopen(argv[3], "wb");
    fwrite(ys, sizeof ys, 1, f);
    fclose(f);
    return 0;
}
"""


def test_trained_classifier_end_to_end(tmp_path):
    lstm, head = _trained_classifier()
    spec, weights = lstmgen.from_torch(lstm, head=head)
    T, B = 9, 2
    x = np.random.default_rng(7).standard_normal((T, B, 3)).astype(np.float32)
    ty, th, tc = _torch_out(lstm, head, x)
    # Python
    y, (h, c) = lstmgen.compile(spec, weights, prefix="clf")(x)
    assert np.abs(y - ty).max() < TOL and np.abs(h - th).max() < TOL
    assert np.allclose(y.sum(-1), 1.0, atol=1e-6)
    # generated C with a small main and no Python
    cc = need_tool("gcc")
    lstmgen.generate(spec, weights, tmp_path, prefix="clf")
    (tmp_path / "main.c").write_text(_MAIN % dict(T=T, B=B))
    r = subprocess.run([cc, *STRICT, "-O2", "-o", "main", "main.c", "clf.c", "clf_weights.c", "-lm"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    x.tofile(tmp_path / "x.bin")
    r = subprocess.run(["./main", "x.bin", "y.bin", "ys.bin"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 0, (r.returncode, r.stderr)
    cy = np.fromfile(tmp_path / "y.bin", dtype=np.float32).reshape(ty.shape)
    cys = np.fromfile(tmp_path / "ys.bin", dtype=np.float32).reshape(ty.shape)
    assert np.abs(cy - ty).max() < TOL and np.abs(cys - ty).max() < TOL
    # the embedded folder: its self-test (goldens from lstmgen.reference with the head) passes
    folder = tmp_path / "emb"
    lstmgen.embedded.generate_embedded(spec, weights, folder, prefix="clf", max_batch=2)
    need_tool("make")
    r = subprocess.run(["make", "check"], cwd=folder, capture_output=True, text=True)
    assert r.returncode == 0 and "clf selftest: PASS (0 failures)" in r.stdout, r.stdout + r.stderr
    text = (folder / "clf.h").read_text()
    fp = lstmgen.embedded.footprint(lstmgen.embedded.embedded_program(spec, max_batch=2))
    assert fp.weight_floats == lstmgen.embedded.weight_floats(spec) == lstmgen.embedded.weight_floats(
        LSTMSpec(3, 12)) + 12 * 3 + 3
    assert f"the head {12 * 3 + 3}" in text
    sizes = re.findall(r"static const float \w+\[(\d+)\]", (folder / "clf_weights.c").read_text())
    assert sum(map(int, sizes)) == fp.weight_floats


def test_head_selftest_under_qemu_arm(tmp_path):
    cc = need_tool("arm-linux-gnueabihf-gcc")
    qemu = need_tool("qemu-arm")
    lstm, head = _trained_classifier(1)
    spec, weights = lstmgen.from_torch(lstm, head=head)
    lstmgen.embedded.generate_embedded(spec, weights, tmp_path, prefix="clf", max_batch=2)
    exe = str(tmp_path / "st")
    build_selftest(str(tmp_path), "clf", cc, ["-O2", *STRICT], exe)
    r = subprocess.run([qemu, "-L", "/usr/arm-linux-gnueabihf", exe], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and passed(r.stdout, "clf"), r.stdout + r.stderr


def test_null_head_weight_is_refused_and_pickle_keeps_the_head():
    import pickle

    lstm, head = _torch_pair(9, dict(input_size=3, hidden_size=4), [nn.Linear(4, 2), nn.Sigmoid()])
    spec, weights = lstmgen.from_torch(lstm, head=head)
    model = lstmgen.compile(spec, weights, prefix="hn")
    x = np.random.default_rng(1).standard_normal((3, 1, 3)).astype(np.float32)
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again(x)[0], model(x)[0])
    assert len(model.packed_weights) == 2 and "head=Linear(4, 2) -> Sigmoid" in repr(model)
    w = model.c_weights
    w.head[0].weight = model.artifact.ffi.NULL
    with pytest.raises(ValueError, match="C error -5"):
        model(x)


# ---- ONNX: torch's export of LSTM + head is the same spec ----------------------------------


class _Tagger(nn.Module):
    def __init__(self, lstm, head):
        super().__init__()
        self.lstm, self.head = lstm, head

    def forward(self, x):
        y, (h, c) = self.lstm(x)
        return self.head(y), h, c


def _export(module, x, dynamo, names=("y", "h_n", "c_n")):
    import io
    import logging
    import warnings

    onnx = pytest.importorskip("onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        try:
            if dynamo:
                pytest.importorskip("onnxscript")
                return torch.onnx.export(module, (x,), dynamo=True, verbose=False, input_names=["x"],
                                         output_names=list(names)).model_proto
            f = io.BytesIO()
            torch.onnx.export(module, (x,), f, dynamo=False, input_names=["x"], output_names=list(names))
            return onnx.load_from_string(f.getvalue())
        finally:
            logging.disable(logging.NOTSET)


@pytest.mark.parametrize("dynamo", [False, True])
@pytest.mark.parametrize("lstm_kw", [dict(), dict(bidirectional=True, num_layers=2), dict(batch_first=True)])
def test_onnx_export_of_lstm_and_head_imports_as_the_same_spec(lstm_kw, dynamo):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(11)
    lstm = nn.LSTM(3, 8, **lstm_kw)
    width = 16 if lstm_kw.get("bidirectional") else 8
    head = nn.Sequential(nn.Linear(width, 6), nn.ReLU(), nn.Linear(6, 5, bias=False), nn.Tanh(), nn.Linear(5, 3),
                         nn.Sigmoid(), nn.Softmax(dim=-1))
    module = _Tagger(lstm, head).eval()
    x = torch.randn((2, 5, 3) if lstm.batch_first else (5, 2, 3))
    model = _export(module, x, dynamo)
    imp = lstmgen.import_onnx(model)
    spec, weights = lstmgen.from_torch(lstm, head=head)
    assert imp.spec == spec
    assert set(imp.weights) == set(weights) and all(np.allclose(imp.weights[k], weights[k]) for k in weights)
    want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x.numpy()})
    xx, hx, lengths = imp.model_inputs({"x": x.numpy()})
    got = imp.graph_outputs(*lstmgen.compile(imp.spec, imp.weights, prefix="hx")(xx, hx, lengths=lengths))
    for name, w in zip(("y", "h_n", "c_n"), want):
        assert got[name].shape == w.shape and np.abs(got[name] - w).max() < TOL, name


def test_onnx_head_refusals_name_the_node():
    lstm = nn.LSTM(3, 4)
    x = torch.randn(5, 2, 3)
    model = _export(_Tagger(lstm, nn.Softmax(dim=1)).eval(), x, dynamo=False)
    with pytest.raises(ValueError, match=r"Softmax.*over axis 1 .*the last axis"):
        lstmgen.from_onnx(model)

    class TwoOutputs(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm, self.fc = lstm, nn.Linear(4, 2)

        def forward(self, x):
            y, _ = self.lstm(x)
            return self.fc(y), y

    model = _export(TwoOutputs().eval(), x, dynamo=False, names=("tags", "y"))
    with pytest.raises(ValueError, match="without the head"):
        lstmgen.from_onnx(model)
