"""Build: compile rendered C sources into a Python extension with cffi, cached by content hash.

Input: `codegen.Sources` (and the ScheduledProgram they were rendered from). Output: the loaded
extension module (`module.ffi`, `module.lib`), wrapped with its program and prefix in an `Artifact`.

Cache layout: `$LSTMGEN_CACHE_DIR` (default ~/.cache/lstmgen) / <key> / {<module>.so, MANIFEST}.
The key hashes the sources, cdef, compiler flags, cffi version and Python ABI, so an entry is
reused only for exactly the same build. An entry is written in a private temporary folder and
renamed into place in one step, so concurrent builds of one model cannot see a half entry; the
MANIFEST holds the library's sha256, so a corrupted or truncated entry is detected and rebuilt
(a broken entry is renamed aside before it is replaced, never deleted in place). Builders of one
key take an flock on `.<key>.lock`, so N processes wanting one model compile it once. A cache
folder that cannot be written (read-only mount, permissions) is still read; misses then build in
a private temporary folder that is removed once the library is loaded.
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
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import cffi

from . import kernels
from .codegen import Sources
from .schedule import ScheduledProgram

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
    """Flags for host builds. ISO C99 (no implicit FMA contraction) so schedules agree bit for bit;
    the ISA flags of the target (kernels.compile_flags)."""
    return kernels.compile_flags(target)


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
        name = lines["library"]
        if os.path.basename(name) != name or name in ("", ".", ".."):  # never leave the entry
            return None
        lib = os.path.join(entry, name)
        if lines.get("module") != module_name or _sha256_file(lib) != lines["sha256"]:
            return None
        return lib
    except (OSError, KeyError, ValueError, UnicodeDecodeError):
        return None


def _staging_root(root: str) -> tuple[str, bool]:
    """(folder to build in, private?): the cache root when it can be written, else a private
    temporary folder (read-only or unusable cache: build for this process only, leave no trace)."""
    try:
        os.makedirs(root, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=".probe-", dir=root)
        os.rmdir(probe)
        return root, False
    except OSError:
        return tempfile.mkdtemp(prefix="lstmgen-cache-"), True


@contextlib.contextmanager
def _build_lock(root: str, key: str):
    """Serialise the builders of one key across processes, so N processes that want the same
    model compile it once. Best effort: without a lock (no fcntl, a file system that refuses it)
    concurrent builders still each produce a complete entry and only one is kept."""
    try:
        import fcntl

        fd = os.open(os.path.join(root, f".{key}.lock"), os.O_RDWR | os.O_CREAT, 0o644)
    except (ImportError, OSError):
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock; the empty lock file stays for the next builder


def _publish(final_dir: str, entry: str, module_name: str) -> None:
    """Rename a complete entry into place. An intact entry already there (another process won
    the race) is kept; a broken one is first renamed aside (atomic), then deleted."""
    for _ in range(3):
        try:
            os.rename(final_dir, entry)
            return
        except OSError:
            pass
        if _entry_ok(entry, module_name) is not None:
            return
        aside = f"{entry}.broken-{os.getpid()}-{threading.get_ident()}"
        try:
            os.rename(entry, aside)
        except OSError:
            continue
        if os.path.isdir(aside) and not os.path.islink(aside):
            shutil.rmtree(aside, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(aside)


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
        entry = os.path.join(root, key)
        lib = _entry_ok(entry, module_name)
        if lib is not None:
            with contextlib.suppress(ImportError, OSError):  # else: replaced or damaged under us
                module = _load(module_name, lib)
                stats["cache_hits"] += 1
                return module
        build_root, private = _staging_root(root)
        if private:
            return _build_and_load(sources, module_name, flags, key, entry, build_root, private)
        with _build_lock(root, key):
            lib = _entry_ok(entry, module_name)  # built by another process while we waited?
            if lib is not None:
                with contextlib.suppress(ImportError, OSError):
                    module = _load(module_name, lib)
                    stats["cache_hits"] += 1
                    return module
            return _build_and_load(sources, module_name, flags, key, entry, build_root, private)


def _build_and_load(sources: Sources, module_name: str, flags: list[str], key: str, entry: str,
                    build_root: str, private: bool) -> ModuleType:
    """Compile in a staging folder, publish the entry (unless private), load the library."""
    staging = tempfile.mkdtemp(prefix=f".build-{key[:8]}-", dir=build_root)
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
        lib = None
        if not private:
            _publish(final_dir, entry, module_name)
            lib = _entry_ok(entry, module_name)
        if lib is not None:
            with contextlib.suppress(ImportError, OSError):
                return _load(module_name, lib)
        # Not published (private build, or the entry changed under us): load our own copy.
        # A loaded library stays mapped after its file is deleted below.
        own = _entry_ok(final_dir, module_name)
        if own is None:
            raise BuildError(f"the library built in {staging} is unusable")
        return _load(module_name, own)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if private:
            shutil.rmtree(build_root, ignore_errors=True)


@dataclass(frozen=True)
class Artifact:
    """A built model: the ScheduledProgram its C was rendered from, the C prefix and the loaded
    extension. What runtime.Model runs; public as `model.artifact`."""

    program: ScheduledProgram
    prefix: str
    module: ModuleType
    target: str = "native"  # the target the library was compiled for (its flags)
    # How to make this artifact again in another process: (function, args), both picklable
    # (api.compile sets it; Model pickles by it and rebuilds from the cache on the other side)
    recipe: tuple[Any, tuple[Any, ...]] | None = None

    @property
    def ffi(self) -> Any:
        return self.module.ffi

    @property
    def lib(self) -> Any:
        return self.module.lib

    def entry(self, name: str) -> Any:
        """The C function `<prefix>_<name>` (None when this model has no such entry point)."""
        return getattr(self.module.lib, f"{self.prefix}_{name}", None)


def build_artifact(program: ScheduledProgram, sources: Sources, *, target: str = "native",
                   recipe: tuple[Any, tuple[Any, ...]] | None = None) -> Artifact:
    """Sources (rendered from `program`) -> a loaded Artifact (compiled, or from the cache)."""
    return Artifact(program, sources.prefix, build(sources, target=target), target, recipe)
