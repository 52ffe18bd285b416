"""The generated .c files compile as C++17 (users include them from C++ projects), warning-free
with g++ and clang++, and give the same numbers; older C++ gets an #error saying how to build."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from conftest import need_tool

import lstmgen
from lstmgen import kernels

SPEC = lstmgen.LSTMSpec(input_size=4, hidden_size=16, proj_size=4, num_layers=2)
W = lstmgen.random_weights(SPEC, 2)
T, B = 5, 2

MAIN = r"""
#include <cstdio>
#include <vector>
#include "m.h"
extern "C" const m_weights m_model_weights;
int main() {
    std::vector<float> x(NT * NB * M_INPUT_SIZE), y(NT * NB * M_OUTPUT_SIZE);
    std::vector<float> h(M_NUM_LAYERS * NB * M_OUTPUT_SIZE), c(M_NUM_LAYERS * NB * M_HIDDEN_SIZE);
    for (size_t i = 0; i < x.size(); ++i) x[i] = (float)((int)(i % 7) - 3) * 0.25f;
    const int64_t need = m_workspace_floats(NT, NB);
    std::vector<float> ws((size_t)need);
    const int rc = m_forward(&m_model_weights, x.data(), NT, NB, nullptr, nullptr, nullptr, y.data(), h.data(), c.data(), ws.data(), need);
    if (rc != M_OK) return 1;
    for (float v : y) std::printf("%.9g\n", (double)v);
    return 0;
}
"""


def _targets():
    out = ["portable"]
    if kernels.native_isa() in ("avx2", "avx512"):
        out.append(kernels.native_isa())
    return out


@pytest.mark.parametrize("cxx", ["g++", "clang++"])
@pytest.mark.parametrize("target", _targets())
@pytest.mark.parametrize("math", ["libm", "approx"])
def test_generated_c_builds_as_cxx17(tmp_path, cxx, target, math):
    exe_cxx = need_tool(cxx)
    lstmgen.generate(SPEC, W, tmp_path, prefix="m", target=target, math=math)
    (tmp_path / "main.cpp").write_text(MAIN.replace("NT", str(T)).replace("NB", str(B)))
    flags = ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wpedantic", "-Werror", "-x", "c++"]
    flags += ["-ffp-contract=off", *lstmgen.kernels.compile_flags(target)[4:]]  # the ISA flags
    if cxx == "g++" and target == "avx512":
        # g++ 12's own avx512fintrin.h (_mm512_undefined_ps: `__m512 __Y = __Y;`) trips its
        # -Wuninitialized in C++ mode (GCC bug 105593, fixed in GCC 13); not our code
        flags.append("-Wno-uninitialized")
    exe = tmp_path / "prog"
    r = subprocess.run([exe_cxx, *flags, "m.c", "m_weights.c", "main.cpp", "-lm", "-o", str(exe)], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    got = np.array([float(v) for v in subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout.split()])
    x = np.array([((i % 7) - 3) * 0.25 for i in range(T * B * 4)], np.float32).reshape(T, B, 4)
    want, _ = lstmgen.reference.lstm_forward(SPEC, W, x)
    assert np.abs(got.reshape(want.shape) - want).max() < 1e-5


def test_older_cxx_is_told_how_to_build(tmp_path):
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("no g++")
    lstmgen.generate(SPEC, W, tmp_path, prefix="m")
    r = subprocess.run([gxx, "-std=c++14", "-x", "c++", "-c", "m.c", "-o", "m.o"], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode != 0 and "C++17" in r.stderr
