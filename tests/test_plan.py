"""The kernel plan is part of the ScheduledProgram and can be overridden: every tile shape of one
(target, math, ks) computes the same bits; vector width and partial sums change only the order of
additions (within the reference tolerance). Bad overrides are refused by name."""

from __future__ import annotations

import numpy as np
import pytest

import lstmgen
from lstmgen import kernels, reference
from lstmgen.schedule import PLAN_KNOBS, Schedule, build_program

NATIVE = kernels.native_isa()
needs_x86 = pytest.mark.skipif(NATIVE not in ("avx2", "avx512"), reason="sweeps the x86 kernels this host runs")


def _run(model, spec, T=9, B=5, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((T, B, spec.input_size)).astype(np.float32)
    h0 = rng.standard_normal((spec.num_layers * spec.num_directions, B, spec.output_size)).astype(np.float32)
    c0 = rng.standard_normal((spec.num_layers * spec.num_directions, B, spec.hidden_size)).astype(np.float32)
    y, (h, c) = model(x, (h0, c0))
    steps = None
    if model.streams:
        s = model.stream(batch=B)
        s.state = (h0, c0)
        steps = np.stack([s.step(x[t]) for t in range(T)])
    return x, (h0, c0), (y, h, c, steps)


def _bits(a):
    return None if a is None else np.ascontiguousarray(a, np.float32).view(np.uint32)


def _same_bits(a, b):
    for u, v in zip(a, b):
        assert (u is None) == (v is None)
        if u is not None:
            assert np.array_equal(_bits(u), _bits(v))


SWEEPS = {
    # (spec, target, math, overrides to try; none may change a bit)
    "h64-avx512-approx": (dict(input_size=5, hidden_size=64), "avx512", "approx",
                          [dict(mr=1), dict(mr=3), dict(mr=7), dict(mrs=1), dict(mrs=4), dict(tiles1=1), dict(tiles1=4),
                           dict(kc=1), dict(kc=5), dict(mr=2, tiles1=3, kc=3)]),
    "h48-proj-avx512-libm": (dict(input_size=4, hidden_size=48, proj_size=8), "avx512", "libm",
                             [dict(mr=5), dict(tiles1=3), dict(tiles1=2, kc=2)]),
    "h16-avx512-ks2": (dict(input_size=3, hidden_size=16), "avx512", "approx",  # one gate block: ks = 2
                       [dict(mr=2), dict(mrs=1), dict(mrs=2), dict(kc=4)]),
    "h32-avx2-approx": (dict(input_size=3, hidden_size=32, num_layers=2), "avx2", "approx",
                        [dict(mr=1), dict(mr=3), dict(tiles1=4), dict(kc=2)]),
}


@needs_x86
@pytest.mark.parametrize("name", sorted(SWEEPS))
def test_tile_shapes_give_identical_bits(name):
    kw, target, math, overrides = SWEEPS[name]
    if target == "avx512" and NATIVE != "avx512":
        pytest.skip("host has no AVX-512")
    spec = lstmgen.LSTMSpec(**kw)
    w = lstmgen.random_weights(spec, seed=3)
    base = lstmgen.compile(spec, w, target=target, math=math)
    _, _, want = _run(base, spec)
    default = base.program.plan
    src = lstmgen.generate_sources(spec, target=target, math=math).files
    for ov in overrides:
        assert lstmgen.generate_sources(spec, target=target, math=math, plan=ov).files != src  # a different kernel
        model = lstmgen.compile(spec, w, target=target, math=math, plan=ov)
        got_plan = model.program.plan
        for k, v in ov.items():
            assert getattr(got_plan, k) == v
        assert got_plan.ks == default.ks and got_plan.vw == default.vw
        _, _, got = _run(model, spec)
        _same_bits(got, want)


@needs_x86
@pytest.mark.parametrize("ov", [dict(ks=1), dict(ks=2), dict(ks=3), dict(ks=4), dict(vw=8), dict(vw=4), dict(vw=0)])
def test_width_and_partial_sums_stay_within_tolerance(ov):
    spec = lstmgen.LSTMSpec(input_size=4, hidden_size=16)
    target = "avx512" if NATIVE == "avx512" else "avx2"
    if target == "avx2" and ov.get("vw") not in (None, 8, 4, 0):
        pytest.skip("width not offered by avx2")
    w = lstmgen.random_weights(spec, seed=5)
    model = lstmgen.compile(spec, w, target=target, math="libm", plan=ov)
    for k, v in ov.items():
        assert getattr(model.program.plan, k) == v
    x, hx, (y, h, c, steps) = _run(model, spec)
    ry, (rh, rc) = reference.lstm_forward(spec, w, x, hx)
    assert max(np.abs(y - ry).max(), np.abs(h - rh).max(), np.abs(c - rc).max()) < 1e-5
    assert np.array_equal(_bits(steps), _bits(y))  # stream and forward agree bit for bit


# portable kernels: (spec, panels to try); every panel height and both sum forms (named floats up to
# kernels.MAX_NAMED_PANEL rows, an array past it) give the same bits
PORTABLE_SWEEPS = {
    "h5-proj": (dict(input_size=3, hidden_size=5, proj_size=3), [1, 3, 4, 16, 17, 256]),
    "h64-2layers": (dict(input_size=9, hidden_size=64, num_layers=2), [5, 8, 16, 64, 1000]),
    "h7-bidir": (dict(input_size=4, hidden_size=7, bidirectional=True, bias=False), [2, 16, 28, 64]),
}


@pytest.mark.parametrize("name", sorted(PORTABLE_SWEEPS))
def test_portable_panels_give_identical_bits(name):
    kw, panels = PORTABLE_SWEEPS[name]
    spec = lstmgen.LSTMSpec(**kw)
    w = lstmgen.random_weights(spec, seed=3)
    base = lstmgen.compile(spec, w, target="portable", math="libm")
    assert base.program.plan.panel == kernels.HOST_PANEL
    x, hx, want = _run(base, spec)
    ry, (rh, rc) = reference.lstm_forward(spec, w, x, hx)
    assert max(np.abs(want[0] - ry).max(), np.abs(want[1] - rh).max(), np.abs(want[2] - rc).max()) < 1e-5
    for panel in panels:
        model = lstmgen.compile(spec, w, target="portable", math="libm", plan=dict(panel=panel))
        assert model.program.plan.panel == panel and all(c.panel == panel for c in model.packed_weights)
        _, _, got = _run(model, spec)
        _same_bits(got, want)


def test_portable_schedules_and_panels_agree():
    """Unrolled and chunked runs on named-sum (16) and array (256) panels: the bits of the looped run."""
    spec = lstmgen.LSTMSpec(input_size=6, hidden_size=9, num_layers=2, proj_size=5)
    w = lstmgen.random_weights(spec, seed=4)
    x, hx, want = _run(lstmgen.compile(spec, w, target="portable", math="approx"), spec)
    for panel in (16, 256):
        for kw in (dict(time_loop="unrolled", seq_len=x.shape[0]), dict(chunk=3)):
            model = lstmgen.compile(spec, w, target="portable", math="approx", plan=dict(panel=panel), **kw)
            y, (h, c) = model(x, hx)
            _same_bits((y, h, c), want[:3])


def test_static_builds_plan_panels_for_a_microcontroller():
    """The embedded (static) schedule gets the named-float panels; the layout follows the plan."""
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=64)
    assert build_program(spec, Schedule(target="portable", chunk=4, max_batch=1)).plan.panel == kernels.STATIC_PANEL
    assert build_program(spec, Schedule(target="portable")).plan.panel == kernels.HOST_PANEL
    assert build_program(spec, Schedule(target="portable"), plan=dict(panel=16)).panel == 16
    assert "panels of 16 rows" in build_program(spec, Schedule(target="portable", chunk=4, max_batch=1)).describe_plan()
    assert build_program(spec, Schedule(target="avx512")).panel == 0  # the vector kernels' layout is gate-blocked


@pytest.mark.parametrize("ov, target, match", [
    (dict(panel=0), "portable", "panel must be in"),
    (dict(panel=kernels.MAX_PANEL + 1), "portable", "panel must be in"),
    (dict(panel=16), "avx512", "portable kernels only"),
    (dict(panel=16, mr=2), "portable", "vector kernels only"),
])
def test_bad_panel_overrides_are_refused(ov, target, match):
    with pytest.raises(ValueError, match=match):
        build_program(lstmgen.LSTMSpec(input_size=3, hidden_size=64), Schedule(target=target), plan=ov)


def test_default_plan_is_kernels_plan_and_inspect_shows_it():
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=64)
    sp = build_program(spec, Schedule(target="avx512", math="approx"))
    assert sp.plan == kernels.plan(spec, "avx512", "approx")
    assert sp.unit_block == 16
    text = sp.describe_plan()
    assert "vw=16" in text and "tile" in text
    assert "scalar" in build_program(lstmgen.LSTMSpec(input_size=3, hidden_size=7), Schedule(target="avx512")).describe_plan()


def test_auto_window_follows_the_plan_not_the_target_name():
    """H = 7 has no vector width: the scalar kernels run on avx512 too, with one window."""
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=7)
    sp = build_program(spec, Schedule(target="avx512"))
    assert sp.plan.vw == 0 and not sp.auto_window and sp.window(100_000, 64) == 100_000
    sp16 = build_program(lstmgen.LSTMSpec(input_size=3, hidden_size=16), Schedule(target="avx512"))
    assert sp16.auto_window and sp16.window(100_000, 64) < 100_000
    # forced to the scalar kernels by the plan: no run-time window either
    assert not build_program(lstmgen.LSTMSpec(input_size=3, hidden_size=16), Schedule(target="avx512"), plan=dict(vw=0)).auto_window


@pytest.mark.parametrize("ov, match", [
    (dict(tile=3), "unknown field"),
    (dict(mr=0), "mr must be in"),
    (dict(mr=99), "mr must be in"),
    (dict(mr=True), "int"),
    (dict(ks=5), "ks must be in"),
    (dict(vw=5), "not a vector width"),
    (dict(vw=32), "not a vector width"),
    (dict(tiles1=0), "tiles1"),
    (dict(tiles1=5), "tiles1"),
    (dict(kc=0), "kc"),
])
def test_bad_overrides_are_refused(ov, match):
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=64)
    with pytest.raises(ValueError, match=match):
        build_program(spec, Schedule(target="avx512"), plan=ov)


def test_overrides_need_vector_kernels_and_a_mapping():
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=64)
    with pytest.raises(ValueError, match="vector kernels only"):
        build_program(spec, Schedule(target="portable"), plan=dict(mr=2))
    with pytest.raises(ValueError, match="does not divide"):
        build_program(lstmgen.LSTMSpec(input_size=3, hidden_size=24), Schedule(target="avx512"), plan=dict(vw=16))
    with pytest.raises(TypeError, match="dict"):
        build_program(spec, Schedule(target="avx512"), plan=[("mr", 2)])
    assert set(PLAN_KNOBS) == {"vw", "mr", "mrs", "tiles1", "ks", "kc", "panel", "vnni", "idot", "pmadd"}
    # pmadd: int8 weights on AVX2 at 8 lanes, inputs up to IDOT_KMAX
    assert build_program(spec, Schedule(target="avx2", weights="int8")).plan.pmadd
    assert build_program(spec, Schedule(target="avx2", weights="int8")).kgroup == 2
    for schedule, plan in [(Schedule(target="avx2"), dict(pmadd=1)), (Schedule(target="avx512", weights="int8"), dict(pmadd=1, vw=8)),
                           (Schedule(target="avx2", weights="int8"), dict(pmadd=1, vw=4))]:
        with pytest.raises(ValueError, match="pmadd=1 needs"):
            build_program(spec, schedule, plan=plan)
    # and on AVX-512 at 16 lanes (AVX512BW), the int8 default where the host lacks VNNI
    pm = build_program(spec, Schedule(target="avx512", weights="int8"), plan=dict(pmadd=1))
    assert pm.plan.pmadd and not pm.plan.vnni and pm.plan.vw == 16 and pm.kgroup == 2 and "pmadd" in str(pm.plan)
    with pytest.raises(ValueError, match="vnni=1 and pmadd=1"):
        build_program(spec, Schedule(target="avx512", weights="int8"), plan=dict(pmadd=1, vnni=1))
    assert not build_program(lstmgen.LSTMSpec(input_size=600, hidden_size=8), Schedule(target="avx2", weights="int8")).plan.pmadd
    # idot: int8 weights in the portable named-sum kernels (static builds), inputs up to IDOT_KMAX
    static = dict(max_batch=1, target="portable", weights="int8")
    assert build_program(spec, Schedule(**static)).plan.idot  # the embedded int8 default
    assert not build_program(spec, Schedule(target="portable", weights="int8")).plan.idot  # host panels: float sums
    assert not build_program(lstmgen.LSTMSpec(input_size=600, hidden_size=8), Schedule(**static)).plan.idot
    for schedule, plan in [(Schedule(**static), dict(idot=1, panel=32)), (Schedule(target="portable", max_batch=1), dict(idot=1)),
                           (Schedule(**dict(static, target="avx512")), dict(idot=1))]:
        with pytest.raises(ValueError, match="idot=1"):
            build_program(spec, schedule, plan=plan)
    # vnni: int8 weights on AVX-512 at 16 lanes only, exact integer sums (ks = 1)
    for schedule, plan in [(Schedule(target="avx512"), dict(vnni=1)), (Schedule(target="avx2", weights="int8"), dict(vnni=1)),
                           (Schedule(target="avx512", weights="int8"), dict(vnni=1, vw=8))]:
        with pytest.raises(ValueError, match="vnni=1 needs"):
            build_program(spec, schedule, plan=plan)
    with pytest.raises(ValueError, match="ks must be 1"):
        build_program(spec, Schedule(target="avx512", weights="int8"), plan=dict(vnni=1, ks=2))
    with pytest.raises(ValueError, match="vnni must be 0 or 1"):
        build_program(spec, Schedule(target="avx512", weights="int8"), plan=dict(vnni=2))
    vnni = build_program(spec, Schedule(target="avx512", weights="int8"), plan=dict(vnni=1))
    assert vnni.plan.vnni and vnni.kgroup == 4 and vnni.plan.ks == 1 and "vnni" in str(vnni.plan)


@pytest.mark.parametrize("vnni_host", [True, False])
def test_avx512_int8_default_is_vnni_where_the_host_has_it_else_pmadd(monkeypatch, vnni_host):
    from lstmgen import kernels
    monkeypatch.setattr(kernels, "host_vnni", lambda: vnni_host)
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=64)
    int8 = Schedule(target="avx512", weights="int8")
    got = build_program(spec, int8).plan
    assert (got.vnni, got.pmadd) == ((1, 0) if vnni_host else (0, 1))
    assert build_program(spec, int8, plan=dict(mr=1)).plan.vnni == got.vnni  # other overrides keep the default
    off = build_program(spec, int8, plan=dict(vnni=0, pmadd=0)).plan
    assert not (off.vnni or off.pmadd)  # the widening kernels
    other = build_program(spec, int8, plan=dict(pmadd=1) if vnni_host else dict(vnni=1)).plan  # asking for the other one
    assert (other.vnni, other.pmadd) == ((0, 1) if vnni_host else (1, 0))
    # one gate block (H = vw): the widening kernels (MIN_INTEGER_BLOCKS)
    one = build_program(lstmgen.LSTMSpec(input_size=3, hidden_size=16), int8).plan
    assert not (one.vnni or one.pmadd)
