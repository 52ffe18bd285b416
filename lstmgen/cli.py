"""Command line: `lstmgen generate | report | inspect | bench | demo` over the same functions as the Python API.

Input: argv. Output: files written / text printed; exit status 0 on success, 2 on a user error
(the message names what is wrong), never a traceback for bad input.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import __version__
from .api import as_spec, compile, generate, schedule_for
from .build import BuildError
from .importers import from_state_dict, load_weights
from .spec import LSTMSpec
from .weights import random_weights

_STATE_FILES = (".pt", ".pth", ".ckpt", ".tar", ".npz")  # a state_dict (or checkpoint) as the spec source


def _spec_and_weights(args: argparse.Namespace) -> tuple[LSTMSpec, dict[str, Any] | None]:
    """The spec and weights the command works on, read with the library's own loaders: a JSON/TOML
    spec (+ --weights), an .onnx model, or a state_dict file whose keys give the spec."""
    source = str(args.spec)
    state_prefix = getattr(args, "state_prefix", None)
    batch_first = getattr(args, "batch_first", False)
    weights_path = getattr(args, "weights", None)
    if source.endswith(_STATE_FILES):
        if weights_path:
            raise ValueError(f"{source}: a state_dict file is the spec and its weights at once; drop --weights")
        return _cli_prefix(from_state_dict, source, batch_first=batch_first, prefix=state_prefix)
    if batch_first:
        raise ValueError("--batch-first only applies to a state_dict spec source (.pt/.pth/.ckpt/.npz); a "
                         "JSON/TOML spec says batch_first itself, an .onnx model has its layout")
    if source.endswith(".onnx"):  # an ONNX model carries its spec and its weights
        from .onnx import from_onnx

        if weights_path:
            raise ValueError(f"{source}: an .onnx model carries its own weights; drop --weights")
        if state_prefix is not None:
            raise ValueError("--state-prefix chooses the LSTM's keys in a state_dict; an .onnx model has none")
        return from_onnx(source)
    spec = as_spec(source)
    if state_prefix is not None and not weights_path:
        raise ValueError("--state-prefix chooses the LSTM's keys in a state_dict: give it with --weights or a "
                         "state_dict spec source")
    weights = _cli_prefix(load_weights, weights_path, prefix=state_prefix) if weights_path else None
    return spec, weights


def _cli_prefix(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """fn(...), with the library's advice to pass prefix= spelled as the CLI's --state-prefix."""
    try:
        return fn(*args, **kwargs)
    except ValueError as exc:
        raise ValueError(re.sub(r"\bprefix=('[^']*')?", lambda m: f"--state-prefix {m[1] or 'PREFIX'}", str(exc))) from None


def _source_args(p: argparse.ArgumentParser, weights: bool = True) -> None:
    p.add_argument("spec", help="spec file (.json or .toml), an ONNX model (.onnx, weights included), or a torch "
                                "state_dict / checkpoint (.pt, .pth, .ckpt, .npz: spec inferred from its keys)")
    if weights:
        p.add_argument("--weights", help="weights for a .json/.toml spec: .npz, or .pt/.pth/.ckpt with torch "
                                         "(a state_dict, or a checkpoint holding one)")
    p.add_argument("--state-prefix", metavar="PREFIX", default=None,
                   help="the LSTM's key prefix in the state_dict, e.g. 'encoder.' (needed when it holds several LSTMs)")
    p.add_argument("--batch-first", action="store_true",
                   help="with a state_dict spec source: the model takes (batch, time, features) input "
                        "(a state_dict cannot say; default time-major)")


def _schedule_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--time-loop", choices=["looped", "unrolled"], default="looped", help="emit the time loop looped or fully unrolled")
    p.add_argument("--seq-len", type=int, default=None, help="fixed sequence length (required for --time-loop unrolled)")
    p.add_argument("--chunk", type=int, default=0, help="time-chunked schedule with K-step windows (unidirectional only; 0 = whole sequence)")
    p.add_argument("--weights-dtype", choices=["float32", "float16", "bfloat16", "int8"], default="float32",
                   help="storage of the weight matrices (state and sums stay float32; int8: a float32 scale per row)")


_log = logging.getLogger("lstmgen")
_BENCH_FLOATS = 1 << 28  # input + output floats a `lstmgen bench` call may allocate (1 GiB)


def cmd_generate(args: argparse.Namespace) -> int:
    spec, weights = _spec_and_weights(args)
    if args.embedded:
        from .embedded import generate_embedded

        if weights is None:
            raise ValueError("--embedded needs --weights: they are compiled into <prefix>_weights.c")
        if args.target != "portable":
            raise ValueError("--embedded writes portable C99 for any core; leave out --target")
        _log.info("writing the embedded folder %s (the self-test's goldens come from the numpy reference)", args.out)
        paths = generate_embedded(spec, weights, args.out, prefix=args.prefix, max_batch=args.max_batch,
                                  seq_len=args.seq_len, chunk=args.chunk or None, time_loop=args.time_loop,
                                  math=args.math, selftest=not args.no_selftest, tolerance=args.tolerance,
                                  allow_nonfinite=args.allow_nonfinite, force=args.force, weights_dtype=args.weights_dtype)
        for path in paths:
            print(path)
        return 0
    if args.max_batch != 1 or args.no_selftest or args.tolerance is not None:
        raise ValueError("--max-batch, --no-selftest and --tolerance only apply with --embedded")
    paths = generate(spec, weights, args.out, prefix=args.prefix, time_loop=args.time_loop,
                     seq_len=args.seq_len, chunk=args.chunk, target=args.target, math=args.math,
                     allow_nonfinite=args.allow_nonfinite, force=args.force, weights_dtype=args.weights_dtype)
    for path in paths:
        print(path)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .embedded import CPU_FLAGS, report

    spec, weights = _spec_and_weights(args)
    cpus = tuple(args.cpu) if args.cpu else tuple(CPU_FLAGS)
    if not args.no_measure:
        _log.info("cross-compiling for %s and measuring code size and stack", ", ".join(cpus))
    print(report(spec, weights, prefix=args.prefix, max_batch=args.max_batch, seq_len=args.seq_len,
                 chunk=args.chunk or None, time_loop=args.time_loop, math=args.math, cpus=cpus,
                 weights_dtype=args.weights_dtype,
                 measure_code=not args.no_measure))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    if args.graph:  # the ONNX file's own tensors and ops, to pick names for import_onnx(inputs=, outputs=)
        if not str(args.spec).endswith(".onnx"):
            raise ValueError("--graph lists an ONNX model's tensors: give a .onnx file")
        from .onnx import describe_graph

        print(describe_graph(args.spec))
        return 0
    if str(args.spec).endswith(".onnx"):
        from .onnx import import_onnx

        if args.batch_first or args.state_prefix is not None:
            raise ValueError("--batch-first and --state-prefix apply to a state_dict spec source, not to an .onnx model")

        imported = import_onnx(args.spec)
        spec = imported.spec
        if not args.dot:
            print(imported.describe())
    else:
        spec = _spec_and_weights(args)[0]
    program = schedule_for(spec, time_loop=args.time_loop, seq_len=args.seq_len, chunk=args.chunk,
                           target=args.target, math=args.math, weights_dtype=args.weights_dtype)
    if args.dot:
        print(to_dot(program))
    else:
        print(program)
        print(program.describe_plan())
        print(f"parameters: {spec.num_parameters}; MACs per step and batch row: {spec.macs_per_step()}")
    return 0


def to_dot(program) -> str:
    """Graphviz text: buffers as boxes, ops as ellipses. Names are our own identifiers only."""
    lines = ["digraph lstmgen {", "  rankdir=LR;", "  node [fontname=Helvetica];"]
    for b in program.buffers:
        if b.role in ("input", "output") or b.row_floats:
            lines.append(f'  "{b.name}" [shape=box label="{b.name}\\n[{", ".join(b.shape)}]"];')
    for i, op in enumerate(program.ops):
        kind = type(op).__name__
        node = f"op{i}"
        if kind == "Head":
            lines += [f'  {node} [shape=ellipse label="Head"];', f'  "{op.src}" -> {node};', f'  {node} -> "{op.dst}";']
            continue
        lines.append(f'  {node} [shape=ellipse label="{kind}\\nl{op.layer}d{op.direction}"];')
        if kind == "InputProjection":
            lines += [f'  "{op.src}" -> {node};', f'  {node} -> "{op.dst}";']
        else:
            lines += [f'  "{op.gates_in}" -> {node};', f'  {node} -> "{op.dst}";']
    lines.append("}")
    return "\n".join(lines)


def _median_ms(fn, seconds: float) -> float:
    """Median wall time of fn() in ms: 3 warm-up calls, then calls until `seconds` pass (at least 5)."""
    import time

    for _ in range(3):
        fn()
    times: list[float] = []
    end = time.perf_counter() + seconds
    while len(times) < 5 or time.perf_counter() < end:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def cmd_bench(args: argparse.Namespace) -> int:
    """Time this spec's compiled model on this machine, next to torch.nn.LSTM (1 thread) when
    installed. The full comparison (numpy, onnxruntime, a C-only harness, % of peak) is
    `make bench` in a checkout."""
    spec, weights = _spec_and_weights(args)
    T, B = args.steps, args.batch
    if T < 1 or B < 1:
        raise ValueError(f"--steps and --batch must be >= 1, got {T} and {B}")
    if args.seconds <= 0:
        raise ValueError(f"--seconds must be > 0, got {args.seconds}")
    floats = T * B * (spec.input_size + spec.num_directions * spec.output_size)
    if floats > _BENCH_FLOATS:
        raise ValueError(f"--steps {T} x --batch {B} needs {4 * floats / 2**30:.3g} GiB of input and output; "
                         f"a benchmark is capped at {4 * _BENCH_FLOATS / 2**30:.0f} GiB (lower --steps or --batch)")
    weights = weights if weights is not None else random_weights(spec, seed=0)
    _log.info("compiling %s (target=%s, math=%s)", spec.summary(), args.target, args.math)
    model = compile(spec, weights, target=args.target, math=args.math, time_loop=args.time_loop,
                    seq_len=args.seq_len, chunk=args.chunk, weights_dtype=args.weights_dtype)
    _log.info("timing for about %g s per peer", args.seconds)
    x = np.random.default_rng(0).standard_normal((B, T, spec.input_size) if spec.batch_first else (T, B, spec.input_size))
    x = x.astype(np.float32)
    flops = 2.0 * spec.macs_per_step() * T * B
    rows = [("lstmgen model(x)", _median_ms(lambda: model(x), args.seconds))]
    note = ""
    try:
        import torch
    except ImportError:
        torch = None
        note = "torch not installed: no torch.nn.LSTM row"
    if torch is not None and not spec.is_torch_cell:
        torch, note = None, "the spec uses ONNX cell extras torch.nn.LSTM does not have: no torch row"
    if torch is not None and spec.head:
        torch, note = None, "the spec has a head, which a bare torch.nn.LSTM does not run: no torch row"
    if torch is not None:
        torch.set_num_threads(1)
        lstm = torch.nn.LSTM(spec.input_size, spec.hidden_size, spec.num_layers, bias=spec.bias,
                             batch_first=spec.batch_first, bidirectional=spec.bidirectional, proj_size=spec.proj_size).eval()
        lstm.load_state_dict({k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in weights.items()})
        t_axis = 1 if spec.batch_first else 0
        # a reverse spec (ONNX direction="reverse") is torch's forward LSTM run on the time-flipped input
        xt = torch.from_numpy(np.ascontiguousarray(np.flip(x, t_axis)) if spec.reverse else x)
        with torch.inference_mode():
            ty = lstm(xt)[0].numpy()
            ty = np.flip(ty, t_axis) if spec.reverse else ty
            diff = float(np.abs(ty - model(x)[0]).max())

            def run_torch():
                with torch.inference_mode():
                    lstm(xt)
            rows.append(("torch.nn.LSTM, 1 thread", _median_ms(run_torch, args.seconds)))
        note = f"max abs difference lstmgen vs torch: {diff:.2g}"
    print(f"{spec.summary()}; x {tuple(x.shape)}; {model.program.schedule}")
    print()
    print("| peer | ms (median) | GFLOP/s | time / lstmgen |")
    print("|---|---:|---:|---:|")
    for name, ms in rows:
        print(f"| {name} | {ms:.4g} | {flops / ms / 1e6:.3g} | {ms / rows[0][1]:.2f}x |")
    if model.streams:
        stream = model.stream(batch=B)
        x_t = x[:, 0] if spec.batch_first else x[0]
        print(f"\nstream.step (one step, B = {B}): {_median_ms(lambda: stream.step(x_t), args.seconds / 2) * 1e3:.3g} us")
    if note:
        print(note)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Generate C for an example, build it, run it, compare with the numpy golden."""
    from . import reference

    spec = LSTMSpec(input_size=40, hidden_size=64, num_layers=2, bidirectional=True, proj_size=16)
    weights = random_weights(spec, seed=0)
    paths = generate(spec, weights, args.out, prefix="demo")
    print(f"spec: {spec.summary()} ({spec.num_parameters} parameters)")
    print("standalone C written to:")
    for p in paths:
        print(f"  {p}")
    _log.info("compiling the example with cffi")
    model = compile(spec, weights, prefix="demo")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((50, 3, 40)).astype(np.float32)
    h0 = rng.standard_normal((4, 3, 16)).astype(np.float32)
    c0 = rng.standard_normal((4, 3, 64)).astype(np.float32)
    lengths = np.array([50, 31, 7])
    out, (h_n, c_n) = model(x, (h0, c0), lengths=lengths)
    ref, (rh, rc) = reference.lstm_forward(spec, weights, x, (h0, c0), lengths=lengths)
    err = max(float(np.abs(out - ref).max()), float(np.abs(h_n - rh).max()), float(np.abs(c_n - rc).max()))
    print(f"built with cffi and ran: out {out.shape}, h_n {h_n.shape}, c_n {c_n.shape}")
    print(f"max abs error vs the float64 numpy reference: {err:.3g} (tolerance 1e-5)")
    return 0 if err <= 1e-5 else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lstmgen", description="Compile torch.nn.LSTM-shaped models to standalone C.")
    parser.add_argument("--version", action="version", version=f"lstmgen {__version__}")
    quiet = argparse.ArgumentParser(add_help=False)
    quiet.add_argument("-q", "--quiet", action="store_true", help="no progress messages on stderr (errors only)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    _add_parser = sub.add_parser
    sub.add_parser = lambda *a, **kw: _add_parser(*a, parents=[quiet], **kw)  # type: ignore[method-assign]

    g = sub.add_parser("generate", help="write standalone C for a spec (with its weights embedded if given)")
    _source_args(g)
    g.add_argument("--out", required=True, help="output folder")
    g.add_argument("--prefix", default="lstm", help="C symbol prefix (a C identifier)")
    g.add_argument("--allow-nonfinite", action="store_true", help="keep NaN/Inf weights instead of refusing them")
    g.add_argument("--force", action="store_true",
                   help="replace files in --out that lstmgen did not write (never writes through symlinks)")
    g.add_argument("--embedded", action="store_true",
                   help="write a self-contained folder for a microcontroller: static-memory API (<prefix>_state.c), "
                        "self-test with golden vectors, Makefile, README (needs --weights; default schedule: --chunk 4 "
                        "for unidirectional models, bidirectional ones need --seq-len)")
    g.add_argument("--max-batch", type=int, default=1, help="with --embedded: most batch rows one static state serves")
    g.add_argument("--no-selftest", action="store_true", help="with --embedded: leave out <prefix>_selftest.c")
    g.add_argument("--target", choices=["portable", "avx2", "avx512", "neon", "native"], default="portable",
                   help="kernels: plain C99 (default) or vector intrinsics for an ISA ('native': this machine's)")
    g.add_argument("--math", choices=["libm", "approx"], default="approx",
                   help="sigmoid/tanh: libm-free float32 forms within 2.5 ulp (default, as compile()) or libm's expf/tanhf")
    g.add_argument("--tolerance", type=float, default=None, help="with --embedded: the self-test's absolute tolerance (default 1e-5)")
    _schedule_args(g)
    g.set_defaults(fn=cmd_generate)

    r = sub.add_parser("report", help="footprint of the embedded build: parameters, flash, RAM, MACs per step, stack")
    _source_args(r)  # sizes do not depend on the weights (random ones without --weights)
    r.add_argument("--prefix", default="lstm", help="C symbol prefix")
    r.add_argument("--max-batch", type=int, default=1, help="most batch rows one static state serves")
    r.add_argument("--cpu", action="append", choices=["cortex-m4", "cortex-m0plus"],
                   help="core(s) to cross-compile for (default: both); repeatable")
    r.add_argument("--no-measure", action="store_true", help="do not cross-compile (code bytes and stack not shown)")
    r.add_argument("--math", choices=["libm", "approx"], default="approx",
                   help="sigmoid/tanh: libm-free float32 forms within 2.5 ulp (default) or libm's expf/tanhf")
    _schedule_args(r)
    r.set_defaults(fn=cmd_report)

    i = sub.add_parser("inspect", help="print the lowered IR of a spec")
    _source_args(i, weights=False)
    i.add_argument("--dot", action="store_true", help="print Graphviz dot instead")
    i.add_argument("--target", choices=["portable", "avx2", "avx512", "neon", "native"], default="native",
                   help="the kernels whose plan to show (default: this machine's, as compile() picks)")
    i.add_argument("--math", choices=["libm", "approx"], default="approx", help="sigmoid/tanh (default approx, as compile())")
    i.add_argument("--graph", action="store_true",
                   help="for a .onnx file: list its inputs, nodes and outputs (names for import_onnx(inputs=, outputs=))")
    _schedule_args(i)
    i.set_defaults(fn=cmd_inspect)

    b = sub.add_parser("bench", help="time the compiled model here (and torch.nn.LSTM with 1 thread when installed)")
    _source_args(b)  # random weights without --weights (speed does not depend on them)
    b.add_argument("--steps", type=int, default=100, help="sequence length T of the timed input (default 100)")
    b.add_argument("--batch", type=int, default=1, help="batch rows B (default 1)")
    b.add_argument("--target", choices=["portable", "avx2", "avx512", "neon", "native"], default="native",
                   help="kernels (default: this machine's vector ISA)")
    b.add_argument("--math", choices=["libm", "approx"], default="approx", help="sigmoid/tanh (default approx, as compile())")
    b.add_argument("--seconds", type=float, default=1.0, help="time spent per peer (default 1)")
    _schedule_args(b)
    b.set_defaults(fn=cmd_bench)

    d = sub.add_parser("demo", help="generate, build and check an example against the numpy golden")
    d.add_argument("--out", default="demo_out", help="where the example's C goes")
    d.set_defaults(fn=cmd_demo)

    args = parser.parse_args(argv)
    # progress (compiling, cross-compiling, measuring; cache misses with the compiler's time) goes
    # to stderr through the "lstmgen" logger unless -q; stdout keeps only the results
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("lstmgen: %(message)s"))
    previous = _log.level
    if not args.quiet:
        _log.addHandler(handler)
        _log.setLevel(logging.INFO)
    try:
        return _run(args)
    finally:
        _log.removeHandler(handler)
        _log.setLevel(previous)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.fn(args))
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(f"lstmgen {args.cmd}: error: {exc}", file=sys.stderr)
        return 2
    except BuildError as exc:
        print(f"lstmgen {args.cmd}: build failed: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

