"""Spec validation, spec files, weight checks and bad call arguments: clear errors naming the problem."""

from __future__ import annotations

import json

import numpy as np
import pytest

import lstmgen
from lstmgen.schedule import MAX_UNROLLED_STEPS


def test_spec_fields_are_type_checked():
    with pytest.raises(TypeError, match="hidden_size"):
        lstmgen.LSTMSpec(input_size=3, hidden_size=True)
    with pytest.raises(TypeError, match="input_size"):
        lstmgen.LSTMSpec(input_size=3.0, hidden_size=4)
    with pytest.raises(ValueError, match="hidden_size"):
        lstmgen.LSTMSpec(input_size=3, hidden_size=0)
    with pytest.raises(TypeError, match="bidirectional"):
        lstmgen.LSTMSpec(input_size=3, hidden_size=4, bidirectional=1)
    with pytest.raises(ValueError, match="proj_size"):
        lstmgen.LSTMSpec(input_size=3, hidden_size=4, proj_size=4)
    with pytest.raises(ValueError, match="dropout"):
        lstmgen.LSTMSpec(input_size=3, hidden_size=4, dropout=float("nan"))
    with pytest.raises(ValueError, match="clip"):
        lstmgen.LSTMSpec(input_size=3, hidden_size=4, clip=-1.0)
    with pytest.raises(ValueError, match="activation"):
        lstmgen.LSTMSpec(input_size=3, hidden_size=4, activations=["Sigmoid", "Tanh", "Nope"])
    with pytest.raises(ValueError, match="too large"):
        lstmgen.LSTMSpec(input_size=60000, hidden_size=60000)
    assert lstmgen.LSTMSpec(input_size=np.int64(3), hidden_size=4).input_size == 3
    assert lstmgen.LSTMSpec(input_size=3, hidden_size=4, dropout=0.5).dropout == 0.5  # accepted, ignored


def test_spec_files(tmp_path):
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, proj_size=2)
    p = tmp_path / "s.json"
    p.write_text(spec.to_json())
    assert lstmgen.LSTMSpec.load(p) == spec
    t = tmp_path / "s.toml"
    t.write_text("input_size = 3\nhidden_size = 4\nnum_layers = 2\nbidirectional = true\nproj_size = 2\n")
    assert lstmgen.LSTMSpec.load(t) == spec
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"input_size": 3, "hidden_size": 4, "hiden_size": 5}))
    with pytest.raises(ValueError, match="hiden_size"):
        lstmgen.LSTMSpec.load(bad)
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(ValueError, match="not a valid JSON"):
        lstmgen.LSTMSpec.load(broken)


SPEC = lstmgen.LSTMSpec(input_size=3, hidden_size=4, num_layers=2, proj_size=2)


def test_weight_errors_name_the_key_and_shape():
    w = lstmgen.random_weights(SPEC)
    missing = dict(w)
    del missing["weight_hh_l1"]
    with pytest.raises(ValueError, match=r"weight_hh_l1 \(16, 2\)"):
        lstmgen.compile(SPEC, missing)
    extra = dict(w, weight_ih_l2=np.zeros((16, 2), np.float32))
    with pytest.raises(ValueError, match="weight_ih_l2"):
        lstmgen.compile(SPEC, extra)
    bad = dict(w, bias_ih_l0=np.zeros(15, np.float32))
    with pytest.raises(ValueError, match=r"bias_ih_l0.*\(16,\)"):
        lstmgen.compile(SPEC, bad)
    nan = dict(w, weight_hr_l0=np.full((2, 4), np.nan, np.float32))
    with pytest.raises(ValueError, match="weight_hr_l0.*NaN"):
        lstmgen.compile(SPEC, nan)
    with pytest.raises(TypeError, match="weight_ih_l0"):
        lstmgen.compile(SPEC, dict(w, weight_ih_l0=np.zeros((16, 3), dtype=object)))


def test_call_argument_errors():
    model = lstmgen.compile(SPEC, lstmgen.random_weights(SPEC))
    x = np.zeros((5, 2, 3), np.float32)
    with pytest.raises(ValueError, match="x has shape"):
        model(np.zeros((5, 2, 4), np.float32))
    with pytest.raises(ValueError, match="x must be"):
        model(np.zeros((5,), np.float32))
    with pytest.raises(TypeError, match="x must be a floating"):
        model(np.zeros((5, 2, 3), np.int32))
    with pytest.raises(ValueError, match="need at least one"):
        model(np.zeros((0, 2, 3), np.float32))
    with pytest.raises(ValueError, match="h0 has shape"):
        model(x, (np.zeros((2, 2, 4), np.float32), np.zeros((2, 2, 4), np.float32)))
    with pytest.raises(ValueError, match="c0 has shape"):
        model(x, (np.zeros((2, 2, 2), np.float32), np.zeros((2, 2, 2), np.float32)))
    with pytest.raises(TypeError, match="hx"):
        model(x, np.zeros(3))
    with pytest.raises(ValueError, match="lengths"):
        model(x, lengths=[5, 6])
    with pytest.raises(ValueError, match="lengths"):
        model(x, lengths=[0, 1])
    with pytest.raises(ValueError, match="lengths has shape"):
        model(x, lengths=[1, 2, 3])
    with pytest.raises(TypeError, match="lengths"):
        model(x, lengths=[1.5, 2.0])
    s = model.stream(batch=2)
    with pytest.raises(ValueError, match="x_t has shape"):
        s.step(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="row"):
        s.reset(2)
    with pytest.raises(ValueError, match="batch"):
        model.stream(batch=0)
    # float64 input is converted, results match float32 input
    np.testing.assert_array_equal(model(x.astype(np.float64))[0], model(x)[0])


def test_schedule_errors():
    w = lstmgen.random_weights(SPEC)
    with pytest.raises(ValueError, match="seq_len"):
        lstmgen.compile(SPEC, w, time_loop="unrolled")
    with pytest.raises(ValueError, match="cap"):
        lstmgen.compile(SPEC, w, time_loop="unrolled", seq_len=MAX_UNROLLED_STEPS)
    with pytest.raises(ValueError, match="time_loop"):
        lstmgen.compile(SPEC, w, time_loop="sideways")
    bi = lstmgen.LSTMSpec(input_size=3, hidden_size=4, bidirectional=True)
    with pytest.raises(ValueError, match="unidirectional"):
        lstmgen.compile(bi, lstmgen.random_weights(bi), chunk=4)
    m = lstmgen.compile(SPEC, w, time_loop="unrolled", seq_len=4)
    with pytest.raises(ValueError, match="seq_len=4"):
        m(np.zeros((5, 1, 3), np.float32))


@pytest.mark.parametrize("prefix", ["", "1abc", "a-b", "int", "a b", "x;y", "é", "_lead", "a" * 40, 7])
def test_prefix_must_be_a_c_identifier(prefix):
    with pytest.raises((ValueError, TypeError), match="prefix"):
        lstmgen.compile(SPEC, lstmgen.random_weights(SPEC), prefix=prefix)
