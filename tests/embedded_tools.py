"""Build and run an embedded folder's self-test on each target; shared by tests/test_embedded.py.

Run as a script for the README's figures (every target whose tools are installed):

    .venv/bin/python tests/embedded_tools.py [example] [--math libm] [--weights-dtype int8]    # default: kws, approx, float32

Targets: the host (gcc, clang, valgrind), 32-bit ARM Linux under qemu-arm, and Cortex-M firmware
under qemu-system-arm with semihosting (start-up and linker script in tests/embedded_fw/). With
`-icount shift=0` QEMU advances its virtual clock by a fixed time per guest instruction, so the
firmware's SysTick counts instructions; a calibration loop of known length converts ticks to them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
sys.path.insert(0, ROOT)

from lstmgen import embedded  # noqa: E402

GENERATED = os.path.join(ROOT, "generated")
FW = os.path.join(TESTS, "embedded_fw")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Wpedantic", "-Wdouble-promotion", "-Wconversion", "-Wshadow", "-Wvla", "-Werror"]
# qemu-system-arm machine per core. The M0+ build (ARMv6-M, soft float) runs on the Cortex-M3 board:
# QEMU has no Cortex-M0+ board with room for the weights, and ARMv7-M executes ARMv6-M code.
FIRMWARE = {"cortex-m4": "mps2-an386", "cortex-m0plus": "mps2-an385"}


def run(cmd: list[str], cwd: str | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)


def copy_example(name: str, dst: str) -> str:
    out = os.path.join(dst, name)
    shutil.copytree(os.path.join(GENERATED, name), out)
    return out


def model_c(prefix: str) -> list[str]:
    return [f"{prefix}.c", f"{prefix}_state.c", f"{prefix}_weights.c"]


def build_selftest(folder: str, prefix: str, cc: str, flags: list[str], out: str) -> None:
    """Compile the model and its self-test into `out`; AssertionError with the compiler's output on failure."""
    r = run([cc, *flags, "-o", out, *model_c(prefix), f"{prefix}_selftest.c", "-lm"], cwd=folder)
    assert r.returncode == 0, f"{cc} failed:\n{r.stderr}"


def build_firmware(folder: str, prefix: str, cpu: str, out: str) -> None:
    cmd = ["arm-none-eabi-gcc", *embedded.CPU_FLAGS[cpu], "-Os", "-std=c99", "-Wall", "-Wextra", "-Werror",
           "--specs=rdimon.specs", "-nostartfiles", "-T", os.path.join(FW, "mps2.ld"), "-DSELFTEST_CLOCK=fw_clock",
           os.path.join(FW, "startup.c"), *model_c(prefix), f"{prefix}_selftest.c", "-lm", "-o", out]
    r = run(cmd, cwd=folder)
    assert r.returncode == 0, f"arm-none-eabi-gcc failed:\n{r.stderr}"


def run_firmware(elf: str, cpu: str) -> subprocess.CompletedProcess:
    return run(["qemu-system-arm", "-M", FIRMWARE[cpu], "-nographic", "-monitor", "none",
                "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", elf])


def instructions_per_step(stdout: str) -> float:
    """SysTick ticks per step, converted with the calibration loop of known instruction count."""
    cal = re.search(r"calibration: (\d+) clock ticks for (\d+) instructions", stdout)
    ticks = re.search(r"clock ticks per step[^:]*: ([\d.]+)", stdout)
    assert cal and ticks, stdout
    return float(ticks.group(1)) * int(cal.group(2)) / int(cal.group(1))


def max_error(stdout: str) -> float:
    return max(float(v) for v in re.findall(r"max abs err (\S+)", stdout))


def passed(stdout: str, prefix: str) -> bool:
    return f"{prefix} selftest: PASS (0 failures)" in stdout


def example_folder(name: str, dst: str, math: str, weights_dtype: str = "float32") -> str:
    """generated/<name> as it is (the defaults: approx, float32), or regenerated with the same
    options and another math or weights dtype."""
    if math == "approx" and weights_dtype == "float32":
        return copy_example(name, dst)
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import make_generated

    spec, weights = make_generated.example(name)
    out = os.path.join(dst, name)
    embedded.generate_embedded(spec, weights, out, prefix=name, math=math, weights_dtype=weights_dtype,
                               **make_generated.EMBEDDED[name])
    return out


def figures(name: str = "kws", math: str = "approx", weights_dtype: str = "float32") -> list[str]:
    """One markdown table row per target whose tools are installed."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="lstmgen-emb-") as tmp:
        folder = example_folder(name, tmp, math, weights_dtype)
        for cc in ("gcc", "clang"):
            if shutil.which(cc):
                exe = os.path.join(folder, f"st_{cc}")
                build_selftest(folder, name, cc, ["-O2", *STRICT], exe)
                r = run([exe])
                rows.append(f"| host x86-64, {cc} -O2 | {'PASS' if r.returncode == 0 and passed(r.stdout, name) else 'FAIL'} | {max_error(r.stdout):.2g} | |")
        if shutil.which("valgrind") and shutil.which("gcc"):
            exe = os.path.join(folder, "st_vg")
            build_selftest(folder, name, "gcc", ["-O1", "-g", *STRICT], exe)
            r = run(["valgrind", "--error-exitcode=99", exe])
            heap = re.search(r"total heap usage: (\d+) allocs", r.stderr)
            errs = re.search(r"ERROR SUMMARY: (\d+) errors", r.stderr)
            ok = r.returncode == 0 and passed(r.stdout, name)
            rows.append(f"| host, valgrind: {errs.group(1) if errs else '?'} errors, {heap.group(1) if heap else '?'} allocations "
                        f"| {'PASS' if ok else 'FAIL'} | {max_error(r.stdout):.2g} | |")
        if shutil.which("arm-linux-gnueabihf-gcc") and shutil.which("qemu-arm"):
            exe = os.path.join(folder, "st_armhf")
            build_selftest(folder, name, "arm-linux-gnueabihf-gcc", ["-O2", *STRICT], exe)
            r = run(["qemu-arm", "-L", "/usr/arm-linux-gnueabihf", exe])
            rows.append(f"| ARMv7-A Linux (arm-linux-gnueabihf-gcc -O2), qemu-arm | {'PASS' if r.returncode == 0 and passed(r.stdout, name) else 'FAIL'} "
                        f"| {max_error(r.stdout):.2g} | |")
        if shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm"):
            for cpu, machine in sorted(FIRMWARE.items(), reverse=True):
                elf = os.path.join(folder, f"fw_{cpu}.elf")
                build_firmware(folder, name, cpu, elf)
                r = run_firmware(elf, cpu)
                ok = r.returncode == 0 and passed(r.stdout, name)
                rows.append(f"| {cpu} firmware -Os, qemu-system-arm -M {machine} (semihosting) | {'PASS' if ok else 'FAIL'} "
                            f"| {max_error(r.stdout):.2g} | {instructions_per_step(r.stdout):,.0f} |")
    return rows


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description="the embedded self-test on every target whose tools are installed")
    ap.add_argument("example", nargs="?", default="kws")
    ap.add_argument("--math", choices=["libm", "approx"], default="approx")
    ap.add_argument("--weights-dtype", choices=["float32", "float16", "bfloat16", "int8"], default="float32")
    args = ap.parse_args()
    print(f"self-test of generated/{args.example}, math={args.math}, weights {args.weights_dtype} (tolerance 1e-5 absolute):\n")
    print("| target | result | max abs error | instructions per step |")
    print("|---|---|---|---|")
    for row in figures(args.example, args.math, args.weights_dtype):
        print(row)
