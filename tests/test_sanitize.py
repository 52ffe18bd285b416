"""Generated C under AddressSanitizer, UndefinedBehaviorSanitizer, MemorySanitizer and valgrind.

A sweep of configs covering every feature (projection, bidirectional, several layers, no bias,
batch_first, the ONNX cell extras: peepholes, clip, coupled input/forget gates, other activations,
a reverse direction; looped, unrolled and chunked schedules; streaming with a row reset; lengths;
initial state, also written in place) is compiled into one C program (tests/c_harness.py) that
checks every error code and runs each case on exactly-sized heap buffers. The results must match
lstmgen.reference (|error| <= 1e-5 * max(1, |value|)) and the tools must report nothing.

`make test` runs the quick sweep (quick_configs) with gcc ASan+UBSan and valgrind (clang's
sanitizers run there too, in the C fuzzer of test_fuzz.py);
`make sanitize` (LSTMGEN_FULL=1) runs the full sweep (quick_configs + 40 random configs) with gcc -O1 and
-O3, clang -O2, clang MSan and valgrind with origin tracking, plus the longer variants elsewhere.
"""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest
from c_harness import Case, Config, check_results, compile_program, default_cases, write_cases, write_program
from conftest import need_tool

import lstmgen

FULL = bool(os.environ.get("LSTMGEN_FULL"))
S = lstmgen.LSTMSpec
HOST_AVX2 = os.path.exists("/proc/cpuinfo") and " avx2 " in open("/proc/cpuinfo").read() and " fma " in open("/proc/cpuinfo").read()


def quick_configs() -> list[Config]:
    cfgs = [
        Config("plain", S(input_size=3, hidden_size=4)),
        Config("bidir_proj_2layers", S(input_size=5, hidden_size=6, num_layers=2, bidirectional=True, proj_size=3)),
        Config("nobias_batch_first_2layers", S(input_size=4, hidden_size=5, num_layers=2, bias=False, batch_first=True)),
        Config("onnx_cell_bidir", S(input_size=3, hidden_size=5, bidirectional=True, peepholes=True, clip=2.5,
                                    activations=["HardSigmoid", "LeakyRelu", "Softsign", "Sigmoid", "Elu", "ScaledTanh"])),
        Config("onnx_reverse_input_forget", S(input_size=3, hidden_size=4, reverse=True, input_forget=True, peepholes=True,
                                              activations=["Sigmoid", "Tanh", "Softplus"])),
        Config("unrolled_proj_2layers", S(input_size=3, hidden_size=5, num_layers=2, proj_size=2), time_loop="unrolled", seq_len=5),
        Config("chunked_proj_2layers", S(input_size=3, hidden_size=4, num_layers=2, proj_size=2), chunk=3),
        Config("chunked_reverse_batch_first", S(input_size=2, hidden_size=3, reverse=True, batch_first=True), chunk=2),
        Config("vector_kernels_avx2", S(input_size=7, hidden_size=16, num_layers=2, proj_size=5),
               options={"target": "avx2" if HOST_AVX2 else "portable", "math": "approx"}),
    ]
    # one vector layer, wide input: run-time windows (32 + 8 steps at B = 32) and zig-zag tiles
    cfgs.append(Config("vector_windows_avx2", S(input_size=3, hidden_size=64, reverse=False),
                       options={"target": "avx2" if HOST_AVX2 else "portable", "math": "approx"}))
    rng = np.random.default_rng(0)
    for cfg in cfgs:
        cfg.cases = default_cases(cfg, rng)
    cfgs[-1].cases.append(Case("forward", 40, 32, lengths=True, hx=True))
    return cfgs


def random_configs(n: int, seed: int = 1) -> list[Config]:
    """Random specs and schedules over every knob (sizes kept small: the sanitizers are slow)."""
    rng = np.random.default_rng(seed)
    acts = ["Sigmoid", "Tanh", "Relu", "Affine", "LeakyRelu", "ThresholdedRelu", "ScaledTanh", "HardSigmoid", "Elu",
            "Softsign", "Softplus"]
    out = []
    while len(out) < n:
        bidir = bool(rng.random() < 0.35)
        H = int(rng.integers(1, 9))
        kw = dict(input_size=int(rng.integers(1, 7)), hidden_size=H, num_layers=int(rng.integers(1, 4)),
                  bias=bool(rng.random() < 0.7), batch_first=bool(rng.random() < 0.4), bidirectional=bidir,
                  proj_size=int(rng.integers(1, H)) if H > 1 and rng.random() < 0.4 else 0)
        onnx = rng.random() < 0.4
        if onnx:
            kw.update(peepholes=bool(rng.random() < 0.5), input_forget=bool(rng.random() < 0.3),
                      clip=float(rng.uniform(0.5, 4)) if rng.random() < 0.5 else None,
                      reverse=bool(not bidir and rng.random() < 0.4))
            k = 6 if bidir and rng.random() < 0.5 else 3
            # f squashes gates: keep it bounded so that values stay in a range the tolerance means something in
            kw["activations"] = [str(rng.choice(["Sigmoid", "HardSigmoid", "Softsign", "ScaledTanh"])) if i % 3 == 0
                                 else str(rng.choice(acts)) for i in range(k)]
        spec = S(**kw)
        sched = rng.choice(["looped", "unrolled", "chunked"], p=[0.5, 0.25, 0.25])
        cfg = Config(f"random{len(out)}", spec, seed=int(rng.integers(1 << 30)))
        if sched == "unrolled":
            cfg.time_loop, cfg.seq_len = "unrolled", int(rng.integers(1, 7))
        elif sched == "chunked" and not bidir:
            cfg.chunk = int(rng.integers(1, 5))
        if HOST_AVX2 and rng.random() < 0.3:
            cfg.options = {"target": "avx2", "math": str(rng.choice(["libm", "approx"]))}
        cfg.cases = default_cases(cfg, rng, n=4)
        out.append(cfg)
    return out


def sweep() -> list[Config]:
    return quick_configs() + (random_configs(40) if FULL else [])


SAN = ["-g", "-fno-omit-frame-pointer", "-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
NATIVE = ["-mavx2", "-mfma"] if HOST_AVX2 else []  # not -march=native: valgrind lacks AVX-512
BUILDS = {  # name: (compiler, flags, full sweep only)
    "gcc-O1-asan-ubsan": ("gcc", ["-O1", *SAN, *NATIVE], False),
    "clang-O2-asan-ubsan": ("clang", ["-O2", *SAN, *NATIVE], True),  # make test: clang's ASan+UBSan run in the C fuzzer
    "gcc-O3-asan-ubsan": ("gcc", ["-O3", *SAN, *NATIVE], True),
    "clang-O1-msan": ("clang", ["-O1", "-g", "-fsanitize=memory", "-fsanitize-memory-track-origins", *NATIVE], True),
}
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    "MSAN_OPTIONS": "halt_on_error=1",
}


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    """The configs' C, written once; and the cases file."""
    configs = sweep()
    d = tmp_path_factory.mktemp("sanitize")
    c_files = write_program(configs, str(d))
    prepared = write_cases(configs, str(d / "cases.bin"))
    return d, c_files, prepared, configs


def _run(cmd, env_extra=None, timeout=900):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


@pytest.mark.parametrize("build", [b for b, (_, _, full) in BUILDS.items() if FULL or not full])
def test_sanitizers_find_nothing(program, build):
    d, c_files, prepared, configs = program
    cc, flags, _ = BUILDS[build]
    need_tool(cc)
    exe = str(d / f"harness-{build}")
    compile_program(cc, flags, c_files, exe)
    res = str(d / f"results-{build}.bin")
    r = _run([exe, str(d / "cases.bin"), res], SAN_ENV)
    report = r.stdout + r.stderr
    assert r.returncode == 0, f"{build}: exit {r.returncode}\n{report[-6000:]}"
    assert not re.search(r"runtime error|ERROR: (Address|Memory|Leak)Sanitizer|WARNING: MemorySanitizer", report), report[-6000:]
    m = re.search(r"(\d+) cases run, 0 error-code checks failed", r.stdout)
    assert m and int(m.group(1)) == len(prepared), r.stdout
    worst = check_results(prepared, res)
    print(f"\n{build}: {len(configs)} configs, {len(prepared)} cases, clean; worst error {worst:.2g}")


def test_valgrind_finds_nothing(program):
    valgrind = need_tool("valgrind")
    d, c_files, prepared, configs = program
    exe = str(d / "harness-plain")
    compile_program("gcc", ["-O1", "-g", *NATIVE], c_files, exe)
    res = str(d / "results-valgrind.bin")
    opts = ["--error-exitcode=99", "--leak-check=full", "--errors-for-leak-kinds=all", "--show-leak-kinds=all"]
    if FULL:
        opts.append("--track-origins=yes")
    r = _run([valgrind, "-q", *opts, exe, str(d / "cases.bin"), res])
    assert r.returncode == 0, f"valgrind: exit {r.returncode}\n{(r.stdout + r.stderr)[-6000:]}"
    assert "ERROR SUMMARY" not in r.stderr or "ERROR SUMMARY: 0 errors" in r.stderr, r.stderr[-4000:]
    worst = check_results(prepared, res)
    print(f"\nvalgrind memcheck: {len(configs)} configs, {len(prepared)} cases, clean; worst error {worst:.2g}")


def test_harness_catches_an_overrun(tmp_path):
    """The harness is not blind: a model whose workspace size is under-reported by one float
    (the header's WS_ROW_FLOATS shrunk) is caught by AddressSanitizer."""
    need_tool("gcc")
    cfg = Config("broken", S(input_size=3, hidden_size=4), cases=[Case("forward", 4, 2)])
    c_files = write_program([cfg], str(tmp_path))
    model_c = tmp_path / "m0.c"
    text = model_c.read_text()
    m = re.search(r"#define M0_WS_ROW_FLOATS (\d+)", text)
    assert m, "the workspace row size macro moved; update this test"
    model_c.write_text(text.replace(m.group(0), f"#define M0_WS_ROW_FLOATS ({m.group(1)} - 1)"))
    exe = str(tmp_path / "h")
    compile_program("gcc", ["-O1", *SAN], c_files, exe)
    write_cases([cfg], str(tmp_path / "cases.bin"))
    r = _run([exe, str(tmp_path / "cases.bin"), str(tmp_path / "r.bin")], SAN_ENV)
    assert r.returncode != 0 and "heap-buffer-overflow" in r.stderr, r.stderr[-3000:]
