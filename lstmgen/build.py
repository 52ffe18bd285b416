"""Build: compile rendered C sources into a Python extension with cffi, cached by content hash.

Input: `codegen.Sources` (and the ScheduledProgram they were rendered from). Output: the loaded
extension module (`module.ffi`, `module.lib`), wrapped with its program and prefix in an `Artifact`.

cffi only writes the wrapper's C (`make_c_source`); the C compiler is then run here, in a
subprocess with its own working folder, captured pipes and a controlled environment, so a build
changes nothing process-wide (no chdir, no redirected file descriptors) and nothing outside what
the cache key records reaches the compiler. The compiler is `$LSTMGEN_CC`, else `$CC`, else `cc`:
its absolute path, any extra words and its `--version` output are part of the key. `$CFLAGS`,
`$LDFLAGS`, `$CPATH` and the like are ignored; `$LSTMGEN_CFLAGS` adds flags on purpose (and to the
key). Flags that drop IEEE semantics (-ffast-math, -Ofast, ...) are refused: NaN must stay NaN,
and a fast-math library would switch the whole process to flush-to-zero when loaded.

Cache layout: `$LSTMGEN_CACHE_DIR` (default ~/.cache/lstmgen) / <key> / {<module>.so, MANIFEST}.
The key hashes the sources, cdef, compiler identity and flags, cffi version and Python ABI, so an
entry is reused only for exactly the same build. The cache trusts only what this user made: the
root (created 0700) and every entry must be owned by this user (or root) and not writable by group
or others, else BuildError names the path. A library is compiled in a private temporary folder,
copied into a staging folder of the cache and renamed into place in one step, so concurrent builds
of one model cannot see a half entry; the MANIFEST holds the library's sha256, so a corrupted or
truncated entry is detected and rebuilt (a broken entry is renamed aside before it is replaced,
never deleted in place). Builders of one key take a thread lock and an flock on `.<key>.lock`
(opened without following links), so N threads or processes wanting one model compile it once,
and a cache hit never waits behind another model's compile. A cache that cannot be written
(read-only, full disk, quota) is still read; the library then stays private to this process
(a logged warning) and its folder is removed once it is loaded.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.machinery
import importlib.util
import io
import logging
import os
import shlex
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import cffi
from cffi.recompiler import make_c_source

from . import kernels
from .codegen import Sources
from .schedule import ScheduledProgram

log = logging.getLogger(__name__)

# Counts real compiler runs in this process (tests use it to prove cache hits).
stats = {"compiles": 0, "cache_hits": 0}
_state_lock = threading.Lock()  # guards _loaded, _key_locks and stats; held for dict updates only
_key_locks: dict[str, threading.Lock] = {}  # one per cache key: builders of one model take turns
_loaded: dict[str, ModuleType] = {}
_lock_fds: set[int] = set()  # open flock files (a forked child closes its copies: _after_fork_in_child)
_versions: dict[tuple, str] = {}  # (compiler words, its file's identity) -> `--version` output

# Flags that let the compiler assume no NaN/Inf or reassociate: refused (see the module docstring).
FAST_MATH_FLAGS = ("-ffast-math", "-Ofast", "-funsafe-math-optimizations", "-ffinite-math-only",
                   "-ffp-model=fast")
# The only variables of the caller's environment the compiler sees (it finds `as` and `ld` on
# PATH; HOME for compiler wrappers such as ccache; SDKROOT/DEVELOPER_DIR select macOS's SDK).
_PASSED_ENV = ("PATH", "HOME", "SDKROOT", "DEVELOPER_DIR")
# Arguments every build adds (in the key too). -DNDEBUG as setuptools passes it from Python's own
# CFLAGS: the assert()s of cffi's wrapper stay compiled out.
_FIXED_ARGS = ("-DNDEBUG", "-fPIC")
# A cache that cannot take a new entry for these reasons still gets a working (private) build.
_NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


class BuildError(RuntimeError):
    """The C compiler failed (the message carries its output), or the cache cannot be trusted."""


def cache_root() -> str:
    root = os.environ.get("LSTMGEN_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "lstmgen")
    return os.path.abspath(root)


def _check_fast_math(words: list[str], where: str) -> None:
    for word in words:
        if word in FAST_MATH_FLAGS:
            raise ValueError(f"{where} contains {word}: lstmgen refuses flags that drop IEEE float semantics "
                             f"(NaN inputs would give finite outputs, and loading the library would make the "
                             f"whole process flush denormals to zero); remove {word}")


def compile_flags(target: str) -> list[str]:
    """Flags of a host build: the target's (kernels.compile_flags: ISO C99, no implicit FMA
    contraction, so schedules agree bit for bit; the ISA flags) plus $LSTMGEN_CFLAGS."""
    flags = list(kernels.compile_flags(target))
    extra = shlex.split(os.environ.get("LSTMGEN_CFLAGS", ""))
    _check_fast_math(extra, "LSTMGEN_CFLAGS")
    return flags + extra


def _compiler_env(tmpdir: str | None = None) -> dict[str, str]:
    """The environment the compiler runs in: nothing of the caller's but _PASSED_ENV."""
    env = {name: os.environ[name] for name in _PASSED_ENV if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env["LC_ALL"] = "C"  # messages in one language, whatever the caller's locale
    if tmpdir is not None:
        env["TMPDIR"] = tmpdir  # the compiler's temporaries go into the private build folder
    return env


def _compiler_version(words: list[str], exe: str) -> str:
    """`<compiler> --version`, remembered while the compiler's file stays the same."""
    try:
        st = os.stat(exe)
        ident = (tuple(words), st.st_ino, st.st_size, st.st_mtime_ns)
    except OSError:
        ident = (tuple(words), 0, 0, 0)
    with _state_lock:
        known = _versions.get(ident)
    if known is not None:
        return known
    try:
        proc = subprocess.run([*words, "--version"], capture_output=True, env=_compiler_env(), stdin=subprocess.DEVNULL,
                              timeout=60, check=False)
        text = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
        version = text if proc.returncode == 0 else f"(--version exited {proc.returncode}) {text}"
    except (OSError, subprocess.SubprocessError) as exc:
        version = f"(--version failed: {exc})"
    with _state_lock:
        _versions[ident] = version
    return version


@dataclass(frozen=True)
class Toolchain:
    """The exact compiler invocation of a build; everything in it goes into the cache key."""
    compiler: tuple[str, ...]  # the executable (absolute path) and any extra words from CC
    flags: tuple[str, ...]  # compile_flags(target)
    version: str  # the compiler's --version output

    def key_parts(self) -> list[str]:
        return [shlex.join(self.compiler), self.version, *self.flags, *_FIXED_ARGS, *_link_flags()]


def toolchain(target: str) -> Toolchain:
    """The compiler ($LSTMGEN_CC, else $CC, else cc) and flags a build of `target` uses."""
    flags = compile_flags(target)
    source = "LSTMGEN_CC" if os.environ.get("LSTMGEN_CC") else "CC" if os.environ.get("CC") else None
    words = shlex.split(os.environ[source]) if source else ["cc"]
    if not words:
        raise BuildError(f"${source} is blank: name a C compiler")
    _check_fast_math(words[1:], f"${source} ({os.environ[source]!r})" if source else "cc")
    exe = shutil.which(words[0])
    if exe is None and source is None:
        exe = shutil.which("gcc") or shutil.which("clang")
    if exe is None:
        where = f"${source} = {os.environ[source]!r}" if source else "cc, gcc or clang on PATH"
        raise BuildError(f"no C compiler found ({where}): install one or set LSTMGEN_CC")
    words = [os.path.abspath(exe), *words[1:]]
    return Toolchain(tuple(words), tuple(flags), _compiler_version(words, words[0]))


def build_key(sources: Sources, flags: list[str]) -> str:
    """`flags`: everything about the compiler invocation (Toolchain.key_parts)."""
    h = hashlib.sha256()
    parts = [f"cffi {cffi.__version__}", sys.implementation.cache_tag or "", sysconfig.get_config_var("EXT_SUFFIX") or "", " ".join(flags), sources.cdef]
    for name in sorted(sources.files):
        parts += [name, sources.files[name]]
    for part in parts:
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()[:32]


# ---- trust: the cache only runs code this user (or root) made -------------------------------


def _untrusted(path: str, st: os.stat_result) -> str | None:
    """Why a cache path may hold someone else's code, or None."""
    if hasattr(os, "geteuid") and st.st_uid not in (os.geteuid(), 0):
        return f"is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"is writable by group or others (mode {stat.S_IMODE(st.st_mode):04o})"
    return None


def _refuse(path: str, why: str, what: str) -> BuildError:
    return BuildError(f"lstmgen cache {what} {path} {why}: someone else could plant a library there that this "
                      f"process would load. Fix it (chown, or chmod go-w), remove it, or point LSTMGEN_CACHE_DIR "
                      f"at a folder only you can write")


def _open_root(root: str) -> bool:
    """Check (or create, mode 0700) the cache root. True when it is a usable folder; False when
    it cannot be made (then builds stay private). BuildError when it exists but is not trusted."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        try:
            os.makedirs(os.path.dirname(root), exist_ok=True)
            os.mkdir(root, 0o700)
            os.chmod(root, 0o700)  # whatever the umask
        except FileExistsError:
            pass  # another builder made it first: check it below
        except OSError as exc:
            log.warning("lstmgen: cannot create the cache folder %s (%s); building privately", root, exc.strerror)
            return False
        try:
            st = os.stat(root)
        except OSError:
            return False
    except OSError as exc:  # a path through a regular file, a loop of links, ...
        log.warning("lstmgen: cannot use the cache folder %s (%s); building privately", root, exc.strerror)
        return False
    if not stat.S_ISDIR(st.st_mode):
        log.warning("lstmgen: the cache path %s is not a folder; building privately", root)
        return False
    why = _untrusted(root, st)
    if why:
        raise _refuse(root, why, "folder")
    return True


def _sha256_fd(fd: int) -> str:
    h = hashlib.sha256()
    with os.fdopen(os.dup(fd), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_trusted(path: str, what: str) -> tuple[bytes, str] | None:
    """(first 64 KiB, sha256) of a regular file owned by us and not writable by others, opened
    without following a link; None when it is missing or not a regular file (a broken entry)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        why = _untrusted(path, st)
        if why:
            raise _refuse(path, why, what)
        head = os.pread(fd, 1 << 16, 0) if hasattr(os, "pread") else b""
        return head, _sha256_fd(fd)
    finally:
        os.close(fd)


def _entry_ok(entry: str, module_name: str) -> str | None:
    """Path of the library if the entry is complete, intact and trusted, else None (rebuild).
    BuildError for an entry someone else could have written."""
    try:
        st = os.lstat(entry)
    except OSError:
        return None
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(entry, "is a symbolic link", "entry")
    if not stat.S_ISDIR(st.st_mode):
        return None
    why = _untrusted(entry, st)
    if why:
        raise _refuse(entry, why, "entry")
    manifest = _read_trusted(os.path.join(entry, "MANIFEST"), "file")
    if manifest is None:
        return None
    try:
        lines = dict(line.split(" ", 1) for line in manifest[0].decode("utf-8").splitlines() if " " in line)
        name = lines["library"]
        if os.path.basename(name) != name or name in ("", ".", ".."):  # never leave the entry
            return None
        lib = os.path.join(entry, name)
        if lines.get("module") != module_name:
            return None
        got = _read_trusted(lib, "file")
        if got is None or got[1] != lines["sha256"]:
            return None
        return lib
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


@contextlib.contextmanager
def _build_lock(root: str, key: str):
    """Serialise the builders of one key across processes, so N processes that want the same
    model compile it once. Best effort: without a lock (no fcntl, a read-only folder, a file
    system that refuses it) concurrent builders still each produce a complete entry and only one
    is kept. The lock file is never followed through a link: a planted one is refused."""
    path = os.path.join(root, f".{key}.lock")
    try:
        import fcntl

        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0), 0o600)
    except ImportError:
        yield
        return
    except OSError as exc:
        if os.path.islink(path):
            raise BuildError(f"lstmgen cache lock {path} is a symbolic link: refusing to follow it (remove it)") from None
        if exc.errno not in _NO_ROOM:
            log.warning("lstmgen: cannot open the build lock %s (%s)", path, exc.strerror)
        yield
        return
    _lock_fds.add(fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BuildError(f"lstmgen cache lock {path} is not a regular file (remove it)")
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        _lock_fds.discard(fd)
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


# ---- the compiler run ---------------------------------------------------------------------


def _link_flags() -> list[str]:
    if sys.platform == "darwin":
        return ["-bundle", "-undefined", "dynamic_lookup"]
    return ["-shared"]


def _compile_into(sources: Sources, module_name: str, tc: Toolchain, workdir: str) -> str:
    """Write the sources and cffi's wrapper into workdir and run the compiler there (a
    subprocess: cwd, environment and pipes of its own); return the built library's path."""
    if os.name == "nt":
        raise BuildError("runtime builds need a POSIX C compiler (cc, gcc or clang); on Windows use "
                         "lstmgen.generate and build the C yourself")
    for name, text in sources.files.items():
        with open(os.path.join(workdir, name), "w", encoding="utf-8") as fh:
            fh.write(text)
    ffi = cffi.FFI()
    ffi.cdef(sources.cdef)
    wrapper = io.StringIO()
    make_c_source(ffi, module_name, f'#include "{sources.prefix}.h"\n', wrapper)
    wrapper_c = f"{module_name}.c"
    with open(os.path.join(workdir, wrapper_c), "w", encoding="utf-8") as fh:
        fh.write(wrapper.getvalue())
    library = module_name + (sysconfig.get_config_var("EXT_SUFFIX") or ".so")
    paths = sysconfig.get_paths()
    includes = [f"-I{d}" for d in dict.fromkeys([paths["include"], paths.get("platinclude", paths["include"])])]
    c_files = [n for n in sorted(sources.files) if n.endswith(".c")]
    cmd = [*tc.compiler, *tc.flags, *_FIXED_ARGS, *_link_flags(), *includes, "-I.", wrapper_c, *c_files,
           "-o", library, "-lm"]
    with _state_lock:
        stats["compiles"] += 1
    try:
        proc = subprocess.run(cmd, cwd=workdir, env=_compiler_env(workdir), stdin=subprocess.DEVNULL,
                              capture_output=True, check=False)
    except OSError as exc:
        raise BuildError(f"C compilation of {sources.prefix}.c failed: cannot run {tc.compiler[0]}: {exc}") from None
    if proc.returncode != 0 or not os.path.isfile(os.path.join(workdir, library)):
        detail = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
        raise BuildError(f"C compilation of {sources.prefix}.c failed (exit code {proc.returncode}): "
                         f"{shlex.join(cmd)}\n{detail[-4000:]}")
    return os.path.join(workdir, library)


def _load(module_name: str, path: str) -> ModuleType:
    with _state_lock:
        if module_name in _loaded:
            return _loaded[module_name]
    loader = importlib.machinery.ExtensionFileLoader(module_name, path)
    spec = importlib.util.spec_from_file_location(module_name, path, loader=loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    with _state_lock:
        return _loaded.setdefault(module_name, module)


def _hit(module_name: str, lib: str | None, *, count: bool = True) -> ModuleType | None:
    """The module loaded from an intact entry's library (None: no entry, or it failed to load)."""
    if lib is None:
        return None
    with contextlib.suppress(ImportError, OSError):  # else: replaced or damaged under us
        module = _load(module_name, lib)
        if count:
            with _state_lock:
                stats["cache_hits"] += 1
        return module
    return None


def build(sources: Sources, *, target: str = "native") -> ModuleType:
    """Compile (or fetch from the cache) and load the extension for these sources."""
    tc = toolchain(target)
    key = build_key(sources, tc.key_parts())
    module_name = f"_lstmgen_{sources.prefix}_{key}"
    with _state_lock:
        if module_name in _loaded:
            stats["cache_hits"] += 1
            return _loaded[module_name]
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # other keys go on: a hit for model B never waits behind model A's compile
        with _state_lock:
            if module_name in _loaded:  # another thread of this process built it meanwhile
                stats["cache_hits"] += 1
                return _loaded[module_name]
        root = cache_root()
        if not _open_root(root):
            return _build_and_load(sources, module_name, tc, None)
        entry = os.path.join(root, key)
        module = _hit(module_name, _entry_ok(entry, module_name))
        if module is not None:
            return module
        with _build_lock(root, key):
            module = _hit(module_name, _entry_ok(entry, module_name))  # built by another process meanwhile?
            if module is not None:
                return module
            return _build_and_load(sources, module_name, tc, entry)


def _write_entry(folder: str, built: str, sources: Sources, module_name: str) -> None:
    """Fill `folder` with a complete entry: the library, the C beside it (for reading), the MANIFEST.
    Modes are set explicitly (a umask of 002 must not make an entry the cache would refuse)."""
    lib_name = os.path.basename(built)
    with open(built, "rb") as src, open(os.path.join(folder, lib_name), "wb") as dst:
        data = src.read()
        dst.write(data)
    os.chmod(os.path.join(folder, lib_name), 0o755)
    for name, text in sources.files.items():
        with open(os.path.join(folder, name), "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(os.path.join(folder, name), 0o644)
    with open(os.path.join(folder, "MANIFEST"), "w", encoding="utf-8") as fh:
        fh.write(f"module {module_name}\nlibrary {lib_name}\nsha256 {hashlib.sha256(data).hexdigest()}\n")
    os.chmod(os.path.join(folder, "MANIFEST"), 0o644)
    os.chmod(folder, 0o755)


def _build_and_load(sources: Sources, module_name: str, tc: Toolchain, entry: str | None) -> ModuleType:
    """Compile in a private temporary folder, publish the entry (when there is a cache to publish
    into and room in it), load the library."""
    private = tempfile.mkdtemp(prefix="lstmgen-build-")
    try:
        built = _compile_into(sources, module_name, tc, private)
        if entry is not None:
            try:
                staging = tempfile.mkdtemp(prefix=f".build-{os.path.basename(entry)[:8]}-", dir=os.path.dirname(entry))
                try:
                    final_dir = os.path.join(staging, "entry")
                    os.mkdir(final_dir)
                    _write_entry(final_dir, built, sources, module_name)
                    _publish(final_dir, entry, module_name)
                finally:
                    shutil.rmtree(staging, ignore_errors=True)
            except OSError as exc:  # full disk, quota, read-only: this process still gets its model
                level = logging.WARNING if exc.errno in _NO_ROOM else logging.ERROR
                log.log(level, "lstmgen: cannot write the cache entry %s (%s); using a private build", entry, exc.strerror or exc)
            else:
                module = _hit(module_name, _entry_ok(entry, module_name), count=False)
                if module is not None:
                    return module
        # Not published (no usable cache, no room, or the entry changed under us): load our own
        # copy. A loaded library stays mapped after its file is deleted below.
        return _load(module_name, built)
    finally:
        shutil.rmtree(private, ignore_errors=True)


def _after_fork_in_child() -> None:
    """A fork while another thread was building must not leave the child waiting forever: the
    thread locks it held are re-created, and the child closes its copies of the flock files (an
    flock is released only when every copy of its descriptor is closed, and the thread that would
    close the child's copy does not exist there). The child then waits for the parent's build of
    that model like any other process would."""
    global _state_lock, _key_locks
    _state_lock = threading.Lock()
    _key_locks = {}
    for fd in list(_lock_fds):
        with contextlib.suppress(OSError):
            os.close(fd)
    _lock_fds.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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
