"""Build: compile rendered C sources into a Python extension with cffi, cached by content hash.

Input: `codegen.Sources`. Output: the loaded extension module (`module.ffi`, `module.lib`).

Cache layout: `$LSTMGEN_CACHE_DIR` (default ~/.cache/lstmgen) / <key> / {<module>.so, MANIFEST}.
The key hashes the sources, cdef, compiler flags, cffi version and Python ABI, so an entry is
reused only for exactly the same build. An entry is written in a private temporary folder and
renamed into place in one step, so concurrent builds of one model cannot see a half entry; the
MANIFEST holds the library's sha256, so a corrupted or truncated entry is detected and rebuilt.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.machinery
import importlib.util
import io
import os
import shutil
import sys
import sysconfig
import tempfile
import threading
from types import ModuleType

import cffi

from .codegen import Sources

# Counts real compiler runs in this process (tests use it to prove cache hits).
stats = {"compiles": 0, "cache_hits": 0}
_lock = threading.Lock()
_loaded: dict[str, ModuleType] = {}


class BuildError(RuntimeError):
    """The C compiler failed; the message carries its output."""


def cache_root() -> str:
    root = os.environ.get("LSTMGEN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lstmgen")
    return os.path.abspath(root)


def compile_flags(target: str) -> list[str]:
    """Flags for host builds. ISO C99 (no implicit FMA contraction) so schedules agree bit for bit."""
    if target not in ("native", "portable"):
        raise ValueError(f"target must be 'native' or 'portable', got {target!r}")
    flags = ["-O3", "-std=c99", "-ffp-contract=off", "-fno-math-errno"]
    if target == "native":
        flags.append("-march=native")
    return flags


def build_key(sources: Sources, flags: list[str]) -> str:
    h = hashlib.sha256()
    parts = [f"cffi {cffi.__version__}", sys.implementation.cache_tag or "", sysconfig.get_config_var("EXT_SUFFIX") or "", " ".join(flags), sources.cdef]
    for name in sorted(sources.files):
        parts += [name, sources.files[name]]
    for part in parts:
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


def _sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _entry_ok(entry: str, module_name: str) -> str | None:
    """Path of the library if the entry is complete and intact, else None."""
    manifest = os.path.join(entry, "MANIFEST")
    try:
        with open(manifest, encoding="utf-8") as fh:
            lines = dict(line.split(" ", 1) for line in fh.read().splitlines() if " " in line)
        lib = os.path.join(entry, lines["library"])
        if lines.get("module") != module_name or _sha256_file(lib) != lines["sha256"]:
            return None
        return lib
    except (OSError, KeyError, ValueError):
        return None


def _compile_into(sources: Sources, module_name: str, flags: list[str], workdir: str) -> str:
    """Run cffi + the C compiler in workdir; return the built library's path."""
    for name, text in sources.files.items():
        with open(os.path.join(workdir, name), "w", encoding="utf-8") as fh:
            fh.write(text)
    ffi = cffi.FFI()
    ffi.cdef(sources.cdef)
    c_files = [os.path.join(workdir, n) for n in sorted(sources.files) if n.endswith(".c")]
    ffi.set_source(
        module_name,
        f'#include "{sources.prefix}.h"\n',
        sources=c_files,
        include_dirs=[workdir],
        extra_compile_args=flags,
        libraries=["m"],
    )
    out = io.StringIO()
    stats["compiles"] += 1
    try:
        with _captured_fds() as captured, contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            lib = ffi.compile(tmpdir=workdir, verbose=False)
    except Exception as exc:  # cffi raises VerificationError / CompileError subclasses
        detail = (captured.get("text", "") + out.getvalue()).strip()
        raise BuildError(f"C compilation of {sources.prefix}.c failed: {exc}\n{detail[-4000:]}") from None
    return lib


@contextlib.contextmanager
def _captured_fds():
    """Capture the compiler's output written to file descriptors 1 and 2."""
    result: dict[str, str] = {}
    saved = []
    tmp = tempfile.TemporaryFile(mode="w+b")
    try:
        for fd in (1, 2):
            saved.append(os.dup(fd))
            os.dup2(tmp.fileno(), fd)
        try:
            yield result
        finally:
            for fd, old in zip((1, 2), saved):
                os.dup2(old, fd)
                os.close(old)
            tmp.seek(0)
            result["text"] = tmp.read().decode("utf-8", "replace")
    finally:
        tmp.close()


def _load(module_name: str, path: str) -> ModuleType:
    if module_name in _loaded:
        return _loaded[module_name]
    loader = importlib.machinery.ExtensionFileLoader(module_name, path)
    spec = importlib.util.spec_from_file_location(module_name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    _loaded[module_name] = module
    return module


def build(sources: Sources, *, target: str = "native") -> ModuleType:
    """Compile (or fetch from the cache) and load the extension for these sources."""
    flags = compile_flags(target)
    key = build_key(sources, flags)
    module_name = f"_lstmgen_{sources.prefix}_{key}"
    with _lock:
        if module_name in _loaded:
            stats["cache_hits"] += 1
            return _loaded[module_name]
        root = cache_root()
        writable = True
        try:
            os.makedirs(root, exist_ok=True)
            writable = os.access(root, os.W_OK)
        except OSError:
            writable = False
        entry = os.path.join(root, key)
        lib = _entry_ok(entry, module_name) if os.path.isdir(entry) else None
        if lib is not None:
            stats["cache_hits"] += 1
            return _load(module_name, lib)
        if not writable:
            # Read-only or missing cache: build into a private folder for this process.
            root = tempfile.mkdtemp(prefix="lstmgen-cache-")
            entry = os.path.join(root, key)
        staging = tempfile.mkdtemp(prefix=f".build-{key[:8]}-", dir=root)
        try:
            built = _compile_into(sources, module_name, flags, staging)
            final_dir = os.path.join(staging, "entry")
            os.mkdir(final_dir)
            lib_name = os.path.basename(built)
            shutil.move(built, os.path.join(final_dir, lib_name))
            for name, text in sources.files.items():  # keep the C beside the library, for reading
                with open(os.path.join(final_dir, name), "w", encoding="utf-8") as fh:
                    fh.write(text)
            with open(os.path.join(final_dir, "MANIFEST"), "w", encoding="utf-8") as fh:
                fh.write(f"module {module_name}\nlibrary {lib_name}\nsha256 {_sha256_file(os.path.join(final_dir, lib_name))}\n")
            if os.path.isdir(entry):  # a broken entry: move it aside, then replace it
                shutil.rmtree(entry, ignore_errors=True)
            try:
                os.rename(final_dir, entry)
            except OSError:
                pass  # another process renamed its identical entry first
            lib = _entry_ok(entry, module_name)
            if lib is None:
                raise BuildError(f"cache entry {entry} is unusable after building")
            return _load(module_name, lib)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
