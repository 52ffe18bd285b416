"""`make bench`: lstmgen against the alternatives on the five configs of issue 3, one thread.

For each config, in one interleaved run (round-robin over the peers, medians after warm-up):

    lstmgen C      <p>_forward timed inside C by benchmarks/harness.c (no Python), built from
                   the same generated sources and flags as the Python build
    lstmgen py     Model.__call__ (lstmgen.compile with its defaults: target native, math approx)
    numpy          a vectorized float32 numpy LSTM (one GEMM for the input part, then the steps)
    torch          torch.nn.LSTM in eval mode, torch.set_num_threads(1)
    onnxruntime    the torch model exported to ONNX, 1 intra-op thread (when it exports)
    lstmgen C <dt> <p>_forward in C as above with weights_dtype = float16, bfloat16 or int8 (the
                   weight matrices in that dtype, state and sums float32), one harness each
    torch qint8    torch.ao.quantization.quantize_dynamic(nn.Sequential(lstm), {nn.LSTM},
    torch float16  dtype=torch.qint8 / torch.float16)[0]: torch's dynamically quantised LSTM, 1 thread

and for the streaming configs the latency of one step: <p>_step in C (every weights_dtype),
Stream.step from Python, torch.nn.LSTMCell (one per layer) stepped from Python. FLOPs per layer,
direction, step and batch row: 2*4H*(I_k+R) + 2*P*H. The fp32 FMA peak of this core comes from
benchmarks/peak.c.

Errors: max_abs_diff_vs_lstmgen is each peer's output vs lstmgen's float32 Python model (do they
compute the same LSTM?); max_abs_err_vs_float64 is each peer's output vs reference.py, a float64
run of the float32-weight model (what a low-precision weight or an int8 activation costs). The
lstmgen C rows' outputs are read back from the harness itself (its `dump` command); a <p>_step row's
error is its dtype's forward error (the step computes the same bits, tests/test_weights_dtype.py).

    python benchmarks/bench.py            # everything (a few minutes); writes benchmarks/results.json
    python benchmarks/bench.py --quick    # few reps, for iterating; writes bench_out/results-quick.json
    python benchmarks/bench.py --configs kws,medium --peers lstmgen_c,torch
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # before numpy loads BLAS
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import contextlib  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import lstmgen  # noqa: E402
from lstmgen import build as lg_build  # noqa: E402
from lstmgen import reference  # noqa: E402
from lstmgen.api import schedule_for  # noqa: E402


@dataclass(frozen=True)
class Config:
    name: str
    inputs: int  # I
    H: int
    P: int
    L: int
    bidir: bool
    B: int
    T: int
    stream: bool = False

    @property
    def spec(self) -> lstmgen.LSTMSpec:
        return lstmgen.LSTMSpec(input_size=self.inputs, hidden_size=self.H, proj_size=self.P, num_layers=self.L,
                                bidirectional=self.bidir)

    @property
    def flops(self) -> int:
        return 2 * self.spec.macs_per_step() * self.T * self.B


CONFIGS = [
    Config("tiny_stream", 1, 16, 0, 1, False, 1, 4096, stream=True),
    Config("kws", 40, 64, 0, 2, False, 1, 100, stream=True),
    Config("medium", 128, 256, 0, 2, False, 1, 256, stream=True),  # streaming: the issue 15 step goal
    Config("large_bidir_proj", 256, 512, 128, 2, True, 1, 256),
    Config("batch", 256, 256, 0, 1, False, 32, 128),
]
BASE_PEERS = ("lstmgen_c", "lstmgen_py", "numpy", "torch", "onnxruntime")  # the summary table's columns
DTYPES = ("float16", "bfloat16", "int8")  # lstmgen's low-precision weights_dtype values
DTYPE_PEERS = tuple(f"lstmgen_c_{d}" for d in DTYPES)
TORCH_Q_PEERS = ("torch_qint8", "torch_float16")
PEERS = BASE_PEERS + DTYPE_PEERS + TORCH_Q_PEERS
STEP_PEERS = ("lstmgen_c_step", "stream_step", "torch_cell") + tuple(f"lstmgen_c_step_{d}" for d in DTYPES)
LABELS = {"lstmgen_c": "lstmgen C", "lstmgen_py": "lstmgen py", "numpy": "numpy", "torch": "torch 1t",
          "onnxruntime": "onnxruntime 1t", "lstmgen_c_step": "<p>_step (C)", "stream_step": "stream.step (py)",
          "torch_cell": "torch LSTMCell (py)", "torch_qint8": "torch qint8 1t", "torch_float16": "torch float16 1t",
          **{f"lstmgen_c_{d}": f"lstmgen C {d}" for d in DTYPES},
          **{f"lstmgen_c_step_{d}": f"<p>_step (C) {d}" for d in DTYPES}}
# (weights_dtype, lstmgen C peer, its <p>_step peer, the torch peer of that dtype) for the dtype tables
DTYPE_ROWS = (("float32", "lstmgen_c", "lstmgen_c_step", "torch"),
              ("float16", "lstmgen_c_float16", "lstmgen_c_step_float16", "torch_float16"),
              ("bfloat16", "lstmgen_c_bfloat16", "lstmgen_c_step_bfloat16", None),
              ("int8", "lstmgen_c_int8", "lstmgen_c_step_int8", "torch_qint8"))


def c_peer(dtype: str, step: bool = False) -> str:
    """The name of the lstmgen C peer (or its <p>_step peer) for one weights_dtype."""
    return ("lstmgen_c_step" if step else "lstmgen_c") + ("" if dtype == "float32" else f"_{dtype}")


# ---- peers --------------------------------------------------------------------------------------


def numpy_lstm(spec: lstmgen.LSTMSpec, weights: dict[str, np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """A vectorized float32 numpy LSTM for x (T, B, I): what a careful numpy user would write."""
    H, R, D = spec.hidden_size, spec.output_size, spec.num_directions
    cells = []
    for layer in range(spec.num_layers):
        for d in range(D):
            s = f"l{layer}" + ("_reverse" if d else "")
            cells.append((np.ascontiguousarray(weights[f"weight_ih_{s}"].T), np.ascontiguousarray(weights[f"weight_hh_{s}"].T),
                          weights[f"bias_ih_{s}"] + weights[f"bias_hh_{s}"],
                          np.ascontiguousarray(weights[f"weight_hr_{s}"].T) if spec.proj_size else None))

    def run(x: np.ndarray) -> np.ndarray:
        T, B, _ = x.shape
        inp = x
        for layer in range(spec.num_layers):
            outs = []
            for d in range(D):
                w_ih, w_hh, b, w_hr = cells[layer * D + d]
                gx = (inp.reshape(T * B, -1) @ w_ih + b).reshape(T, B, 4 * H)
                h = np.zeros((B, R), np.float32)
                c = np.zeros((B, H), np.float32)
                y = np.empty((T, B, R), np.float32)
                for t in (range(T - 1, -1, -1) if d else range(T)):
                    g = gx[t] + h @ w_hh
                    i = 1.0 / (1.0 + np.exp(-g[:, :H]))
                    f = 1.0 / (1.0 + np.exp(-g[:, H:2 * H]))
                    gg = np.tanh(g[:, 2 * H:3 * H])
                    o = 1.0 / (1.0 + np.exp(-g[:, 3 * H:]))
                    c = f * c + i * gg
                    h = o * np.tanh(c)
                    if w_hr is not None:
                        h = h @ w_hr
                    y[t] = h
                outs.append(y)
            inp = outs[0] if D == 1 else np.concatenate(outs, axis=2)
        return inp

    return run


class Harness:
    """benchmarks/harness.c built against the generated C of one config and weights_dtype, driven
    over a pipe."""

    def __init__(self, cfg: Config, workdir: str, model=None, x: np.ndarray | None = None,
                 weights_dtype: str = "float32"):
        spec = cfg.spec
        self.cfg = cfg
        self.src = src = os.path.join(workdir, cfg.name if weights_dtype == "float32" else f"{cfg.name}-{weights_dtype}")
        lstmgen.generate(spec, None, src, prefix="bench", target="native", math="approx", weights_dtype=weights_dtype)
        exe = os.path.join(src, "harness")
        cc = os.environ.get("CC", "cc")
        # int8 on integer dot products packs its matrices in groups of g k (K padded to a multiple of g)
        kgroup = schedule_for(spec, target="native", math="approx", weights_dtype=weights_dtype).kgroup
        cmd = [cc, *lg_build.compile_flags("native"), *(["-DHARNESS_INT8_SCALES"] if weights_dtype == "int8" else []),
               *([f"-DHARNESS_KGROUP={kgroup}"] if kgroup else []),
               "-I", src, os.path.join(HERE, "harness.c"), os.path.join(src, "bench.c"), "-lm", "-o", exe]
        subprocess.run(cmd, check=True)
        args = [exe, str(cfg.T), str(cfg.B)]
        if model is not None and x is not None:  # the very weights and input of the Python model
            if model.schedule.weights != weights_dtype:
                raise ValueError(f"the model holds {model.schedule.weights} weights, the harness reads {weights_dtype}")
            blob = os.path.join(src, "data.bin")
            with open(blob, "wb") as fh:
                fh.write(np.ascontiguousarray(x, np.float32).tobytes())
                for cell in model.packed_weights:  # each array in its own dtype, as the C struct types it
                    for arr in (cell.w_ih, cell.w_hh, cell.bias, cell.w_hr):
                        if arr is not None:
                            fh.write(np.ascontiguousarray(arr).tobytes())
                    if weights_dtype == "int8":
                        for arr in (cell.s_ih, cell.s_hh, cell.s_hr):
                            if arr is not None:
                                fh.write(np.ascontiguousarray(arr, np.float32).tobytes())
            args.append(blob)
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)

    def outputs(self) -> np.ndarray:
        """y of the last forward, read back from the harness: (T, B, D*R) float32."""
        path = os.path.join(self.src, "y.bin")
        self.ask(f"dump {path}")
        cfg = self.cfg
        return np.fromfile(path, np.float32).reshape(cfg.T, cfg.B, cfg.spec.num_directions * cfg.spec.output_size)

    def ask(self, line: str) -> list[float]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().split()
        if not answer or answer[-1] == "ERROR":
            raise RuntimeError(f"harness failed on {line!r}: {answer}")
        return [float(v) for v in answer]

    def close(self) -> None:
        try:
            self.ask("quit")
        except (RuntimeError, BrokenPipeError, ValueError):
            pass
        self.proc.wait(timeout=10)


def export_onnx(module, x_t) -> bytes:
    """torch.onnx.export (the TorchScript exporter: the dynamo one takes far longer and refuses the
    same models) with its chatter silenced, Python- and fd-level."""
    import torch

    buf = io.BytesIO()
    saved = [os.dup(1), os.dup(2)]
    with open(os.devnull, "w") as null, warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), \
            contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        os.dup2(null.fileno(), 1)
        os.dup2(null.fileno(), 2)
        try:
            torch.onnx.export(module, (x_t,), buf, input_names=["x"], output_names=["y", "h_n", "c_n"], dynamo=False,
                              dynamic_axes={"x": {0: "T", 1: "B"}})
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
    return buf.getvalue()


def torch_quantized(torch, lstm, dtype):
    """torch's dynamically quantised LSTM of `lstm` (quantize_dynamic swaps children only, so the
    LSTM goes in a Sequential: quantize_dynamic(lstm, ...) would give back the float LSTM itself)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notice
        q = torch.ao.quantization.quantize_dynamic(torch.nn.Sequential(lstm), {torch.nn.LSTM}, dtype=dtype)[0]
    if not type(q).__module__.startswith("torch.ao.nn.quantized.dynamic"):
        raise RuntimeError(f"quantize_dynamic left a {type(q).__name__}")
    return q.eval()


# ---- measuring ----------------------------------------------------------------------------------


def timed_calls(fn: Callable[[], object], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter_ns()
        fn()
        out.append(float(time.perf_counter_ns() - t0))
    return out


def measure_config(cfg: Config, peers: tuple[str, ...], quick: bool, workdir: str, log, rounds: int | None = None,
                   seconds: float | None = None) -> dict:
    spec = cfg.spec
    weights = lstmgen.random_weights(spec, seed=0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((cfg.T, cfg.B, cfg.inputs)).astype(np.float32)
    calls: dict[str, Callable[[], object]] = {}
    outputs: dict[str, np.ndarray] = {}
    notes: dict[str, str] = {}
    cleanup = []

    model = lstmgen.compile(spec, weights, prefix="bench")
    ref = model(x)[0]
    ref64 = reference.lstm_forward(spec, weights, x)[0]  # float64, the float32 weights: the error's origin
    c_outputs: dict[str, np.ndarray] = {}  # lstmgen C peers' y, read back from their harness
    if "lstmgen_py" in peers:
        calls["lstmgen_py"] = lambda: model(x)
        outputs["lstmgen_py"] = ref
    harnesses: dict[str, Harness] = {}  # weights_dtype -> its harness
    for dtype in ("float32", *DTYPES):
        if not (c_peer(dtype) in peers or (cfg.stream and c_peer(dtype, step=True) in peers)):
            continue
        m = model if dtype == "float32" else lstmgen.compile(spec, weights, prefix="bench", weights_dtype=dtype)
        want = ref if dtype == "float32" else m(x)[0]
        harness = Harness(cfg, workdir, m, x, weights_dtype=dtype)
        cleanup.append(harness.close)
        harnesses[dtype] = harness
        harness.ask("forward 1")
        checksum = harness.ask("check")[0]
        if abs(checksum - float(want.astype(np.float64).sum())) > 1e-3 * max(1.0, abs(checksum)):
            raise RuntimeError(f"{cfg.name} ({dtype}): the C harness computes {checksum}, the Python model {want.sum()}")
        c_outputs[c_peer(dtype)] = harness.outputs()
        if c_peer(dtype) in peers:
            calls[c_peer(dtype)] = harness  # type: ignore[assignment]
    if "numpy" in peers:
        np_run = numpy_lstm(spec, weights)
        outputs["numpy"] = np_run(x)
        calls["numpy"] = lambda: np_run(x)
    torch = None
    if "torch" in peers or "onnxruntime" in peers or "torch_cell" in peers:
        try:
            import torch
        except ImportError:
            notes["torch"] = "torch not installed"
    if torch is not None:
        torch.set_num_threads(1)
        lstm = torch.nn.LSTM(cfg.inputs, cfg.H, num_layers=cfg.L, proj_size=cfg.P, bidirectional=cfg.bidir).eval()
        lstm.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()})
        xt = torch.from_numpy(x)
        if "torch" in peers:
            def torch_call():
                with torch.inference_mode():
                    return lstm(xt)
            outputs["torch"] = torch_call()[0].numpy()
            calls["torch"] = torch_call
        if "onnxruntime" in peers:
            try:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = 1
                opts.inter_op_num_threads = 1
                sess = ort.InferenceSession(export_onnx(lstm, xt), opts, providers=["CPUExecutionProvider"])
                feed = {"x": x}
                outputs["onnxruntime"] = sess.run(None, feed)[0]
                calls["onnxruntime"] = lambda: sess.run(None, feed)
            except ImportError:
                notes["onnxruntime"] = "onnxruntime not installed"
            except Exception as exc:  # the exporter refuses some models (e.g. proj_size)
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                notes["onnxruntime"] = "cannot export: " + first.split(". ")[0].replace("Unsupported: ", "")[:80]
        for peer, qdtype in (("torch_qint8", torch.qint8), ("torch_float16", torch.float16)):
            if peer not in peers:
                continue
            try:
                qlstm = torch_quantized(torch, lstm, qdtype)
                with torch.inference_mode():
                    outputs[peer] = qlstm(xt)[0].numpy()
            except Exception as exc:  # torch's dynamic LSTM refuses some models (e.g. proj_size)
                first = (str(exc).splitlines() or [type(exc).__name__])[0]
                notes[peer] = ("torch's dynamic LSTM has no proj_size" if cfg.P else "fails: " + first[:80])
                continue

            def q_call(qlstm=qlstm):
                with torch.inference_mode():
                    return qlstm(xt)
            calls[peer] = q_call
    errors = {k: float(np.abs(np.asarray(v).reshape(ref.shape) - ref).max()) for k, v in outputs.items()}
    errors.update({k: float(np.abs(v - ref).max()) for k, v in c_outputs.items()})
    errors64 = {k: float(np.abs(np.asarray(v, np.float64).reshape(ref64.shape) - ref64).max())
                for k, v in {**outputs, **c_outputs}.items()}

    # step latency peers
    step_calls: dict[str, Callable[[], object]] = {}
    if cfg.stream:
        if "stream_step" in peers:
            stream = model.stream(batch=cfg.B)
            x_t = x[0]
            step_calls["stream_step"] = lambda: stream.step(x_t)
        for dtype, harness in harnesses.items():
            if c_peer(dtype, step=True) in peers:
                step_calls[c_peer(dtype, step=True)] = harness  # type: ignore[assignment]
                errors64[c_peer(dtype, step=True)] = errors64[c_peer(dtype)]  # the same bits as forward
        if "torch_cell" in peers and torch is not None:
            cells = []
            for layer in range(cfg.L):
                cell = torch.nn.LSTMCell(cfg.inputs if layer == 0 else cfg.H, cfg.H).eval()
                cell.load_state_dict({n.replace(f"_l{layer}", ""): torch.from_numpy(weights[n]) for n in weights if n.endswith(f"_l{layer}")})
                cells.append(cell)
            state = [(torch.zeros(cfg.B, cfg.H), torch.zeros(cfg.B, cfg.H)) for _ in range(cfg.L)]
            xt0 = torch.from_numpy(x[0])

            def cell_step():
                with torch.inference_mode():
                    inp = xt0
                    for layer, cell in enumerate(cells):
                        state[layer] = cell(inp, state[layer])
                        inp = state[layer][0]
                    return inp
            step_calls["torch_cell"] = cell_step

    # budget: rounds x reps per peer, so that each peer gets ~`per_peer` seconds
    est = {}
    for name, fn in calls.items():
        if isinstance(fn, Harness):
            est[name] = min(fn.ask("forward 3")) * 1e-9
        else:
            est[name] = min(timed_calls(fn, 3)) * 1e-9
    per_peer = seconds if seconds is not None else (0.6 if quick else 5.0)
    rounds = rounds or (3 if quick else 10)
    reps = {name: max(1, int(per_peer / rounds / max(t, 1e-6))) for name, t in est.items()}
    reps = {k: min(v, 400) for k, v in reps.items()}
    samples: dict[str, list[float]] = {k: [] for k in calls}
    step_samples: dict[str, list[float]] = {k: [] for k in step_calls}
    # warm-up
    for name, fn in calls.items():
        if isinstance(fn, Harness):
            fn.ask(f"forward {reps[name]}")
        else:
            timed_calls(fn, reps[name])
    step_n = 100 if quick else 1000
    for fn in step_calls.values():  # warm-up
        if isinstance(fn, Harness):
            fn.ask("step 10 1000")
        else:
            timed_calls(fn, step_n)
    order = list(calls)
    step_order = list(step_calls)
    for r in range(rounds):
        rot = order[r % len(order):] + order[:r % len(order)] if order else []
        for name in rot:
            fn = calls[name]
            if isinstance(fn, Harness):
                samples[name] += fn.ask(f"forward {reps[name]}")
            else:
                samples[name] += timed_calls(calls[name], reps[name])
        srot = step_order[r % len(step_order):] + step_order[:r % len(step_order)] if step_order else []
        for name in srot:
            fn = step_calls[name]
            if isinstance(fn, Harness):
                step_samples[name] += fn.ask(f"step {step_n // 10} 100")
            else:
                step_samples[name] += timed_calls(step_calls[name], step_n)
    for fn in cleanup:
        fn()
    result = dict(config=cfg.__dict__, flops=cfg.flops, notes=notes, max_abs_diff_vs_lstmgen=errors,
                  max_abs_err_vs_float64=errors64,
                  weight_bytes={dtype: _weight_bytes(spec, dtype) for dtype in ("float32", *DTYPES)},
                  forward_ms={k: float(np.median(v)) * 1e-6 for k, v in samples.items()},
                  forward_ms_min={k: float(np.min(v)) * 1e-6 for k, v in samples.items()},
                  samples={k: len(v) for k, v in samples.items()},
                  step_us={k: float(np.median(v)) * 1e-3 for k, v in step_samples.items()},
                  step_us_min={k: float(np.min(v)) * 1e-3 for k, v in step_samples.items()})
    log(f"  {cfg.name}: " + ", ".join(f"{LABELS[k]} {v:.3f} ms" for k, v in result["forward_ms"].items())
        + ("; " + ", ".join(f"{LABELS[k]} {v:.3f} us" for k, v in result["step_us"].items()) if step_samples else ""))
    return result


def _weight_bytes(spec: lstmgen.LSTMSpec, dtype: str) -> int:
    """Bytes of the weight matrices W_ih, W_hh, W_hr in dtype, with int8's float32 row scales."""
    size = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}[dtype]
    total = 0
    for name, shape in spec.weight_shapes().items():
        if name.startswith(("weight_ih_", "weight_hh_", "weight_hr_")):
            total += size * int(np.prod(shape)) + (4 * shape[0] if dtype == "int8" else 0)
    return total


def measure_swap(quick: bool, seconds: float | None, log) -> dict | None:
    """A torch model (LSTM(40, 64, 2 layers) + Linear(64, 12) on every step, B = 1, T = 100) before
    and after `net.lstm = lstmgen.compile(net.lstm).as_torch()`, 1 thread, interleaved rounds."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    torch.manual_seed(0)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = torch.nn.LSTM(40, 64, num_layers=2, batch_first=True)
            self.fc = torch.nn.Linear(64, 12)

        def forward(self, x):
            return self.fc(self.lstm(x)[0])

    before = Net().eval()
    after = Net().eval()
    after.load_state_dict(before.state_dict())
    after.lstm = lstmgen.compile(after.lstm).as_torch()
    x = torch.randn(1, 100, 40)
    with torch.inference_mode():
        diff = float((before(x) - after(x)).abs().max())
        per = seconds or (0.3 if quick else 3.0)
        times: dict[str, list[float]] = {"torch": [], "swapped": []}
        for _ in range(3 if quick else 10):
            for name, net in (("torch", before), ("swapped", after)):
                n = max(5, int(per / 10 / max(1e-6, timed_calls(lambda net=net: net(x), 1)[0] * 1e-9)))
                times[name] += timed_calls(lambda net=net: net(x), n)
    ms = {k: float(np.median(v)) / 1e6 for k, v in times.items()}
    log(f"swap: torch {ms['torch']:.3g} ms, after the swap {ms['swapped']:.3g} ms (max abs diff {diff:.2g})")
    return dict(model="LSTM(40, 64, num_layers=2, batch_first=True) + Linear(64, 12), B=1, T=100", ms=ms, max_abs_diff=diff)


def measure_peak(workdir: str) -> dict:
    exe = os.path.join(workdir, "peak")
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-march=native", os.path.join(HERE, "peak.c"), "-o", exe], check=True)
    return json.loads(subprocess.run([exe], check=True, capture_output=True, text=True).stdout)


# ---- report -------------------------------------------------------------------------------------


def summary(results: list[dict], peak: float) -> str:
    """One row per config: every peer's median ms, lstmgen's GFLOP/s and share of peak, and how many
    times faster lstmgen (in C) is than each of the others."""
    others = [p for p in BASE_PEERS if p not in ("lstmgen_c", "lstmgen_py")]
    head = ["config", "lstmgen C ms", "lstmgen py ms", *(f"{LABELS[p]} ms" for p in others), "GFLOP/s (C)", "% of peak",
            *(f"x vs {LABELS[p]}" for p in others)]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for res in results:
        ms, base = res["forward_ms"], res["forward_ms"].get("lstmgen_c")
        cells = [res["config"]["name"]]
        cells += [f"{ms[p]:.3f}" if p in ms else "-" for p in ("lstmgen_c", "lstmgen_py", *others)]
        gf = res["flops"] / (base * 1e-3) / 1e9 if base else 0.0
        cells += [f"{gf:.1f}" if base else "-", f"{100 * gf / peak:.0f}%" if base else "-"]
        cells += [f"{ms[p] / base:.2f}" if base and p in ms else "n/a" for p in others]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio(r: float) -> str:
    return f"{r:.2f}" if r >= 0.1 else f"{r:.3f}"


def _err(res: dict, peer: str | None) -> str:
    e = res.get("max_abs_err_vs_float64", {}).get(peer) if peer else None
    return "-" if e is None else f"{e:.1e}"


def dtype_tables(results: list[dict]) -> str:
    """Per config and weights_dtype: lstmgen C's median next to its float32 build and to torch's
    model of that dtype (torch fp32, quantize_dynamic float16 / qint8), with every row's error vs
    the float64 run of the float32-weight model; then the same for <p>_step."""
    lines = ["| config | weights | KiB | lstmgen C ms | x lstmgen float32 | error | torch peer | torch ms | error | "
             "lstmgen / torch |", "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for res in results:
        ms, name = res["forward_ms"], res["config"]["name"]
        base = ms.get("lstmgen_c")
        for dtype, peer, _, tpeer in DTYPE_ROWS:
            if peer not in ms and (tpeer is None or tpeer not in ms):
                continue
            size = res.get("weight_bytes", {}).get(dtype)  # the weight matrices (and int8's scales)
            cells = [name, dtype, (f"{size / 1024:.1f}" if size < 102400 else f"{size / 1024:.0f}") if size else "-"]
            cells += [f"{ms[peer]:.3f}" if peer in ms else "-",
                      f"{ms[peer] / base:.2f}" if peer in ms and base else "-", _err(res, peer)]
            if tpeer is None:
                cells += ["-", "-", "-", "-"]
            elif tpeer in ms:
                cells += [LABELS[tpeer], f"{ms[tpeer]:.3f}", _err(res, tpeer),
                          _ratio(ms[peer] / ms[tpeer]) if peer in ms else "-"]
            else:
                cells += [LABELS[tpeer], res["notes"].get(tpeer, "-"), "-", "-"]
            lines.append("| " + " | ".join(cells) + " |")
    steps = [r for r in results if any(p in r["step_us"] for _, _, p, _ in DTYPE_ROWS)]
    if steps:
        lines += ["", "| config | weights | <p>_step us (median) | x float32 step | error |", "|---|---|---:|---:|---:|"]
        for res in steps:
            us, base = res["step_us"], res["step_us"].get("lstmgen_c_step")
            for dtype, _, speer, _ in DTYPE_ROWS:
                if speer in us:
                    lines.append(f"| {res['config']['name']} | {dtype} | {us[speer]:.3f} | "
                                 f"{us[speer] / base:.2f} | {_err(res, speer)} |" if base else
                                 f"| {res['config']['name']} | {dtype} | {us[speer]:.3f} | - | {_err(res, speer)} |")
    return "\n".join(lines)


def tables(results: list[dict], peak: float) -> str:
    lines = [f"fp32 FMA peak of this core (benchmarks/peak.c): {peak:.0f} GFLOP/s", "", summary(results, peak), ""]
    lines.append("| config | peer | ms (median) | GFLOP/s | % of peak | peer time / lstmgen C |")
    lines.append("|---|---|---:|---:|---:|---:|")
    for res in results:
        name, ms, base = res["config"]["name"], res["forward_ms"], res["forward_ms"].get("lstmgen_c")
        for peer in PEERS:
            if peer in ms:
                gf = res["flops"] / (ms[peer] * 1e-3) / 1e9
                ratio = f"{ms[peer] / base:.2f}x" if base else ""
                lines.append(f"| {name} | {LABELS[peer]} | {ms[peer]:.3f} | {gf:.1f} | {100 * gf / peak:.1f}% | {ratio} |")
            elif peer in res["notes"]:
                lines.append(f"| {name} | {LABELS[peer]} | {res['notes'][peer]} | | | |")
    steps = [r for r in results if r["step_us"]]
    if steps:
        lines += ["", "| config | streaming, one step | us (median) | ns | peer time / <p>_step |", "|---|---|---:|---:|---:|"]
        for res in steps:
            us, base = res["step_us"], res["step_us"].get("lstmgen_c_step")
            for peer in STEP_PEERS:
                if peer in us:
                    ratio = f"{us[peer] / base:.1f}x" if base else ""
                    lines.append(f"| {res['config']['name']} | {LABELS[peer]} | {us[peer]:.3f} | {1000 * us[peer]:.0f} | {ratio} |")
    low = dtype_tables(results)
    if low.count("\n") > 1:  # a row beyond the header
        lines += ["", "Weights dtype (error: max abs vs a float64 run of the float32-weight model; a <p>_step "
                  "row's is its dtype's forward error, the same bits):", "", low]
    return "\n".join(lines)


def pin_cpu(cpu: int | None) -> int | None:
    """Run every peer on one CPU: the Python peers share this process, the C harness and the peak
    probe are its children and inherit the pinning. Unpinned, the harness may land on the other
    core (on a shared VM that one can be busier), which skewed lstmgen C against lstmgen py by up
    to 20% in either direction."""
    if cpu == -1 or not hasattr(os, "sched_setaffinity"):
        return None
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if cpu is None else cpu
    if cpu not in allowed:
        raise SystemExit(f"--cpu {cpu}: this process may run on CPUs {allowed} only")
    os.sched_setaffinity(0, {cpu})
    return cpu


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few reps (seconds, not minutes): for iterating")
    ap.add_argument("--configs", default=",".join(c.name for c in CONFIGS), help="comma-separated config names")
    ap.add_argument("--peers", default=",".join(PEERS + STEP_PEERS), help="comma-separated peers")
    ap.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3 quick, 10 full)")
    ap.add_argument("--seconds", type=float, default=None, help="time per peer and config (default 0.6 quick, 5 full)")
    ap.add_argument("--out", default=None, help="JSON results file (default benchmarks/results.json, "
                    "bench_out/results-quick.json with --quick)")
    ap.add_argument("--cpu", type=int, default=None, help="pin this process, the C harness and the peak probe to this "
                    "CPU (default: the last one allowed; -1: no pinning)")
    ap.add_argument("--no-swap", dest="swap", action="store_false",
                    help="skip the drop-in row (a torch LSTM + Linear model before and after model.as_torch())")
    args = ap.parse_args(argv)
    cpu = pin_cpu(args.cpu)
    names = args.configs.split(",")
    unknown = sorted(set(names) - {c.name for c in CONFIGS})
    bad_peers = sorted(set(args.peers.split(",")) - set(PEERS + STEP_PEERS))
    if unknown or bad_peers:
        ap.error(f"unknown config(s) {unknown} or peer(s) {bad_peers}")
    peers = tuple(args.peers.split(","))
    out = args.out or (os.path.join(ROOT, "bench_out", "results-quick.json") if args.quick else os.path.join(HERE, "results.json"))
    os.environ.setdefault("LSTMGEN_CACHE_DIR", os.path.join(ROOT, "bench_out", "cache"))
    t_start = time.time()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    workdir = tempfile.mkdtemp(prefix="lstmgen-bench-")
    try:
        peak = measure_peak(workdir)
        log(f"peak: {peak['gflops']:.1f} GFLOP/s ({peak['isa']})")
        results = [measure_config(c, peers, args.quick, workdir, log, args.rounds, args.seconds)
                   for c in CONFIGS if c.name in names]
        swap = measure_swap(args.quick, args.seconds, log) if args.swap else None
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    text = tables(results, peak["gflops"])
    if swap is not None:
        t, a = swap["ms"]["torch"], swap["ms"]["swapped"]
        text += ("\n\n| drop-in swap (1 thread) | torch ms | after `net.lstm = lstmgen.compile(net.lstm).as_torch()` ms | "
                 f"speedup |\n|---|---:|---:|---:|\n| {swap['model']} | {t:.3g} | {a:.3g} | {t / a:.1f}x |")
    print(text)
    info = dict(machine=platform.processor() or platform.machine(), cpu=_cpu_name(), python=platform.python_version(),
                numpy=np.__version__, lstmgen=lstmgen.__version__, isa=lstmgen.kernels.native_isa(),
                quick=args.quick, seconds=round(time.time() - t_start, 1), peak=peak, pinned_cpu=cpu,
                command="python benchmarks/bench.py" + (" --quick" if args.quick else ""))
    for mod in ("torch", "onnxruntime"):
        try:
            info[mod] = __import__(mod).__version__
        except ImportError:
            pass
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w", encoding="utf-8") as fh:
        json.dump(dict(info=info, results=results, swap=swap, table=text), fh, indent=1)
        fh.write("\n")
    log(f"wrote {out} ({info['seconds']} s)")
    return 0


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    sys.exit(main())
