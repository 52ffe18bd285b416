"""The embedded folder: static memory, self-test with golden vectors, footprint, and proof on ARM.

Host: the self-test of generated/<example> built with gcc and clang passes, fails when a golden
value is wrong, and allocates nothing under valgrind. ARM: the model cross-compiles warning-free
for Cortex-M4 (hard float) and Cortex-M0+ (no FPU); the footprint the header and `lstmgen report`
state matches the cross-compiled objects; the self-test passes under qemu-arm (32-bit ARM Linux)
and as Cortex-M firmware under qemu-system-arm with semihosting.
"""

from __future__ import annotations

import os
import re
import subprocess

import numpy as np
import pytest
from conftest import ROOT, need_tool
from embedded_tools import (
    FIRMWARE,
    STRICT,
    build_firmware,
    build_selftest,
    copy_example,
    instructions_per_step,
    run_firmware,
)

import lstmgen
from lstmgen import embedded
from lstmgen.cli import main as cli_main
from lstmgen.schedule import build_program
from lstmgen.weights import pack

GENERATED = os.path.join(ROOT, "generated")
KWS = dict(input_size=40, hidden_size=64, num_layers=2)  # examples/kws.json


def _copy_example(name: str, dst) -> str:
    return copy_example(name, str(dst))


def _run(cmd, cwd=None, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


# ---- no compiler needed ------------------------------------------------------------------------


def test_footprint_is_exact_for_the_kws_example():
    spec = lstmgen.LSTMSpec(**KWS)
    program = build_program(spec, embedded.embedded_schedule(spec))  # default: chunk 4, batch 1
    fp = embedded.footprint(program)
    assert (program.schedule.chunk, program.schedule.max_batch) == (embedded.DEFAULT_CHUNK, 1)
    assert fp.parameters == 4 * 64 * (40 + 64 + 2) + 4 * 64 * (64 + 64 + 2) == 60416
    # kernel layout: W_ih^T and W_hh^T per layer plus one folded bias of 4H
    assert fp.weight_floats == 4 * 64 * (40 + 64 + 1) + 4 * 64 * (64 + 64 + 1)
    assert fp.weights_bytes == 4 * fp.weight_floats + 2 * 5 * 4
    assert fp.h_floats == fp.c_floats == 2 * 64
    assert fp.ws_floats == program.workspace_floats(4, 1) == program.workspace_floats(10_000, 1)
    assert fp.state_bytes == 4 + 4 * (fp.h_floats + fp.c_floats + fp.ws_floats)
    assert fp.macs_per_step == 4 * 64 * (40 + 64) + 4 * 64 * (64 + 64)
    header = open(os.path.join(GENERATED, "kws", "kws.h")).read()
    assert f"#define KWS_STATE_BYTES {fp.state_bytes} " in header
    assert f"#define KWS_WEIGHTS_BYTES {fp.weights_bytes} " in header
    assert f"RAM               {fp.state_bytes} bytes" in header
    assert f"MACs per step     {fp.macs_per_step} per batch row" in header


@pytest.mark.parametrize("shape", [
    dict(input_size=5, hidden_size=16),
    dict(input_size=4, hidden_size=12, proj_size=5),
    dict(input_size=8, hidden_size=32, num_layers=2, bidirectional=True, proj_size=8),
    dict(input_size=3, hidden_size=8, peepholes=True),
    dict(input_size=3, hidden_size=20, bias=False),
    dict(input_size=6, hidden_size=24, num_layers=3),
    dict(input_size=2, hidden_size=12, num_layers=2, bidirectional=True, bias=False, peepholes=True, proj_size=3),
])
def test_weight_floats_formula_counts_the_packed_arrays(shape):
    spec = lstmgen.LSTMSpec(**shape)
    w = lstmgen.random_weights(spec)
    H = spec.hidden_size
    layouts = [dict(unit_block=u) for u in (0, 1, 2, 4, 8) if not u or H % u == 0]
    layouts += [dict(panel=q) for q in (1, 3, 16, 256)]
    for layout in layouts:  # the gate-blocked and row-panel layouts hold as many floats
        cells = pack(spec, w, **layout)
        counted = sum(a.size for c in cells for a in (c.w_ih, c.w_hh, c.bias, c.w_hr, c.w_ph) if a is not None)
        assert embedded.weight_floats(spec) == counted, layout
    files = embedded.embedded_sources(spec, w, prefix="m", seq_len=5, selftest=False)
    fp = embedded.footprint(embedded.embedded_program(spec, seq_len=5))
    written = sum(int(n) for n in re.findall(r"^static const float m_\w+\[(\d+)\]", files["m_weights.c"], re.M))
    assert fp.weight_floats == written


def test_footprint_and_unmeasured_report_format_no_weight(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a weight was packed or written out as C")

    monkeypatch.setattr(lstmgen.codegen, "c_float", refuse)
    monkeypatch.setattr(lstmgen.embedded.schedule, "pack", refuse)
    spec = lstmgen.LSTMSpec(**KWS)
    fp = embedded.footprint(embedded.embedded_program(spec))
    text = embedded.report(spec, prefix="kws", measure_code=False)
    assert f"flash, weights    {fp.weights_bytes} bytes" in text
    with pytest.raises(ValueError, match="missing weight"):  # given weights are still checked
        embedded.report(spec, {}, measure_code=False)


def test_static_sizes_past_the_caps_are_refused_naming_the_option(tmp_path, capsys):
    spec = lstmgen.LSTMSpec(**KWS)
    w = lstmgen.random_weights(spec)
    cases = [  # (options, the option the error names); each would need GBs (issue 13 item 7)
        (dict(seq_len=100_000_000), "lower seq_len, or leave it out"),
        (dict(max_batch=100_000_000), r"lower max_batch \(at most 43690 rows fit\)"),
        (dict(chunk=100_000_000, seq_len=50_000_000), "lower chunk"),
        (dict(chunk=4, seq_len=2**31), "seq_len=2147483648 does not fit"),
        (dict(max_batch=30_000), "self-test.*lower max_batch"),
    ]
    for opts, match in cases:
        with pytest.raises(ValueError, match=match):
            embedded.embedded_sources(spec, w, **opts)
    bidir = lstmgen.LSTMSpec(input_size=3, hidden_size=4, bidirectional=True)
    with pytest.raises(ValueError, match=r"MAX_STATE_BYTES\): lower seq_len$"):
        embedded.embedded_sources(bidir, lstmgen.random_weights(bidir), seq_len=100_000_000)
    # just under the caps: the state is exactly at most MAX_STATE_BYTES; no self-test still builds
    per_row = embedded.footprint(embedded.embedded_program(spec)).state_bytes - 4
    rows = (embedded.MAX_STATE_BYTES - 4) // per_row
    fp = embedded.footprint(embedded.embedded_program(spec, max_batch=rows))
    assert fp.state_bytes <= embedded.MAX_STATE_BYTES < fp.state_bytes + per_row
    embedded.check_static_size(fp)
    files = embedded.embedded_sources(spec, w, max_batch=rows, selftest=False, prefix="m")
    assert f"#define M_STATE_BYTES {fp.state_bytes} " in files["m.h"]
    ok = embedded.embedded_sources(spec, w, max_batch=8, prefix="m")  # and the self-test's count is exact
    assert embedded.selftest_floats(embedded.footprint(embedded.embedded_program(spec, max_batch=8))) == sum(
        int(n) for n in re.findall(r"^static const float (?:x_in|[yhc]_[ab])\[(\d+)\]", ok["m_selftest.c"], re.M))
    # the CLI says so and exits 2, no traceback
    spec_path, w_path = os.path.join(ROOT, "examples", "kws.json"), os.path.join(ROOT, "examples", "kws.npz")
    for flags in (["--seq-len", "100000000"], ["--max-batch", "100000000"]):
        assert cli_main(["generate", spec_path, "--weights", w_path, "--out", str(tmp_path / "big"), "--embedded", *flags]) == 2
        assert flags[0][2:].replace("-", "_") in capsys.readouterr().err
    assert not (tmp_path / "big").exists()
    assert cli_main(["report", spec_path, "--seq-len", "100000000", "--no-measure"]) == 2  # report says the same
    assert "MAX_STATE_BYTES" in capsys.readouterr().err


def test_static_build_needs_bounded_workspace():
    bidir = lstmgen.LSTMSpec(input_size=3, hidden_size=4, bidirectional=True)
    with pytest.raises(ValueError, match="seq_len"):
        embedded.embedded_schedule(bidir)
    with pytest.raises(ValueError, match="max_batch"):
        embedded.embedded_schedule(bidir, seq_len=4, max_batch=0)
    uni = lstmgen.LSTMSpec(input_size=3, hidden_size=4)
    assert embedded.embedded_schedule(uni, seq_len=7).chunk == 0  # a fixed length: whole sequence
    with pytest.raises(ValueError, match="weights"):
        embedded.embedded_sources(uni, None)


def test_folder_contents_and_no_heap_vla_or_double_in_model_files():
    files = embedded.embedded_sources(lstmgen.LSTMSpec(**KWS), lstmgen.random_weights(lstmgen.LSTMSpec(**KWS)), prefix="m")
    assert sorted(files) == ["Makefile", "README.md", "m.c", "m.h", "m_selftest.c", "m_state.c", "m_weights.c"]
    for name in ("m.c", "m.h", "m_state.c", "m_weights.c"):
        text = files[name]
        for banned in ("malloc", "calloc", "alloca", "double", "<stdio.h>", "printf"):
            assert banned not in text, f"{banned} in {name}"
    assert "\t$(CC) $(CFLAGS)" in files["Makefile"]  # recipes need real tabs
    assert "expf" not in files["m.c"] and "tanhf" not in files["m.c"]  # math="approx", the default: no libm
    libm = embedded.embedded_sources(lstmgen.LSTMSpec(**KWS), lstmgen.random_weights(lstmgen.LSTMSpec(**KWS)), prefix="m",
                                     math="libm")
    assert "expf" in libm["m.c"] and "tanhf" in libm["m.c"]


def test_cli_generate_embedded_and_report(tmp_path, capsys):
    spec = os.path.join(ROOT, "examples", "kws.json")
    w = os.path.join(ROOT, "examples", "kws.npz")
    assert cli_main(["generate", spec, "--weights", w, "--out", str(tmp_path / "k"), "--prefix", "kws", "--embedded"]) == 0
    for name in os.listdir(os.path.join(GENERATED, "kws")):  # the CLI writes what generated/ holds
        assert open(tmp_path / "k" / name).read() == open(os.path.join(GENERATED, "kws", name)).read(), name
    capsys.readouterr()
    assert cli_main(["report", spec, "--no-measure"]) == 0
    out = capsys.readouterr().out
    assert "parameters        60416" in out and "RAM               6148 bytes" in out and "MACs per step     59392" in out
    assert cli_main(["generate", spec, "--out", str(tmp_path / "x"), "--embedded"]) == 2  # no weights
    assert cli_main(["generate", os.path.join(ROOT, "examples", "bidir_proj.json"), "--weights",
                     os.path.join(ROOT, "examples", "bidir_proj.npz"), "--out", str(tmp_path / "y"), "--embedded"]) == 2
    assert "seq_len" in capsys.readouterr().err
    assert cli_main(["generate", spec, "--weights", w, "--out", str(tmp_path / "v"), "--embedded", "--target", "avx2"]) == 2
    assert cli_main(["generate", spec, "--weights", w, "--out", str(tmp_path / "a"), "--prefix", "kws", "--embedded",
                     "--math", "approx", "--max-batch", "3"]) == 0
    header = (tmp_path / "a" / "kws.h").read_text()
    assert "#define KWS_MAX_BATCH 3 " in header and "math=approx" in header
    assert "expf" not in (tmp_path / "a" / "kws.c").read_text()


# ---- host builds --------------------------------------------------------------------------------


@pytest.mark.parametrize("cc", ["gcc", "clang"])
@pytest.mark.parametrize("name", ["kws", "bidir_proj"])
def test_selftest_passes_on_host(tmp_path, cc, name):
    need_tool(cc)
    need_tool("make")
    folder = _copy_example(name, tmp_path)
    run = _run(["make", "-s", "check", f"CC={cc}", f"CFLAGS=-O2 {' '.join(STRICT)}"], cwd=folder)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{name} selftest: PASS (0 failures)" in run.stdout
    assert "FAIL" not in run.stdout


def test_selftest_fails_when_a_golden_value_is_wrong(tmp_path):
    need_tool("gcc")
    folder = _copy_example("kws", tmp_path)
    path = os.path.join(folder, "kws_selftest.c")
    text = open(path).read()
    start = text.index("static const float y_a[")
    first = re.compile(r"(-?0x[0-9a-f.]+p[-+]?\d+f)").search(text, start)
    value = float.fromhex(first.group(1)[:-1])
    wrong = np.float32(value + 1e-4).item().hex() + "f"  # 10x the tolerance
    open(path, "w").write(text[: first.start()] + wrong + text[first.end():])
    run = _run(["make", "-s", "check", "CC=gcc"], cwd=folder)
    assert run.returncode != 0
    assert "kws selftest: FAIL (2 failures)" in run.stdout  # the whole sequence and the steps


# Small models through every static schedule: streaming and reset_row with several rows, variable
# lengths, batch-first, projection, a reverse ONNX cell, unrolled and fixed-length loops.
SWEEP = [
    dict(spec=dict(input_size=3, hidden_size=5, num_layers=2, proj_size=2, batch_first=True), opts=dict(max_batch=3, chunk=2)),
    dict(spec=dict(input_size=2, hidden_size=4, reverse=True, peepholes=True, clip=2.5, input_forget=True,
                   activations=["HardSigmoid", "Softplus", ["ScaledTanh", 0.5, 1.5]]), opts=dict(max_batch=2, chunk=3)),
    dict(spec=dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True, bias=False),
         opts=dict(max_batch=2, seq_len=5, time_loop="unrolled")),
    dict(spec=dict(input_size=4, hidden_size=6, num_layers=1), opts=dict(max_batch=4, seq_len=7)),
]


def test_selftest_passes_across_schedules(tmp_path):
    cc = need_tool("gcc")
    for i, case in enumerate(SWEEP):
        spec = lstmgen.LSTMSpec(**case["spec"])
        out = tmp_path / f"m{i}"
        lstmgen.generate_embedded(spec, lstmgen.random_weights(spec, seed=i), out, prefix=f"m{i}", **case["opts"])
        exe = str(out / "selftest")
        build_selftest(str(out), f"m{i}", cc, ["-O1", *STRICT], exe)
        run = _run([exe])
        assert run.returncode == 0 and f"m{i} selftest: PASS" in run.stdout, run.stdout
        stream = not (spec.bidirectional or spec.reverse)
        assert ("state_step" in run.stdout) == stream


def test_valgrind_no_invalid_access_and_no_allocation(tmp_path):
    valgrind = need_tool("valgrind")
    cc = need_tool("gcc")
    folder = _copy_example("kws", tmp_path)
    exe = os.path.join(folder, "selftest")
    build_selftest(folder, "kws", cc, ["-O1", "-g", *STRICT], exe)
    run = _run([valgrind, "--error-exitcode=99", exe])
    assert run.returncode == 0, run.stdout + run.stderr
    assert "kws selftest: PASS" in run.stdout
    assert re.search(r"total heap usage: 0 allocs, 0 frees, 0 bytes allocated", run.stderr), run.stderr
    assert "ERROR SUMMARY: 0 errors" in run.stderr


# ---- ARM ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def kws_files():
    return {name: open(os.path.join(GENERATED, "kws", name)).read() for name in os.listdir(os.path.join(GENERATED, "kws"))}


@pytest.mark.parametrize("cpu", sorted(embedded.CPU_FLAGS))
def test_cross_compiles_warning_free_and_footprint_matches_the_object(tmp_path, kws_files, cpu):
    """-Os -Werror with every warning flag; the footprint stated in the header is what the objects hold."""
    gcc = need_tool("arm-none-eabi-gcc")
    need_tool("arm-none-eabi-size")
    nm = need_tool("arm-none-eabi-nm")
    m = embedded.measure(kws_files, "kws", cpu)  # raises BuildError on any warning
    spec = lstmgen.LSTMSpec(**KWS)
    fp = embedded.footprint(build_program(spec, embedded.embedded_schedule(spec)))
    assert m.weights_bytes("kws") == fp.weights_bytes
    assert m.static_ram_bytes() == 0  # no data, no bss: the RAM is the caller's kws_state
    assert 500 < m.code_bytes("kws") < 8000
    assert not m.recursion
    assert 0 < max(m.stack.values()) <= 1024, m.stack
    assert set(m.external_calls) <= {"expf", "tanhf", "memcpy", "memmove", "memset"} | {
        f for f in m.external_calls if f.startswith("__aeabi_")}  # soft-float helpers on the M0+
    # sizeof(kws_state) on the target equals the header's KWS_STATE_BYTES
    probe = tmp_path / "probe.c"
    probe.write_text('#include "kws.h"\nkws_state probe_state;\n')
    for name in ("kws.h",):
        (tmp_path / name).write_text(kws_files[name])
    obj = tmp_path / "probe.o"
    run = _run([gcc, *embedded.CPU_FLAGS[cpu], "-Os", *embedded.WARN_FLAGS, "-c", str(probe), "-o", str(obj)], cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    sym = _run([nm, "-S", str(obj)]).stdout
    size = int(re.search(r"^[0-9a-f]+ ([0-9a-f]+) [BC] probe_state$", sym, re.M).group(1), 16)
    assert size == fp.state_bytes


def test_report_states_the_measured_numbers(kws_files):
    need_tool("arm-none-eabi-gcc")
    text = embedded.report(lstmgen.LSTMSpec(**KWS), lstmgen.random_weights(lstmgen.LSTMSpec(**KWS)), prefix="kws",
                           cpus=("cortex-m4",))
    m = embedded.measure(kws_files, "kws", "cortex-m4")
    assert f"flash, code       {m.code_bytes('kws')} bytes (cortex-m4)" in text
    assert f"code {m.code_bytes('kws')} + weights {m.weights_bytes('kws')}" in text
    assert f"stack, worst path: {max(m.stack.values())} bytes" in text and "no recursion" in text


def test_selftest_on_arm_linux_under_qemu_user(tmp_path):
    cc = need_tool("arm-linux-gnueabihf-gcc")
    qemu = need_tool("qemu-arm")
    for name in ("kws", "bidir_proj"):
        folder = _copy_example(name, tmp_path)
        exe = os.path.join(folder, "selftest_armhf")
        build_selftest(folder, name, cc, ["-O2", *STRICT], exe)
        run = _run([qemu, "-L", "/usr/arm-linux-gnueabihf", exe])
        assert run.returncode == 0, run.stdout + run.stderr
        assert f"{name} selftest: PASS (0 failures)" in run.stdout


@pytest.mark.parametrize("cpu", sorted(FIRMWARE))
def test_selftest_as_cortex_m_firmware_under_qemu_system(tmp_path, cpu):
    need_tool("arm-none-eabi-gcc")
    need_tool("qemu-system-arm")
    folder = _copy_example("kws", tmp_path)
    elf = os.path.join(folder, "fw.elf")
    build_firmware(folder, "kws", cpu, elf)
    run = run_firmware(elf, cpu)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "kws selftest: PASS (0 failures)" in run.stdout
    ips = instructions_per_step(run.stdout)
    macs = lstmgen.LSTMSpec(**KWS).macs_per_step()
    print(f"\n{cpu} on {FIRMWARE[cpu]}: {ips:.0f} instructions per kws step ({ips / macs:.2f} per MAC)")
    assert macs < ips < (20 if cpu == "cortex-m4" else 1000) * macs


def test_firmware_exit_status_reports_a_failure(tmp_path):
    need_tool("arm-none-eabi-gcc")
    need_tool("qemu-system-arm")
    folder = _copy_example("bidir_proj", tmp_path)
    path = os.path.join(folder, "bidir_proj_selftest.c")
    text = open(path).read()
    text = re.sub(r"#define BIDIR_PROJ_SELFTEST_TOLERANCE \S+", "#define BIDIR_PROJ_SELFTEST_TOLERANCE 0.0f", text)
    open(path, "w").write(text)
    elf = os.path.join(folder, "fw.elf")
    build_firmware(folder, "bidir_proj", "cortex-m4", elf)
    run = run_firmware(elf, "cortex-m4")
    assert run.returncode == 1 and "bidir_proj selftest: FAIL" in run.stdout, run.stdout


def test_approx_math_is_libm_free_and_passes_as_cortex_m0plus_firmware(tmp_path):
    """math='approx': no expf/tanhf left in the model objects; the M0+ self-test passes within 1e-5."""
    need_tool("arm-none-eabi-gcc")
    need_tool("qemu-system-arm")
    spec = lstmgen.LSTMSpec(**KWS)
    folder = str(tmp_path / "kws")
    lstmgen.generate_embedded(spec, lstmgen.random_weights(spec, seed=0), folder, prefix="kws", math="approx")
    files = {n: open(os.path.join(folder, n)).read() for n in os.listdir(folder)}
    assert "expf" not in files["kws.c"] and "tanhf" not in files["kws.c"]
    m = embedded.measure(files, "kws", "cortex-m0plus")
    assert not {"expf", "tanhf"} & set(m.external_calls), m.external_calls
    elf = os.path.join(folder, "fw.elf")
    build_firmware(folder, "kws", "cortex-m0plus", elf)
    run = run_firmware(elf, "cortex-m0plus")
    assert run.returncode == 0 and "kws selftest: PASS (0 failures)" in run.stdout, run.stdout
    print(f"\ncortex-m0plus, math=approx: {instructions_per_step(run.stdout):.0f} instructions per kws step")
