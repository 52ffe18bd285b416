"""lstmgen inside real applications (issue 13): the build neither reads the caller's compiler
settings nor touches process-wide state, the cache trusts only what this user made, kept
workspaces are bounded, fork and threads cannot wedge a Model or a Stream, torch dtypes convert.

Scenarios whose failure would poison the test process (a fast-math library sets flush-to-zero for
everyone once loaded; an ASan library aborts on load) run in fresh subprocesses.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest
from conftest import need_module, with_c_functions

import lstmgen
from lstmgen import build

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A model of its own (hidden_size=7 is used nowhere else), so every run below really builds.
SCRIPT = r"""
import json, os, sys
import numpy as np
import lstmgen
from lstmgen import build
spec = lstmgen.LSTMSpec(input_size=3, hidden_size=7)
w = lstmgen.random_weights(spec, seed=2)
x = np.linspace(-1, 1, 24, dtype=np.float32).reshape(4, 2, 3)
x[0, 0, 1] = np.nan
out, _ = lstmgen.compile(spec, w, prefix="safetyenv")(x)
ref, _ = lstmgen.reference.lstm_forward(spec, w, x)
tiny = np.array([1e-40], np.float32)
print(json.dumps({"compiles": build.stats["compiles"], "hits": build.stats["cache_hits"],
                  "nan_kept": bool(np.isnan(out[:, 0]).all()),
                  "err": float(np.abs(out[:, 1] - ref[:, 1]).max()),
                  "denormals_kept": float((tiny * np.float32(1.0))[0]) != 0.0}))
"""


def run_script(cache: str, wrap: list[str] | None = None, **env_extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("CFLAGS", "LDFLAGS", "CC", "LSTMGEN_CC", "LSTMGEN_CFLAGS")}
    env.update(LSTMGEN_CACHE_DIR=cache, PYTHONPATH=ROOT, **env_extra)
    proc = subprocess.run([*(wrap or []), sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"subprocess failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    assert res["err"] < 1e-5, res
    res["stderr"] = proc.stderr
    return res


def cache_entries(cache: str) -> list[str]:
    return sorted(n for n in os.listdir(cache) if not n.startswith("."))


# ---- 1: the caller's $CFLAGS / $LDFLAGS / $CC cannot change what is built -------------------


def test_cflags_fast_math_is_ignored(tmp_path):
    cache = str(tmp_path / "c")
    first = run_script(cache, CFLAGS="-ffast-math -Ofast", LDFLAGS="-ffast-math")
    assert first["compiles"] == 1
    assert first["nan_kept"], "a NaN input gave finite outputs: $CFLAGS reached the compiler"
    assert first["denormals_kept"], "loading the library switched the process to flush-to-zero"
    entries = cache_entries(cache)
    second = run_script(cache)  # without the variables: the same entry, no compile
    assert second["compiles"] == 0 and second["hits"] == 1 and second["nan_kept"]
    assert cache_entries(cache) == entries


def test_cflags_sanitizer_has_no_effect(tmp_path):
    cache = str(tmp_path / "c")
    first = run_script(cache, CFLAGS="-fsanitize=address", LDFLAGS="-fsanitize=address")
    assert first["compiles"] == 1 and first["nan_kept"]
    second = run_script(cache)
    assert second["compiles"] == 0 and second["hits"] == 1


def _tiny_sources(prefix: str):
    spec = lstmgen.LSTMSpec(input_size=2, hidden_size=3)
    return lstmgen.generate_sources(spec, prefix=prefix)


@pytest.mark.parametrize("var, value, flag", [
    ("CC", "gcc -ffast-math", "-ffast-math"),
    ("LSTMGEN_CC", "cc -Ofast", "-Ofast"),
    ("LSTMGEN_CFLAGS", "-O2 -funsafe-math-optimizations", "-funsafe-math-optimizations"),
    ("LSTMGEN_CFLAGS", "-ffinite-math-only", "-ffinite-math-only"),
])
def test_fast_math_in_the_compiler_command_is_refused(tmp_path, monkeypatch, var, value, flag):
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setenv(var, value)
    with pytest.raises(ValueError, match=flag):
        build.build(_tiny_sources("fastcc"))


def test_the_compiler_is_part_of_the_key(tmp_path, monkeypatch):
    """$CC is honoured (users pick clang or a toolchain's gcc with it), so which compiler it is
    (its absolute path and --version) and any extra words are in the cache key."""
    wrapper = tmp_path / "my-cc"
    wrapper.write_text('#!/bin/sh\nexec cc "$@"\n')
    wrapper.chmod(0o755)
    src = _tiny_sources("keycc")
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.delenv("LSTMGEN_CC", raising=False)
    plain = build.build_key(src, build.toolchain("portable").key_parts())
    monkeypatch.setenv("CC", str(wrapper))
    assert build.toolchain("portable").compiler[0] == str(wrapper)
    wrapped = build.build_key(src, build.toolchain("portable").key_parts())
    monkeypatch.setenv("CC", f"{wrapper} -O1")
    with_words = build.build_key(src, build.toolchain("portable").key_parts())
    monkeypatch.setenv("LSTMGEN_CFLAGS", "-DLSTMGEN_TEST_FLAG=1")
    with_flags = build.build_key(src, build.toolchain("portable").key_parts())
    assert len({plain, wrapped, with_words, with_flags}) == 4


def test_generated_c_refuses_fast_math(tmp_path):
    src = _tiny_sources("fmguard")
    for name, text in src.files.items():
        (tmp_path / name).write_text(text)
    proc = subprocess.run(["cc", "-ffast-math", "-std=c99", "-c", "fmguard.c", "-o", "fmguard.o"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode != 0 and "-ffast-math" in proc.stderr and "#error" in proc.stderr
    ok = subprocess.run(["cc", "-O2", "-std=c99", "-c", "fmguard.c", "-o", "fmguard.o"], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr


# ---- 2: compile() leaves the working directory and file descriptors 1 and 2 alone -----------


def test_compile_does_not_touch_cwd_or_stdio(tmp_path, monkeypatch, capfd):
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(tmp_path / "c"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    spec = lstmgen.LSTMSpec(input_size=5, hidden_size=11, num_layers=2)  # a fresh build
    done = threading.Event()
    rows: list[int] = []
    cwds: set[str] = set()

    def worker():
        i = 0
        while not done.is_set() or i < 20:
            with open("rows.txt", "a", encoding="utf-8") as fh:  # a relative path
                fh.write(f"{i}\n")
            os.write(1, f"worker-line-{i}\n".encode())
            cwds.add(os.getcwd())
            rows.append(i)
            i += 1
            done.wait(0.002)

    t = threading.Thread(target=worker)
    before = build.stats["compiles"]
    t.start()
    try:
        lstmgen.compile(spec, lstmgen.random_weights(spec, 0), prefix="cwdsafe")
    finally:
        done.set()
        t.join()
    assert build.stats["compiles"] == before + 1
    assert cwds == {str(work)}
    written = (work / "rows.txt").read_text().split()
    assert written == [str(i) for i in rows], f"{len(rows) - len(written)} rows went elsewhere"
    out = capfd.readouterr().out
    missing = [i for i in rows if f"worker-line-{i}\n" not in out]
    assert not missing, f"{len(missing)} of {len(rows)} lines written to fd 1 were lost"


def test_compiler_error_carries_its_stderr(tmp_path, monkeypatch):
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(tmp_path / "c"))
    src = _tiny_sources("errmsg")
    files = dict(src.files)
    files["errmsg.c"] += '\n#error "lstmgen-marker-42"\n'
    bad = type(src)(files=files, cdef=src.cdef, prefix=src.prefix)
    with pytest.raises(build.BuildError, match="lstmgen-marker-42"):
        build.build(bad)


# ---- 5: the cache trusts only what this user made -------------------------------------------


@pytest.fixture(scope="module")
def tiny_entry(tmp_path_factory):
    """(cache root, entry name) of a cache holding the tiny model's entry, built in this process."""
    root = str(tmp_path_factory.mktemp("trust") / "c")
    old = os.environ.get("LSTMGEN_CACHE_DIR")
    os.environ["LSTMGEN_CACHE_DIR"] = root
    try:
        build.build(_tiny_sources("trusty"))
    finally:
        os.environ["LSTMGEN_CACHE_DIR"] = old if old is not None else ""
        if old is None:
            del os.environ["LSTMGEN_CACHE_DIR"]
    (name,) = cache_entries(root)
    return root, name


def _fresh(tiny_entry, tmp_path, monkeypatch) -> tuple[str, str]:
    """A copy of the tiny cache this process has not loaded from: (root, entry path)."""
    root, name = tiny_entry
    cache = str(tmp_path / "c")
    shutil.copytree(root, cache)
    build._loaded.clear()  # the next build must look at the disk
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", cache)
    return cache, os.path.join(cache, name)


def test_new_cache_root_is_private(tmp_path, monkeypatch):
    root = tmp_path / "deep" / "cache"
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(root))
    monkeypatch.setattr(build, "_loaded", {})
    build.build(_tiny_sources("trusty"))
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    (name,) = cache_entries(str(root))
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            assert not os.stat(os.path.join(dirpath, n)).st_mode & 0o022, f"{n} is writable by group or others"


@pytest.mark.parametrize("where", ["root", "entry", "library"])
def test_writable_by_others_is_refused(tiny_entry, tmp_path, monkeypatch, where):
    cache, entry = _fresh(tiny_entry, tmp_path, monkeypatch)
    target = {"root": cache, "entry": entry}.get(where)
    if target is None:
        (target,) = [os.path.join(entry, n) for n in os.listdir(entry) if n.endswith(".so")]
    os.chmod(target, os.stat(target).st_mode | 0o022)
    before = build.stats["compiles"]
    with pytest.raises(build.BuildError, match="writable by group or others") as info:
        build.build(_tiny_sources("trusty"))
    assert target in str(info.value)
    assert build.stats["compiles"] == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="needs root to chown")
@pytest.mark.parametrize("where", ["root", "entry"])
def test_owned_by_someone_else_is_refused(tiny_entry, tmp_path, monkeypatch, where):
    cache, entry = _fresh(tiny_entry, tmp_path, monkeypatch)
    target = cache if where == "root" else entry
    os.chown(target, 4242, 4242)
    with pytest.raises(build.BuildError, match="owned by uid 4242") as info:
        build.build(_tiny_sources("trusty"))
    assert target in str(info.value)


def test_symlinked_entry_is_refused(tiny_entry, tmp_path, monkeypatch):
    cache, entry = _fresh(tiny_entry, tmp_path, monkeypatch)
    elsewhere = str(tmp_path / "elsewhere")
    os.rename(entry, elsewhere)
    os.symlink(elsewhere, entry)
    with pytest.raises(build.BuildError, match="symbolic link"):
        build.build(_tiny_sources("trusty"))


def test_planted_lock_symlink_is_refused(tiny_entry, tmp_path, monkeypatch):
    """The lock file of a key is predictable: a link there must not make us create its target."""
    _, name = tiny_entry
    cache = tmp_path / "c"
    cache.mkdir(mode=0o700)
    victim = tmp_path / "victim-file"
    os.symlink(victim, cache / f".{name}.lock")
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(build, "_loaded", {})
    with pytest.raises(build.BuildError, match="symbolic link"):
        build.build(_tiny_sources("trusty"))
    assert not victim.exists(), "the lock's link was followed"


def test_full_cache_disk_builds_privately(tmp_path, monkeypatch, caplog):
    """ENOSPC while writing into the cache: a working model, a warning, no half entry."""
    cache = tmp_path / "c"
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(cache))
    monkeypatch.setattr(build, "_loaded", {})
    real_open = open

    def full_disk_open(path, mode="r", *args, **kw):
        if "w" in mode and str(path).startswith(str(cache)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        return real_open(path, mode, *args, **kw)

    monkeypatch.setattr(build, "open", full_disk_open, raising=False)
    with caplog.at_level("WARNING", logger="lstmgen.build"):
        module = build.build(_tiny_sources("fulldisk"))
    assert hasattr(module.lib, "fulldisk_forward")
    assert "private build" in caplog.text
    assert cache_entries(str(cache)) == []


def _can_mount_tmpfs() -> bool:
    return bool(shutil.which("unshare")) and subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount -t tmpfs -o size=8k tmpfs /mnt"], capture_output=True).returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare --mount and tmpfs (root)")
def test_really_full_cache_disk_builds_privately(tmp_path):
    """The same on a real 8 KiB file system: the library does not fit."""
    cache = str(tmp_path / "tiny-fs")
    os.mkdir(cache, 0o700)
    wrap = ["unshare", "--mount", "sh", "-c", 'mount -t tmpfs -o size=8k,mode=0700 tmpfs "$0" && exec "$@"', cache]
    res = run_script(cache, wrap=wrap)
    assert res["compiles"] == 1 and res["nan_kept"]
    assert "private build" in res["stderr"] and "No space left" in res["stderr"]


# ---- 9: a cache hit never waits behind another model's compile -----------------------------


@pytest.mark.parametrize("hit", ["loaded", "disk"])
def test_cache_hit_does_not_wait_for_another_compile(tiny_entry, tmp_path, monkeypatch, hit):
    cache, _ = _fresh(tiny_entry, tmp_path, monkeypatch)
    if hit == "loaded":
        build.build(_tiny_sources("trusty"))  # B is in this process already
    slow_started, b_done = threading.Event(), threading.Event()
    real = build._compile_into
    order: list[str] = []

    def slow_compile(sources, *args, **kw):
        if sources.prefix == "slowmodel":
            slow_started.set()
            b_done.wait(20)  # a compile that lasts until B is served (or 20 s when B waits for it)
        return real(sources, *args, **kw)

    monkeypatch.setattr(build, "_compile_into", slow_compile)

    def build_a():
        build.build(_tiny_sources("slowmodel"))
        order.append("A")

    t = threading.Thread(target=build_a)
    t.start()
    try:
        assert slow_started.wait(60)
        module = build.build(_tiny_sources("trusty"))
        order.append("B")
        b_done.set()
    finally:
        b_done.set()
        t.join()
    assert hasattr(module.lib, "trusty_forward")
    assert order == ["B", "A"], "the cache hit waited for another model's compile"


# ---- 8: fork() while another thread is inside Stream.step ----------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # 3.12+: fork() of a threaded process
def test_fork_while_another_thread_steps(tmp_path, monkeypatch):
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=5)
    w = lstmgen.random_weights(spec, seed=4)
    model = lstmgen.compile(spec, w, prefix="forkstep")
    stream = model.stream()
    x = np.linspace(-1, 1, 3, dtype=np.float32)
    expected = lstmgen.reference.lstm_forward(spec, w, x.reshape(1, 3))[0][0]
    inside, release = threading.Event(), threading.Event()
    real_fn = stream._fn

    def held_step(*args):  # a step that stays inside the C call until released
        inside.set()
        release.wait(30)
        return real_fn(*args)

    stream._fn = held_step
    t = threading.Thread(target=stream.step, args=(x,))
    t.start()
    try:
        assert inside.wait(30)
        pid = os.fork()
        if pid == 0:  # child: the stepping thread is gone; the stream must still work
            code = 1
            try:
                stream._fn = real_fn
                stream.reset()
                y = stream.step(x)
                code = 0 if np.allclose(y, expected, atol=1e-5) else 2
            finally:
                os._exit(code)
        assert wait_child(pid) == 0
    finally:
        release.set()
        t.join()


def wait_child(pid: int, seconds: float = 60.0) -> int:
    """The child's exit code; fails the test (killing the child) when it hangs."""
    for _ in range(int(seconds / 0.05)):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        threading.Event().wait(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child deadlocked on an inherited lock")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_fork_while_another_thread_compiles(tmp_path, monkeypatch):
    """The child wants the model the parent's thread is compiling: it waits for that build (the
    flock), then loads the entry; it does not hang on the inherited thread lock."""
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(tmp_path / "c"))
    started, release = threading.Event(), threading.Event()
    real = build._compile_into

    def held_compile(*args, **kw):
        started.set()
        release.wait(30)
        return real(*args, **kw)

    monkeypatch.setattr(build, "_compile_into", held_compile)
    t = threading.Thread(target=build.build, args=(_tiny_sources("forkbuild"),))
    t.start()
    try:
        assert started.wait(30)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                build._compile_into = real
                code = 0 if hasattr(build.build(_tiny_sources("forkbuild")).lib, "forkbuild_forward") else 2
            finally:
                os._exit(code)
        release.set()
        assert wait_child(pid) == 0
    finally:
        release.set()
        t.join()


# ---- 6: what threads keep of their workspaces is bounded per Model -------------------------

MiB = 1 << 20


@pytest.fixture(scope="module")
def big_ws_model():
    """A bidirectional model: (2048, 8) inputs need 2M floats (8 MiB) of workspace per call."""
    spec = lstmgen.LSTMSpec(input_size=4, hidden_size=32, bidirectional=True)
    model = lstmgen.compile(spec, lstmgen.random_weights(spec, 0), prefix="wsbudget")
    assert model.workspace_floats(2048, 8) * 4 == 8 * MiB
    return model


def _traced() -> int:
    return tracemalloc.get_traced_memory()[0]  # numpy reports its buffers to tracemalloc


def test_kept_workspace_is_bounded_across_threads(big_ws_model):
    model = big_ws_model.with_weights(lstmgen.random_weights(big_ws_model.spec, 1))  # nothing kept yet
    x = np.zeros((2048, 8, 4), np.float32)
    n = 16
    called, finish = threading.Barrier(n + 1), threading.Event()
    errors: list[BaseException] = []

    def worker():
        try:
            model(x)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        called.wait(60)
        finish.wait(60)  # stay alive: a thread's kept workspace lives as long as the thread

    tracemalloc.start()
    try:
        base = _traced()
        threads = [threading.Thread(target=worker) for _ in range(n)]
        for t in threads:
            t.start()
        called.wait(60)
        kept = _traced() - base
        finish.set()
        for t in threads:
            t.join()
    finally:
        finish.set()
        tracemalloc.stop()
    assert not errors, errors
    # 16 threads x 8 MiB would be 128 MiB; the budget is 64 MiB per Model
    assert kept <= 64 * MiB + 2 * MiB, f"{n} threads keep {kept / MiB:.0f} MiB of workspace"
    assert model.kept_workspace_bytes() == 0, "ended threads still count against the budget"


def test_small_call_drops_a_large_kept_workspace(big_ws_model):
    model = big_ws_model.with_weights(lstmgen.random_weights(big_ws_model.spec, 2))
    small = np.zeros((4, 1, 4), np.float32)
    model(small)
    tracemalloc.start()
    try:
        base = _traced()
        model(np.zeros((2048, 8, 4), np.float32))
        after_large = _traced() - base
        out, _ = model(small)
        del out
        after_small = _traced() - base
    finally:
        tracemalloc.stop()
    assert after_large >= 8 * MiB  # the large workspace was kept...
    assert after_small < 1 * MiB, f"a small call still keeps {after_small / MiB:.1f} MiB"  # ...and given back


def test_kept_workspace_still_serves_repeated_calls(big_ws_model):
    """The bound does not cost the hot path: equal calls reuse one kept workspace."""
    ffi = big_ws_model.artifact.ffi
    seen = []

    def spy(real, *args):  # args[10] is the workspace pointer
        seen.append(int(ffi.cast("uintptr_t", args[10])))
        return real(*args)

    model = with_c_functions(big_ws_model.with_weights(lstmgen.random_weights(big_ws_model.spec, 3)), forward=spy)
    x = np.zeros((64, 2, 4), np.float32)
    for _ in range(4):
        model(x)
    kept = model.kept_workspace_bytes()
    assert len(set(seen)) == 1 and 4 * model.workspace_floats(64, 2) <= kept < 4 * model.workspace_floats(64, 2) + 256


# ---- 10: torch tensors of any float dtype (bfloat16 too) are converted ----------------------


@pytest.mark.parametrize("dtype", ["bfloat16", "float16", "float64"])
def test_torch_float_dtypes_are_converted(dtype):
    torch = need_module("torch")
    tdtype = getattr(torch, dtype)
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=4)
    w32 = lstmgen.random_weights(spec, seed=5)
    wt = {k: torch.from_numpy(v).to(tdtype) for k, v in w32.items()}  # weights to compile
    as32 = {k: v.float().numpy() for k, v in wt.items()}  # what they mean in float32
    model = lstmgen.compile(spec, wt, prefix="tdtype")
    ref_model = lstmgen.compile(spec, as32, prefix="tdtype")
    x = torch.linspace(-1, 1, 24).reshape(4, 2, 3).to(tdtype)
    h0 = torch.full((1, 2, 4), 0.25).to(tdtype)
    c0 = torch.full((1, 2, 4), -0.5).to(tdtype)
    out, (h_n, c_n) = model(x, (h0, c0))
    want, (want_h, want_c) = ref_model(x.float().numpy(), (h0.float().numpy(), c0.float().numpy()))
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(h_n, want_h)
    np.testing.assert_array_equal(c_n, want_c)
    stream = model.stream(batch=2)
    np.testing.assert_array_equal(stream.step(x[0]), ref_model.stream(batch=2).step(x[0].float().numpy()))


def test_torch_integer_tensors_are_still_refused():
    torch = need_module("torch")
    spec = lstmgen.LSTMSpec(input_size=3, hidden_size=4)
    model = lstmgen.compile(spec, lstmgen.random_weights(spec, seed=5), prefix="tdtype")
    with pytest.raises(TypeError, match="x must be a floating-point array"):
        model(torch.zeros((4, 2, 3), dtype=torch.int32))
