"""The build cache under faults: damaged entries, concurrent builders, read-only folders, a failing
compiler.

Every scenario that touches the cache's on-disk state runs in fresh subprocesses with a private
`LSTMGEN_CACHE_DIR`: a process that already loaded a module never looks at the disk again, so only
a new process proves what a later run would see. Each scenario checks the model still computes the
right numbers and that the cache holds exactly one complete entry and no leftovers.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import lstmgen
from lstmgen import build
from lstmgen.codegen import Sources

IN_CI = bool(os.environ.get("CI"))
FULL = bool(os.environ.get("LSTMGEN_FULL"))  # make sanitize: also the lock-less race (4 compilers at once)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# One tiny model; the printed checksum proves the loaded library computes the right thing.
SCRIPT = r"""
import json, os, sys, time
import numpy as np
import lstmgen
from lstmgen import build
prefix, go = sys.argv[1], sys.argv[2]
if os.environ.get("NO_BUILD_LOCK"):  # the lock-less path: every builder publishes, one entry wins
    import contextlib
    build._build_lock = lambda root, key: contextlib.nullcontext()
spec = lstmgen.LSTMSpec(input_size=3, hidden_size=4)
w = lstmgen.random_weights(spec, seed=1)
x = np.linspace(-1, 1, 30, dtype=np.float32).reshape(5, 2, 3)
if go != "-":  # start line for concurrent runs: everyone compiles at the same moment
    while not os.path.exists(go):
        time.sleep(0.005)
out, _ = lstmgen.compile(spec, w, prefix=prefix)(x)
ref, _ = lstmgen.reference.lstm_forward(spec, w, x)
print(json.dumps({"compiles": build.stats["compiles"], "hits": build.stats["cache_hits"],
                  "err": float(np.abs(out - ref).max())}))
"""
KEY_RE = re.compile(r"[0-9a-f]{32}")
LOCK_RE = re.compile(r"\.[0-9a-f]{32}\.lock")  # per-key flock files of concurrent builders stay


def run_script(cache: str, prefix: str = "cachet", go: str = "-", env_extra: dict | None = None,
               wrap: list[str] | None = None) -> subprocess.Popen:
    env = dict(os.environ, LSTMGEN_CACHE_DIR=cache, PYTHONPATH=ROOT)
    env.update(env_extra or {})
    cmd = (wrap or []) + [sys.executable, "-c", SCRIPT, prefix, go]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def result(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, f"subprocess failed ({proc.returncode}):\n{err[-3000:]}"
    res = json.loads(out.strip().splitlines()[-1])
    assert res["err"] < 1e-5, res
    return res


def one_run(cache: str, **kw) -> dict:
    return result(run_script(cache, **kw))


def entries(cache: str) -> list[str]:
    """What the cache folder holds, apart from the (empty) lock files."""
    return sorted(n for n in os.listdir(cache) if not LOCK_RE.fullmatch(n))


def assert_clean(cache: str, n_entries: int = 1) -> list[str]:
    """Exactly n complete entries and nothing else (no staging, probe or broken folders)."""
    names = entries(cache)
    assert all(KEY_RE.fullmatch(n) for n in names), f"leftovers in the cache: {names}"
    assert len(names) == n_entries, names
    for n in names:
        with open(os.path.join(cache, n, "MANIFEST"), encoding="utf-8") as fh:
            manifest = dict(line.split(" ", 1) for line in fh.read().splitlines())
        assert build._entry_ok(os.path.join(cache, n), manifest["module"]) is not None
    return names


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A cache with one intact entry, built by a fresh process: (root, entry, module name)."""
    root = str(tmp_path_factory.mktemp("cache") / "c")
    res = one_run(root)
    assert res["compiles"] == 1 and res["hits"] == 0
    (name,) = assert_clean(root)
    entry = os.path.join(root, name)
    with open(os.path.join(entry, "MANIFEST"), encoding="utf-8") as fh:
        module = dict(line.split(" ", 1) for line in fh.read().splitlines())["module"]
    return root, entry, module


def _lib(entry: str) -> str:
    (so,) = [n for n in os.listdir(entry) if n.endswith((".so", ".pyd", ".dylib"))]
    return os.path.join(entry, so)


def test_entry_is_complete_and_reused(built, tmp_path):
    root, entry, module = built
    assert {"MANIFEST", "cachet.c", "cachet.h"} <= set(os.listdir(entry))
    cache = str(tmp_path / "c")
    shutil.copytree(root, cache)
    res = one_run(cache)  # a second process: no compiler run
    assert res["compiles"] == 0 and res["hits"] == 1
    assert_clean(cache)


def _flip(entry):
    lib = _lib(entry)
    with open(lib, "r+b") as fh:
        fh.seek(os.path.getsize(lib) // 2)
        b = fh.read(1)
        fh.seek(-1, os.SEEK_CUR)
        fh.write(bytes([b[0] ^ 0x40]))


def _truncate(entry, frac=0.5):
    lib = _lib(entry)
    with open(lib, "r+b") as fh:
        fh.truncate(int(os.path.getsize(lib) * frac))


def _manifest(entry, text: bytes):
    with open(os.path.join(entry, "MANIFEST"), "wb") as fh:
        fh.write(text)


def _edit_manifest(entry, key, value):
    path = os.path.join(entry, "MANIFEST")
    with open(path, encoding="utf-8") as fh:
        lines = dict(line.split(" ", 1) for line in fh.read().splitlines())
    lines[key] = value
    _manifest(entry, "".join(f"{k} {v}\n" for k, v in lines.items()).encode())


def _as_file(entry):
    shutil.rmtree(entry)
    with open(entry, "wb") as fh:
        fh.write(b"not a cache entry")


DAMAGE = {
    "flipped_byte": _flip,
    "truncated_half": _truncate,
    "truncated_empty": lambda e: _truncate(e, 0.0),
    "library_deleted": lambda e: os.remove(_lib(e)),
    "manifest_deleted": lambda e: os.remove(os.path.join(e, "MANIFEST")),
    "manifest_empty": lambda e: _manifest(e, b""),
    "manifest_binary": lambda e: _manifest(e, bytes(range(256)) * 4),
    "manifest_wrong_sha": lambda e: _edit_manifest(e, "sha256", "0" * 64),
    "manifest_other_module": lambda e: _edit_manifest(e, "module", "_lstmgen_other"),
    "manifest_path_escape": lambda e: _edit_manifest(e, "library", "../" + os.path.basename(_lib(e))),
    "entry_is_a_file": _as_file,
}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damage_is_detected(built, tmp_path, kind):
    _, entry, module = built
    copy = str(tmp_path / os.path.basename(entry))
    shutil.copytree(entry, copy)
    assert build._entry_ok(copy, module) is not None
    if kind == "manifest_path_escape":  # the escaped path holds a valid copy: still refused
        shutil.copy(_lib(copy), str(tmp_path))
    DAMAGE[kind](copy)
    assert build._entry_ok(copy, module) is None


@pytest.mark.parametrize("kind", ["flipped_byte", "truncated_half", "entry_is_a_file"])
def test_damaged_entry_is_rebuilt(built, tmp_path, kind):
    root, entry, _ = built
    cache = str(tmp_path / "c")
    shutil.copytree(root, cache)
    DAMAGE[kind](os.path.join(cache, os.path.basename(entry)))
    res = one_run(cache)
    assert res["compiles"] == 1 and res["hits"] == 0
    assert_clean(cache)
    res = one_run(cache)  # and the rebuilt entry is good for the next process
    assert res["compiles"] == 0 and res["hits"] == 1


N_PROCS = 4


@pytest.mark.parametrize("start", ["empty", "damaged_no_lock"] if FULL else ["empty"])
def test_concurrent_builds_all_succeed(built, tmp_path, start):
    root, entry, _ = built
    cache = str(tmp_path / "c")
    env = {}
    if start == "damaged_no_lock":  # every process finds a broken entry and races to replace it
        shutil.copytree(root, cache)
        _truncate(os.path.join(cache, os.path.basename(entry)))
        env["NO_BUILD_LOCK"] = "1"
    go = str(tmp_path / "go")
    procs = [run_script(cache, go=go, env_extra=env) for _ in range(N_PROCS)]
    time.sleep(0.5)  # let every process import and reach the start line
    open(go, "w").close()
    results = [result(p) for p in procs]
    assert all(r["compiles"] + r["hits"] == 1 for r in results), results
    if not env:
        assert sum(r["compiles"] for r in results) == 1, f"the build lock did not deduplicate: {results}"
    assert_clean(cache)
    assert one_run(cache)["compiles"] == 0


def test_unwritable_cache_path_falls_back(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_bytes(b"x")
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    res = one_run(str(blocker / "cache"), env_extra={"TMPDIR": str(private_tmp)})
    assert res["compiles"] == 1
    assert blocker.read_bytes() == b"x"
    assert os.listdir(private_tmp) == [], "the private fallback build was not cleaned up"


def _readonly_kinds() -> list[str]:
    """erofs: a read-only bind mount in a private mount namespace (needs unshare + CAP_SYS_ADMIN,
    as root in CI); eacces: permission bits, which only bind a non-root user."""
    kinds = []
    if shutil.which("unshare") and subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode == 0:
        kinds.append("erofs")
    if os.geteuid() != 0:
        kinds.append("eacces")
    return kinds or ["unavailable"]


@pytest.mark.parametrize("kind", _readonly_kinds())
def test_readonly_cache_dir_falls_back(built, kind):
    """A read-only cache: hits still load from it; misses build privately; nothing is written."""
    if kind == "unavailable":
        if IN_CI:
            pytest.fail("CI runs as root with unshare: the read-only cache test must run there")
        pytest.skip("root without unshare --mount: no way to make a folder read-only for this process")
    root, _, _ = built
    base = tempfile.mkdtemp(prefix="lgro-")  # under /tmp, not pytest's 0700 folder: another uid reads it
    try:
        os.chmod(base, 0o755)
        cache = os.path.join(base, "c")
        shutil.copytree(root, cache)
        private_tmp = os.path.join(base, "tmp")
        os.mkdir(private_tmp)
        os.chmod(private_tmp, 0o1777)
        env = {"TMPDIR": private_tmp}
        wrap = None
        if kind == "erofs":  # a read-only mount: even root gets EROFS
            wrap = ["unshare", "--mount", "sh", "-c", 'mount --bind -o ro "$0" "$0" && exec "$@"', cache]
        for dirpath, _, filenames in os.walk(cache):
            for f in filenames:
                os.chmod(os.path.join(dirpath, f), 0o444)
            os.chmod(dirpath, 0o555)
        before = sorted(os.walk(cache))
        hit = one_run(cache, env_extra=env, wrap=wrap)
        assert hit["compiles"] == 0 and hit["hits"] == 1
        miss = one_run(cache, prefix="cacheother", env_extra=env, wrap=wrap)
        assert miss["compiles"] == 1
        assert sorted(os.walk(cache)) == before, "a read-only cache was written to"
        assert os.listdir(private_tmp) == [], "the private fallback build was not cleaned up"
    finally:
        for dirpath, _, _ in os.walk(base):
            os.chmod(dirpath, 0o755)
        shutil.rmtree(base, ignore_errors=True)


# ---- compiler failures: a clear error with the compiler's words, and no half entry -----------


def _tiny_sources(prefix: str, extra: str = "") -> Sources:
    spec = lstmgen.LSTMSpec(input_size=2, hidden_size=3)
    src = lstmgen.generate_sources(spec, prefix=prefix)
    files = dict(src.files)
    files[f"{prefix}.c"] += extra
    return Sources(files=files, cdef=src.cdef, prefix=prefix)


def test_failing_compiler_reports_its_message(tmp_path, monkeypatch):
    cache = tmp_path / "c"
    cc = tmp_path / "broken-cc"
    cc.write_text("#!/bin/sh\necho 'broken-cc: simulated failure, code 77' >&2\nexit 77\n")
    cc.chmod(cc.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(cache))
    monkeypatch.setenv("CC", str(cc))
    before = build.stats["compiles"]
    with pytest.raises(build.BuildError, match="broken-cc: simulated failure, code 77"):
        build.build(_tiny_sources("ccfail"))
    assert build.stats["compiles"] == before + 1
    assert entries(str(cache)) == [], f"a failed build left {entries(str(cache))}"


def test_poisoned_source_reports_the_compiler_error(tmp_path, monkeypatch):
    cache = tmp_path / "c"
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(cache))
    with pytest.raises(build.BuildError) as info:
        build.build(_tiny_sources("poisoned", '\n#error "lstmgen-poison-marker"\n'))
    msg = str(info.value)
    assert "lstmgen-poison-marker" in msg and "poisoned.c" in msg
    assert entries(str(cache)) == []
    # the same model without the poison builds fine in the same cache afterwards
    module = build.build(_tiny_sources("poisoned"))
    assert hasattr(module.lib, "poisoned_forward")
    assert_clean(str(cache))


def test_model_from_cache_matches_reference_after_rebuild(tmp_path, monkeypatch):
    """In-process: a damaged entry under a fresh module name is rebuilt and computes correctly."""
    monkeypatch.setenv("LSTMGEN_CACHE_DIR", str(tmp_path / "c"))
    spec = lstmgen.LSTMSpec(input_size=2, hidden_size=3, num_layers=2)
    w = lstmgen.random_weights(spec, seed=3)
    real_key = build.build_key

    def key_with_a_broken_entry(sources, flags):  # plant a broken entry right where compile will look
        key = real_key(sources, flags)
        entry = tmp_path / "c" / key
        entry.mkdir(parents=True, exist_ok=True)
        (entry / "MANIFEST").write_text("module nonsense\n")
        return key

    monkeypatch.setattr(build, "build_key", key_with_a_broken_entry)
    before = build.stats["compiles"]
    model = lstmgen.compile(spec, w, prefix="inproc")
    assert build.stats["compiles"] == before + 1
    x = np.random.default_rng(0).standard_normal((4, 2, 2)).astype(np.float32)
    out, _ = model(x)
    ref, _ = lstmgen.reference.lstm_forward(spec, w, x)
    assert np.abs(out - ref).max() < 1e-5
    assert_clean(str(tmp_path / "c"))
