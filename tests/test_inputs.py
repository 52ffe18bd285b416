"""Arrays from Python at the edges, and threads.

Every layout numpy (or torch) can hand us is either computed exactly — the same bits as the plain
C-contiguous float32 call — or refused with an error naming the argument: non-contiguous, negative
and zero strides, Fortran order, big-endian, unaligned, read-only, memory-mapped, other float
widths, nested lists, 0-size and huge arrays. Then threads: one Model called from many threads at
once gives the serial results, the GIL is released while C runs, and a Stream shared by threads
stays consistent.
"""

from __future__ import annotations

import threading
import time
import tracemalloc

import numpy as np
import pytest
from conftest import need_module, with_c_functions

import lstmgen

SPEC = lstmgen.LSTMSpec(input_size=3, hidden_size=5, num_layers=2, proj_size=2)
W = lstmgen.random_weights(SPEC, seed=11)
T, B, NI = 6, 4, 3


@pytest.fixture(scope="module")
def model():
    return lstmgen.compile(SPEC, W, prefix="inputs")


@pytest.fixture(scope="module")
def base(model):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((T, B, NI)).astype(np.float32)
    h0 = rng.standard_normal((2, B, 2)).astype(np.float32)
    c0 = rng.standard_normal((2, B, 5)).astype(np.float32)
    lengths = np.array([6, 1, 3, 5])
    return x, h0, c0, lengths, model(x, (h0, c0), lengths=lengths)


def same(a, b):
    out_a, (h_a, c_a) = a
    out_b, (h_b, c_b) = b
    for p, q in ((out_a, out_b), (h_a, h_b), (c_a, c_b)):
        assert p.dtype == np.float32 and q.shape == p.shape
        assert np.array_equal(p, q), "not the same bits as the plain call"


def unaligned(a: np.ndarray) -> np.ndarray:
    buf = bytearray(a.nbytes + 1)
    u = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    u[...] = a
    assert not u.flags.aligned and u.flags.c_contiguous
    return u


def strided(a: np.ndarray) -> np.ndarray:
    big = np.zeros(a.shape[:-1] + (a.shape[-1] * 2,), a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def readonly(a: np.ndarray) -> np.ndarray:
    r = a.copy()
    r.setflags(write=False)
    return r


def memmapped(a: np.ndarray, tmp_path) -> np.ndarray:
    path = tmp_path / f"m{a.size}.bin"
    a.tofile(path)
    return np.memmap(path, dtype=a.dtype, mode="r", shape=a.shape)


LAYOUTS = {
    "strided": strided,
    "fortran": np.asfortranarray,
    "big_endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
    "unaligned": unaligned,
    "readonly": readonly,
    "float64": lambda a: a.astype(np.float64),
    "longdouble": lambda a: a.astype(np.longdouble),
    "negative_strides": lambda a: a[::-1].copy()[::-1],
    "nested_list": lambda a: a.tolist(),
    "transposed_view": lambda a: np.ascontiguousarray(a.transpose(1, 0, 2)).transpose(1, 0, 2),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS) + ["memmap"])
@pytest.mark.parametrize("arg", ["x", "h0", "c0", "all"])
def test_layouts_give_exactly_the_same_result(model, base, layout, arg, tmp_path):
    x, h0, c0, lengths, want = base

    def f(a):
        return memmapped(a, tmp_path) if layout == "memmap" else LAYOUTS[layout](a)

    args = dict(x=x, h0=h0, c0=c0)
    for k in (("x", "h0", "c0") if arg == "all" else (arg,)):
        args[k] = f(args[k])
    same(model(args["x"], (args["h0"], args["c0"]), lengths=lengths), want)


def test_c_only_sees_aligned_pointers(model, base):
    """An unaligned float* is undefined behaviour in C (and a fault on some ARM cores): unaligned
    arrays are copied, never passed through."""
    x, h0, c0, lengths, want = base
    ffi = model.artifact.ffi
    seen = []

    def spy(real, *args):
        for a in args:
            if isinstance(a, ffi.CData) and ffi.typeof(a).kind in ("pointer", "array") and a != ffi.NULL:
                seen.append(int(ffi.cast("uintptr_t", a)) % 4)
        return real(*args)

    m = with_c_functions(model.with_weights(W), forward=spy)
    same(m(unaligned(x), (unaligned(h0), unaligned(c0)), lengths=unaligned(lengths.astype(np.int32))), want)
    assert len(seen) >= 8 and not any(seen), f"misaligned pointers reached C: {seen}"


@pytest.mark.parametrize("layout", ["strided", "unaligned", "readonly", "big_endian", "list", "tuple", "int8", "uint64"])
def test_lengths_layouts(model, base, layout):
    x, h0, c0, lengths, want = base
    conv = {
        "strided": lambda a: np.repeat(a, 2)[::2], "unaligned": unaligned, "readonly": readonly,
        "big_endian": lambda a: a.astype(">i4"), "list": lambda a: a.tolist(), "tuple": lambda a: tuple(a.tolist()),
        "int8": lambda a: a.astype(np.int8), "uint64": lambda a: a.astype(np.uint64),
    }[layout]
    same(model(x, (h0, c0), lengths=conv(lengths)), want)


def test_broadcast_and_float16_inputs(model, base):
    x, *_ = base
    row = x[:1]
    same(model(np.broadcast_to(row, x.shape)), model(np.repeat(row, T, axis=0)))
    x16 = x.astype(np.float16)
    same(model(x16), model(x16.astype(np.float32)))


def test_torch_tensors(model, base):
    torch = need_module("torch")
    x, h0, c0, lengths, want = base
    tx = torch.from_numpy(x.transpose(1, 0, 2).copy()).transpose(0, 1)  # a non-contiguous view
    assert not tx.is_contiguous()
    th = torch.from_numpy(h0).requires_grad_(True)
    same(model(tx, (th, torch.from_numpy(c0).double()), lengths=torch.from_numpy(lengths)), want)


def test_outputs_are_fresh_owned_arrays(model, base):
    x, h0, c0, lengths, want = base
    out, (h, c) = model(x, (h0, c0), lengths=lengths)
    for a in (out, h, c):
        assert a.flags.c_contiguous and a.flags.writeable and a.flags.owndata and a.dtype == np.float32
        assert not np.shares_memory(a, x) and not np.shares_memory(a, h0) and not np.shares_memory(a, c0)
    out[...] = 7.0
    same(model(x, (h0, c0), lengths=lengths), want)  # no state kept between calls


def test_inputs_are_not_modified(model, base):
    x, h0, c0, lengths, _ = base
    copies = [a.copy() for a in (x, h0, c0, lengths)]
    model(x, (h0, c0), lengths=lengths)
    for a, b in zip((x, h0, c0, lengths), copies):
        assert np.array_equal(a, b)


def test_unbatched_is_a_batch_of_one(model, base):
    x, h0, c0, *_ = base
    out, (h, c) = model(x[:, 2], (h0[:, 2], c0[:, 2]))
    out3, (h3, c3) = model(x[:, 2:3], (h0[:, 2:3], c0[:, 2:3]))
    assert out.shape == (T, 2) and h.shape == (2, 2) and c.shape == (2, 5)
    assert np.array_equal(out, out3[:, 0]) and np.array_equal(h, h3[:, 0]) and np.array_equal(c, c3[:, 0])


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint8, bool, np.complex64, object, "U3", "datetime64[s]"])
def test_wrong_dtypes_refused(model, base, dtype):
    x, h0, c0, *_ = base
    bad = np.zeros(x.shape, dtype=dtype)
    with pytest.raises(TypeError, match="x must be a floating"):
        model(bad)
    with pytest.raises(TypeError, match="h0 must be a floating"):
        model(x, (np.zeros(h0.shape, dtype=dtype), c0))
    with pytest.raises(TypeError, match="c0 must be a floating"):
        model(x, (h0, np.zeros(c0.shape, dtype=dtype)))
    if np.dtype(dtype).kind not in "iu":
        with pytest.raises(TypeError, match="lengths"):
            model(x, lengths=np.ones(B, dtype=dtype))


def test_ragged_and_odd_containers_refused(model, base):
    x, h0, c0, *_ = base
    for bad in ([[[1.0, 2.0, 3.0]], [[1.0]]], "abc", None, {"x": 1}):
        with pytest.raises(TypeError, match="x must be"):
            model(bad)
    with pytest.raises(TypeError, match="lengths"):
        model(x, lengths=[[1, 2], [3]])
    with pytest.raises(TypeError, match="hx"):
        model(x, (h0,))
    with pytest.raises(TypeError, match="hx"):
        model(x, h0)


@pytest.mark.parametrize("shape", [(0, B, NI), (T, 0, NI), (T, B, 0), (0, NI), (0,), (T, B, NI, 1), (), (T, B, NI + 1)])
def test_zero_size_and_wrong_rank_refused(model, shape):
    with pytest.raises(ValueError, match="x"):
        model(np.zeros(shape, np.float32))


def test_zero_size_state_and_lengths_refused(model, base):
    x, h0, c0, *_ = base
    with pytest.raises(ValueError, match="h0 has shape"):
        model(x, (np.zeros((2, 0, 2), np.float32), c0))
    with pytest.raises(ValueError, match="lengths has shape"):
        model(x, lengths=np.zeros(0, np.int64))
    for bad in ([0, 1, 1, 1], [7, 1, 1, 1], [-1, 1, 1, 1], [2**40, 1, 1, 1], [-(2**63), 1, 1, 1]):
        with pytest.raises(ValueError, match="lengths must satisfy"):
            model(x, lengths=np.array(bad, dtype=np.int64))
    with pytest.raises(ValueError, match="lengths must satisfy"):
        model(x, lengths=np.array([2**64 - 1, 1, 1, 1], dtype=np.uint64))


def test_huge_arrays_refused_without_copying(model):
    z = np.zeros((1, 1, NI), np.float32)
    tracemalloc.start()
    try:
        for shape, err, match in [
            ((2**31, 1, NI), ValueError, "int32"),  # T past int32: refused from the shape alone
            ((1, 2**31, NI), ValueError, "int32"),
            ((2**22, 2**10, NI), MemoryError, "GiB"),  # fits int32, but needs ~TiB of workspace
        ]:
            t0 = time.perf_counter()
            with pytest.raises(err, match=match):
                model(np.broadcast_to(z, shape))  # a view: 0 bytes behind up to 2**33 elements
            assert time.perf_counter() - t0 < 2.0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 50 << 20, f"{peak} bytes allocated while refusing"


def test_stream_inputs(model):
    s = model.stream(batch=2)
    rng = np.random.default_rng(3)
    xs = rng.standard_normal((5, 2, NI)).astype(np.float32)
    ref = [s.step(x) for x in xs]
    for conv in (strided, np.asfortranarray, unaligned, readonly, lambda a: a.astype(">f4"), lambda a: a.astype(np.float64), lambda a: a.tolist()):
        s.reset()
        for x, want in zip(xs, ref):
            assert np.array_equal(s.step(conv(x)), want)
    s1 = model.stream()
    y = s1.step(xs[0, 0])
    assert y.shape == (2,)
    for bad, err in ((np.zeros((2, NI), np.float32), ValueError), (np.zeros(NI + 1, np.float32), ValueError),
                     (np.zeros(NI, np.int32), TypeError), (np.zeros((1, 1, NI), np.float32), ValueError)):
        with pytest.raises(err, match="x_t"):
            s1.step(bad)
    with pytest.raises(TypeError, match="state"):
        s1.state = np.zeros(3)
    with pytest.raises(ValueError, match="h has shape"):
        s1.state = (np.zeros((2, 2, 2)), np.zeros((2, 1, 5)))


# ---- threads --------------------------------------------------------------------------------


def test_many_threads_one_model_give_serial_results(model):
    rng = np.random.default_rng(5)
    jobs = []
    for i in range(48):
        t, b = int(rng.integers(1, 40)), int(rng.integers(1, 6))
        x = rng.standard_normal((t, b, NI)).astype(np.float32)
        lengths = rng.integers(1, t + 1, size=b) if i % 2 else None
        jobs.append((x, lengths))
    serial = [model(x, lengths=lengths) for x, lengths in jobs]
    results: dict[int, object] = {}
    errors = []
    start = threading.Barrier(8)

    def worker(k):
        try:
            start.wait()
            for rep in range(3):
                for j in range(k, len(jobs), 8):
                    results[(j, rep)] = model(jobs[j][0], lengths=jobs[j][1])
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors, errors
    for (j, _), got in results.items():
        same(got, serial[j])
    assert len(results) == 3 * len(jobs)


def test_weight_sets_in_parallel(model):
    """with_weights models share one compiled module; threads using different sets do not mix."""
    models = [model.with_weights(lstmgen.random_weights(SPEC, seed=s)) for s in range(4)]
    x = np.random.default_rng(1).standard_normal((30, 3, NI)).astype(np.float32)
    serial = [m(x) for m in models]
    out = [None] * 16

    def run(i):
        out[i] = models[i % 4](x)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(16)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for i, got in enumerate(out):
        same(got, serial[i % 4])


def test_gil_is_released_during_the_c_call():
    spec = lstmgen.LSTMSpec(input_size=16, hidden_size=64)
    m = lstmgen.compile(spec, lstmgen.random_weights(spec), prefix="gil")
    x = np.random.default_rng(0).standard_normal((4000, 8, 16)).astype(np.float32)
    t0 = time.perf_counter()
    m(x)
    single = time.perf_counter() - t0
    reps = max(1, int(0.6 / max(single, 1e-3)))  # about 0.6 s of C in one Python call
    x = np.concatenate([x] * reps)
    done = threading.Event()
    span = {}

    def long_call():
        span["start"] = time.perf_counter()
        m(x)
        span["end"] = time.perf_counter()
        done.set()

    stamps = []
    th = threading.Thread(target=long_call)
    th.start()
    while not done.is_set():  # pure Python: runs only while the other thread does not hold the GIL
        stamps.append(time.perf_counter())
        time.sleep(0.001)
    th.join()
    inside = [s for s in stamps if span["start"] + 0.05 < s < span["end"] - 0.05]
    duration = span["end"] - span["start"]
    assert duration > 0.2, f"the call was too short to tell ({duration:.3f} s)"
    gaps = np.diff(inside) if len(inside) > 1 else np.array([duration])
    assert len(inside) > 20 and gaps.max() < 0.1, (
        f"Python ran {len(inside)} times during a {duration:.2f} s C call (largest gap {gaps.max():.3f} s): "
        "the GIL is held")


def test_stream_shared_by_threads_stays_consistent(model):
    """Calls on one Stream are serialised: 4 threads x 200 steps of the same input leave the state
    that 800 sequential steps leave (any interleaving of the C calls would corrupt it)."""
    x = np.random.default_rng(2).standard_normal((3, NI)).astype(np.float32)
    ref = model.stream(batch=3)
    for _ in range(800):
        ref.step(x)
    shared = model.stream(batch=3)

    def run():
        for _ in range(200):
            shared.step(x)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    h, c = shared.state
    rh, rc = ref.state
    assert np.array_equal(h, rh) and np.array_equal(c, rc)


def test_streams_per_thread_run_in_parallel(model):
    rng = np.random.default_rng(4)
    xs = rng.standard_normal((6, 100, 2, NI)).astype(np.float32)
    serial = []
    for k in range(6):
        s = model.stream(batch=2)
        serial.append(np.stack([s.step(x) for x in xs[k]]))
    got = [None] * 6

    def run(k):
        s = model.stream(batch=2)
        got[k] = np.stack([s.step(x) for x in xs[k]])

    threads = [threading.Thread(target=run, args=(k,)) for k in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    for k in range(6):
        assert np.array_equal(got[k], serial[k])
