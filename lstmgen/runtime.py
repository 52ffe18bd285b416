"""Runtime: a built extension plus a weight set, callable like torch.nn.LSTM.

Input: an `Artifact` from build.py (the loaded extension, its ScheduledProgram and prefix) and a
weight set (torch-named, or already packed in the layout the artifact's kernels read).
Output: `Model` — `model(x, hx=None, lengths=None) -> (out, (h_n, c_n))` — and `Stream` for
step-at-a-time use. numpy buffers are handed to C without copies when they are already
C-contiguous native float32; anything else is converted once (or refused with a clear error).
The GIL is released during the C call (cffi does this), every call has its own outputs and every
thread its own workspace, so one Model may be called from several threads at once. A thread keeps
its workspace for its next call, within a budget per Model over all threads (_KEEP_WORKSPACE_FLOATS):
past it, calls allocate their own; a thread whose next call needs far less drops the big one.
Calls with an input shape already validated take a short path (_fast_call).
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .abi import FIELD_NAMES, HEAD_FIELD_NAMES, error_text
from .build import Artifact
from .schedule import Schedule, ScheduledProgram
from .spec import DEFAULT_ACTIVATIONS, LSTMSpec
from .weights import PackedCell, PackedLinear, as_numpy, pack, split_packed

# numpy dtype (without byte order) -> the C element type of a weight array
_CTYPES = {"f4": "float", "u2": "uint16_t", "i1": "int8_t"}

_INT32_MAX = 2**31 - 1
_F32 = np.dtype(np.float32)
# A thread keeps its last workspace (and its C pointer) for its next call: no allocation, no page
# faults on the hot path. What the threads of one Model keep together is at most this many floats
# (64 MiB); a workspace that would pass it is allocated for its call only. A kept workspace more
# than _SHRINK_RATIO times what a call needs (and over _SHRINK_MIN_FLOATS) is dropped by that call.
_KEEP_WORKSPACE_FLOATS = 1 << 24
_SHRINK_RATIO = 4
_SHRINK_MIN_FLOATS = 1 << 16  # 256 KiB: never worth giving back


def _aligned_empty(n: int) -> np.ndarray:
    """n float32 starting on a 64-byte boundary (a cache line; numpy only promises 16)."""
    flat = np.empty(n + 16, dtype=np.float32)
    skip = (-flat.ctypes.data % 64) // 4
    return flat[skip: skip + n]


def _state_pair(h_shape: tuple[int, int, int], c_shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """h and c arrays of these shapes, each on a 64-byte boundary, from one allocation (for
    long-lived buffers: finding the boundary costs a microsecond)."""
    nh, nc = h_shape[0] * h_shape[1] * h_shape[2], c_shape[0] * c_shape[1] * c_shape[2]
    off = (nh + 15) // 16 * 16
    flat = _aligned_empty(off + nc)
    return flat[:nh].reshape(h_shape), flat[off: off + nc].reshape(c_shape)


class _KeptWorkspace:
    """One thread's kept workspace. Referenced strongly only from that thread's slot of
    Model._tls, weakly from Model._kept: when the thread ends it leaves the budget by itself."""
    __slots__ = ("pair", "size", "floor", "__weakref__")

    def __init__(self, ws: np.ndarray, ptr: Any):
        self.pair = (ws, ptr)
        self.size = ws.size
        self.floor = ws.size // _SHRINK_RATIO if ws.size > _SHRINK_MIN_FLOATS else 0  # smaller calls drop it


def _ready(x: Any) -> bool:
    """Is x already what the C reads (an aligned, dense, native float32 ndarray)? Cheap."""
    if type(x) is not np.ndarray or x.dtype != _F32:
        return False
    flags = x.flags
    return flags.c_contiguous and flags.aligned


def _as_float_array(name: str, value: Any) -> np.ndarray:
    """The array as given (no copy yet), after checking it holds real floats."""
    arr = as_numpy(value, f"{name} must be a floating-point array")
    if arr.dtype.kind != "f":
        raise TypeError(f"{name} must be a floating-point array (float32 preferred), got dtype {arr.dtype}")
    return arr


def _physical_memory() -> float:
    """Bytes of RAM (inf when the platform does not say)."""
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return float("inf")


_C_LAYOUT = ["C_CONTIGUOUS", "ALIGNED"]  # what a C float* may point at: dense, native, aligned


def _as_f32(name: str, value: Any) -> np.ndarray:
    """float32, C-contiguous, aligned, native byte order: the input itself when it already is, else
    one copy (np.ascontiguousarray alone would pass an unaligned buffer through)."""
    return np.require(_as_float_array(name, value), np.float32, _C_LAYOUT)


def _check_shape(name: str, arr: np.ndarray, shape: tuple[int, ...], meaning: str) -> None:
    if arr.shape != shape:
        raise ValueError(f"{name} has shape {arr.shape}, expected {shape} {meaning}")


class Model:
    """A compiled LSTM with one weight set. Call it like torch.nn.LSTM's forward."""

    def __init__(self, artifact: Artifact, weights: Mapping[str, Any] | Sequence[PackedCell | PackedLinear], *,
                 allow_nonfinite: bool = False):
        self.artifact = artifact
        self.spec: LSTMSpec = artifact.program.spec
        self.prefix = prefix = artifact.prefix
        spec = self.spec
        self._ffi = artifact.ffi
        self._forward = artifact.entry("forward")
        self._workspace_floats = artifact.entry("workspace_floats")
        self._step = artifact.entry("step")
        unit_block, panel = artifact.program.unit_block, artifact.program.panel  # the packed layout these kernels read
        if isinstance(weights, (list, tuple)):
            packed = list(weights)
            cells, linears = split_packed(packed)
            if any(cell.unit_block != unit_block for cell in cells):
                raise ValueError(f"packed weights have unit_block {[c.unit_block for c in cells]}; these kernels read unit_block={unit_block}")
            if any(cell.panel != panel for cell in cells):
                raise ValueError(f"packed weights have panel {[c.panel for c in cells]}; these kernels read panel={panel}")
            if any(cell.kgroup != artifact.program.kgroup for cell in cells):
                raise ValueError(f"packed weights have kgroup {[c.kgroup for c in cells]}; these kernels read kgroup={artifact.program.kgroup}")
            wd = artifact.program.schedule.weights
            if any(cell.weights_dtype != wd for cell in cells):
                raise ValueError(f"packed weights hold {sorted({c.weights_dtype for c in cells})} matrices; these kernels read {wd}")
            want = [i for i, _ in spec.head_linears()]
            if [lin.index for lin in linears] != want:
                raise ValueError(f"packed weights hold head Linears at {[lin.index for lin in linears]}; this spec's head has them at {want}")
        else:
            packed = pack(spec, weights, allow_nonfinite=allow_nonfinite, unit_block=unit_block, panel=panel,
                          weights_dtype=artifact.program.schedule.weights, kgroup=artifact.program.kgroup)
        self._packed = packed  # keeps the arrays alive while C holds pointers into them
        self._sizes: dict[tuple[int, int], int] = {}  # (T, B) -> workspace floats, memory checked
        # x.shape -> (T, B, workspace floats, y shape, h_n shape, c_n shape): shapes a full call
        # has validated, so later calls with the same plain input take _fast_call
        self._shapes: dict[tuple[int, ...], tuple] = {}
        self._tls = threading.local()  # per thread: .ws, its _KeptWorkspace (or None)
        self._kept: "weakref.WeakSet[_KeptWorkspace]" = weakref.WeakSet()  # every thread's, for the budget
        self._kept_lock = threading.Lock()
        _models.add(self)
        self._fb = self._ffi.from_buffer
        self._weights = self._ffi.new(f"{prefix}_weights *")
        self._keep = []
        cells, linears = split_packed(packed)
        for k, lin in enumerate(linears):  # the head's Linears, in head order
            self._point(self._weights.head[k], lin, HEAD_FIELD_NAMES)
        for i, cell in enumerate(cells):
            self._point(self._weights.cell[i], cell, FIELD_NAMES)

    def _point(self, struct: Any, arrays: Any, fields: Sequence[str]) -> None:
        """Point the C struct's fields at the arrays of the same names (None stays NULL)."""
        for field in fields:
            arr = getattr(arrays, field)
            if arr is not None:
                buf = self._ffi.from_buffer(_CTYPES[arr.dtype.str[1:]] + "[]", arr)
                self._keep.append(buf)  # keeps the buffer alive while C holds the pointer
                setattr(struct, field, buf)

    # ---- pickling, copying, repr ---------------------------------------------------------------

    def __reduce__(self):
        """Pickled as its recipe (spec, schedule, plan, prefix, target) and its packed weights; the
        other process rebuilds the library from the cache, compiling only if it lacks it."""
        if self.artifact.recipe is None:
            raise TypeError("this Model was made from an Artifact without a recipe (not by lstmgen.compile), "
                            "so another process could not rebuild it")
        return (_model_from_recipe, (self.artifact.recipe, self._packed))

    def __repr__(self) -> str:
        spec, sched, plan = self.spec, self.schedule, self.program.plan
        args = [str(spec.input_size), str(spec.hidden_size)]
        if spec.num_layers != 1:
            args.append(f"num_layers={spec.num_layers}")
        if not spec.bias:
            args.append("bias=False")
        if spec.batch_first:
            args.append("batch_first=True")
        if spec.bidirectional:
            args.append("bidirectional=True")
        if spec.proj_size:
            args.append(f"proj_size={spec.proj_size}")
        extras = [name for name in ("peepholes", "input_forget", "reverse") if getattr(spec, name)]
        if spec.clip is not None:
            extras.append(f"clip={spec.clip:g}")
        if any(spec.direction_activations(d) != DEFAULT_ACTIVATIONS for d in range(spec.num_directions)):
            extras.append("activations=" + ",".join(str(a) for a in spec.activations))
        args += [e if "=" in e else f"{e}=True" for e in extras]
        if spec.head:
            args.append("head=" + " -> ".join(map(str, spec.head)))
        run = f"{sched.time_loop}" + (f", seq_len={sched.seq_len}" if sched.seq_len else "") + (f", chunk={sched.chunk}" if sched.chunk else "")
        kern = f"{plan.isa}" + (f" vw={plan.vw}" if plan.vw else " scalar")
        return f"lstmgen.Model(LSTM({', '.join(args)}), schedule={run}, target={kern}, math={plan.math}, prefix={self.prefix!r})"

    def as_torch(self) -> Any:
        """This model as a torch.nn.Module with torch.nn.LSTM's forward signature (needs torch):
        `net.lstm = lstmgen.compile(net.lstm).as_torch()`. Inference only."""
        from .torch_module import LSTMModule  # torch is imported only here

        return LSTMModule(self)

    def with_weights(self, weights: Mapping[str, Any], *, allow_nonfinite: bool = False) -> "Model":
        """The same compiled code with another weight set (no rebuild)."""
        return Model(self.artifact, weights, allow_nonfinite=allow_nonfinite)

    @property
    def program(self) -> ScheduledProgram:
        """The ScheduledProgram this model's C was rendered from (plan, memory, sizes)."""
        return self.artifact.program

    @property
    def schedule(self) -> Schedule:
        return self.artifact.program.schedule

    @property
    def packed_weights(self) -> list[PackedCell | PackedLinear]:
        """The weights in the kernels' layout, as handed to C (read-only views): the cells, then
        the head's Linears."""
        return list(self._packed)

    @property
    def c_weights(self) -> Any:
        """The `<p>_weights *` struct pointing into this model's weights, for calling the C entry
        points of `artifact` directly (valid while the model lives)."""
        return self._weights

    @property
    def streams(self) -> bool:
        """Does this model have a step-at-a-time API (unidirectional, forward)?"""
        return self._step is not None

    def workspace_floats(self, T: int, B: int) -> int:
        """Floats of workspace the C needs for T steps and B rows, as the C itself reports it
        (negative: a C error code for a bad size)."""
        return int(self._workspace_floats(T, B))

    def _raise(self, code: int, what: str) -> None:
        raise ValueError(f"{what} failed with C error {code} ({error_text(code)})")

    def __call__(self, x: Any, hx: tuple[Any, Any] | None = None, lengths: Any = None):
        if hx is None and lengths is None and type(x) is np.ndarray:
            known = self._shapes.get(x.shape)
            if known is not None and x.dtype == _F32:
                flags = x.flags
                if flags.c_contiguous and flags.aligned:
                    return self._fast_call(x, known)
        spec = self.spec
        D, L, H, R, I = spec.num_directions, spec.num_layers, spec.hidden_size, spec.output_size, spec.input_size
        Y = spec.head_output_size  # features of y: D*R, or the head's output
        x = _as_float_array("x", x)  # shape checks first: refuse before copying anything
        if x.ndim == 2:
            batched = False
            T, B = x.shape[0], 1
            if x.shape[1] != I:
                raise ValueError(f"x has shape {x.shape}; unbatched input must be (T, {I})")
        elif x.ndim == 3:
            batched = True
            if spec.batch_first:
                B, T = x.shape[0], x.shape[1]
            else:
                T, B = x.shape[0], x.shape[1]
            if x.shape[2] != I:
                layout = "(B, T, I)" if spec.batch_first else "(T, B, I)"
                raise ValueError(f"x has shape {x.shape}; expected {layout} with I = {I}")
        else:
            raise ValueError(f"x must be 2-D (T, {I}) or 3-D, got shape {x.shape}")
        if T < 1 or B < 1:
            raise ValueError(f"x has shape {x.shape}: need at least one time step and one batch row")
        if T > _INT32_MAX or B > _INT32_MAX:
            raise ValueError(f"x has shape {x.shape}: T and B must fit in int32")
        fixed = self.schedule.seq_len
        if self.schedule.time_loop == "unrolled" and T != fixed:
            raise ValueError(f"this model was compiled unrolled for seq_len={fixed}; x has T={T}")
        need = self._sizes.get((T, B), -1)
        if need < 0:  # first call with this (T, B): ask the C, check the memory, remember
            need = self._workspace_floats(T, B)
            if need < 0:
                raise ValueError(f"x has shape {x.shape}: T * B is too large ({error_text(need)})")
            total = 4 * (need + T * B * (Y + I) + L * D * B * (R + H))  # workspace, outputs, a copy of x
            if total > _physical_memory():  # np.empty would "succeed" (overcommit) and the C would then die
                raise MemoryError(f"x has shape {x.shape}: the workspace ({need} floats), outputs and input need "
                                  f"{total / 2**30:.3g} GiB, more than this machine's {_physical_memory() / 2**30:.3g} GiB of memory")
            if len(self._sizes) < 64:
                self._sizes[(T, B)] = need
        total = 0
        try:  # the large buffers first: a huge request fails here, before any copy of x is made
            ws, ws_ptr = self._workspace(need)
            if spec.batch_first:
                y = np.empty((B, T, Y), dtype=np.float32)
            else:
                y = np.empty((T, B, Y), dtype=np.float32)
            h_n = np.empty((L * D, B, R), dtype=np.float32)
            c_n = np.empty((L * D, B, H), dtype=np.float32)
            if not _ready(x):
                x = np.require(x, np.float32, _C_LAYOUT)
        except MemoryError:
            total = 4 * (need + T * B * (Y + I) + L * D * B * (R + H))
            raise MemoryError(f"x has shape {x.shape}: the workspace ({need} floats), outputs and input "
                              f"need {total / 2**30:.3g} GiB, which could not be allocated") from None
        ffi = self._ffi
        h0 = c0 = ffi.NULL
        keep = []
        if hx is not None:
            if not isinstance(hx, (tuple, list)) or len(hx) != 2:
                raise TypeError("hx must be a tuple (h0, c0)")
            h0a, c0a = _as_float_array("h0", hx[0]), _as_float_array("c0", hx[1])
            hs = (L * D, B, R) if batched else (L * D, R)
            cs = (L * D, B, H) if batched else (L * D, H)
            _check_shape("h0", h0a, hs, "(num_layers * num_directions, batch, proj_size or hidden_size)")
            _check_shape("c0", c0a, cs, "(num_layers * num_directions, batch, hidden_size)")
            h0a, c0a = np.require(h0a, np.float32, _C_LAYOUT), np.require(c0a, np.float32, _C_LAYOUT)
            keep += [h0a, c0a]
            h0 = ffi.from_buffer("float[]", h0a)
            c0 = ffi.from_buffer("float[]", c0a)
        lens = ffi.NULL
        if lengths is not None:
            try:
                la = np.asarray(lengths)
            except (ValueError, TypeError) as exc:
                raise TypeError(f"lengths must be an integer array, got {type(lengths).__name__} ({exc})") from None
            if la.dtype.kind not in "iu":
                raise TypeError(f"lengths must be an integer array, got dtype {la.dtype}")
            if la.shape != (B,):
                raise ValueError(f"lengths has shape {la.shape}, expected ({B},) (one length per batch row)")
            if la.size and (la.min() < 1 or la.max() > T):
                raise ValueError(f"lengths must satisfy 1 <= lengths[b] <= T = {T}, got min {la.min()} max {la.max()}")
            la = np.require(la, np.int32, _C_LAYOUT)
            keep.append(la)
            lens = ffi.from_buffer("int32_t[]", la)
        fb = ffi.from_buffer
        rc = self._forward(self._weights, fb("float[]", x), T, B, lens, h0, c0, fb("float[]", y),
                           fb("float[]", h_n), fb("float[]", c_n), ws_ptr, need)
        del ws
        if rc != 0:
            self._raise(rc, f"{self.prefix}_forward")
        if not batched:
            return y.reshape(T, Y), (h_n.reshape(L * D, R), c_n.reshape(L * D, H))
        if hx is None and lengths is None and len(self._shapes) < 64:
            self._shapes[x.shape] = (T, B, need, y.shape, h_n.shape, c_n.shape)
        return y, (h_n, c_n)

    def _fast_call(self, x: np.ndarray, known: tuple):
        """__call__ for an input shape a full call already validated: a dense float32 (T, B, I)
        array without hx or lengths. Only the allocations and the C call are left."""
        T, B, need, y_shape, h_shape, c_shape = known
        ws_ptr = self._workspace(need)[1]
        y = np.empty(y_shape, _F32)
        h_n = np.empty(h_shape, _F32)
        c_n = np.empty(c_shape, _F32)
        fb, null = self._fb, self._ffi.NULL
        rc = self._forward(self._weights, fb("float[]", x), T, B, null, null, null, fb("float[]", y),
                           fb("float[]", h_n), fb("float[]", c_n), ws_ptr, need)
        if rc != 0:
            self._raise(rc, f"{self.prefix}_forward")
        return y, (h_n, c_n)

    forward = __call__

    def _workspace(self, need: int):
        """(array, C pointer) of at least `need` floats: this thread's kept one when it fits and
        is not far too big; else a new one, kept when the Model's budget has room for it."""
        kept = getattr(self._tls, "ws", None)
        if kept is not None:
            if kept.floor <= need <= kept.size:
                return kept.pair
            self._tls.ws = kept = None  # too small, or far too big for this call: give it back
        ws = _aligned_empty(max(need, 1))  # the gate rows are read as whole vectors
        pair = (ws, self._ffi.from_buffer("float[]", ws))
        if ws.size <= _KEEP_WORKSPACE_FLOATS:
            with self._kept_lock:
                if sum(k.size for k in list(self._kept)) + ws.size <= _KEEP_WORKSPACE_FLOATS:
                    kept = _KeptWorkspace(*pair)
                    self._kept.add(kept)
                    self._tls.ws = kept
        return pair

    def kept_workspace_bytes(self) -> int:
        """Bytes of workspace this Model's threads keep between calls (at most 64 MiB)."""
        return 4 * sum(k.size for k in list(self._kept))

    def stream(self, batch: int = 1) -> "Stream":
        """A step-at-a-time runner with its own state (unidirectional, forward models only)."""
        if self._step is None:
            raise ValueError("streaming needs a unidirectional forward model (bidirectional or reverse models read the whole sequence)")
        return Stream(self, batch)


def _model_from_recipe(recipe: tuple[Any, tuple[Any, ...]], packed: Sequence[PackedCell]) -> Model:
    fn, args = recipe
    return Model(fn(*args), packed)


def _stream_from_state(model: Model, batch: int, h: np.ndarray, c: np.ndarray) -> "Stream":
    s = model.stream(batch)
    s.state = (h, c)
    return s


_streams: "weakref.WeakSet[Stream]" = weakref.WeakSet()  # every live Stream, for _after_fork_in_child
_models: "weakref.WeakSet[Model]" = weakref.WeakSet()  # every live Model, likewise


def _after_fork_in_child() -> None:
    """fork() copies a lock some other thread held (a step in progress) as held forever: give the
    child's copy of every stream (and every model's workspace budget) a fresh lock. (A stream's
    state in the child is whatever an interrupted step had written: reset or assign it.)"""
    for stream in list(_streams):
        stream._lock = threading.Lock()
    for model in list(_models):
        model._kept_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class Stream:
    """State for `batch` independent rows; `step(x_t) -> y_t`.

    A stream is one sequence of states, so its calls are serialised by a lock: threads sharing a
    stream take turns (the state stays consistent); for parallel work give each thread its own.
    A forked child gets usable streams (their locks are re-created after fork)."""

    def __init__(self, model: Model, batch: int):
        if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or not 1 <= batch <= _INT32_MAX:
            raise ValueError(f"batch must be an int >= 1, got {batch!r}")
        spec = model.spec
        self.model = model
        self.batch = B = int(batch)
        L, H, R, I = spec.num_layers, spec.hidden_size, spec.output_size, spec.input_size
        self._h, self._c = _state_pair((L, B, R), (L, B, H))
        self._h.fill(0.0)
        self._c.fill(0.0)
        need = model._workspace_floats(1, B)
        self._ws = _aligned_empty(max(need, 1))
        ffi = model._ffi
        self._args = (model._weights, ffi.from_buffer("float[]", self._h), ffi.from_buffer("float[]", self._c))
        self._ws_args = (ffi.from_buffer("float[]", self._ws), need)
        Y = spec.head_output_size  # R, or the head's output
        self._in_shape = (B, I)
        self._out_shape = (B, Y)
        self._y = _aligned_empty(B * Y).reshape(B, Y)  # the C writes here; step returns a copy
        self._y_ptr = ffi.from_buffer("float[]", self._y)
        self._y1 = self._y[0]  # the (R,) view returned (copied) for unbatched input
        self._fb = ffi.from_buffer
        self._fn = model._step
        self._lock = threading.Lock()
        _streams.add(self)

    def __reduce__(self):
        """Pickled (and deep-copied) as its model, batch and current state."""
        h, c = self.state
        return (_stream_from_state, (self.model, self.batch, h, c))

    def __repr__(self) -> str:
        return f"lstmgen.Stream(batch={self.batch}, input_size={self.model.spec.input_size}, output_size={self.model.spec.head_output_size}, model={self.model!r})"

    def step(self, x_t: Any) -> np.ndarray:
        """One time step: x_t (B, I) -> y_t (B, R), or (B, O) through a head. For batch=1 an (I,)
        input gives an (R,) (or (O,)) output."""
        x = x_t
        if type(x) is not np.ndarray or x.dtype is not _F32:
            x = _as_f32("x_t", x)
        else:
            flags = x.flags
            if not (flags.c_contiguous and flags.aligned):
                x = _as_f32("x_t", x)
        out = self._y
        if x.shape != self._in_shape:
            if self.batch == 1 and x.shape == self._in_shape[1:]:
                out = self._y1
            else:
                raise ValueError(f"x_t has shape {x.shape}, expected {self._in_shape} (batch, input_size)")
        w, h, c = self._args
        ws, ws_floats = self._ws_args
        xp = self._fb("float[]", x)
        with self._lock:
            rc = self._fn(w, xp, self.batch, h, c, self._y_ptr, ws, ws_floats)
            y = out.copy()
        if rc != 0:
            self.model._raise(rc, f"{self.model.prefix}_step")
        return y

    def reset(self, row: int | None = None) -> None:
        """Zero the state of every row, or of one row (a channel restarts; the others go on)."""
        if row is not None and (isinstance(row, bool) or not isinstance(row, (int, np.integer)) or not 0 <= row < self.batch):
            raise ValueError(f"row must be an int in [0, {self.batch}), got {row!r}")
        with self._lock:
            if row is None:
                self._h.fill(0.0)
                self._c.fill(0.0)
            else:
                self._h[:, row] = 0.0
                self._c[:, row] = 0.0

    @property
    def state(self) -> tuple[np.ndarray, np.ndarray]:
        """(h, c): copies, shapes (L, B, R) and (L, B, H)."""
        with self._lock:
            return self._h.copy(), self._c.copy()

    @state.setter
    def state(self, hc: tuple[Any, Any]) -> None:
        if not isinstance(hc, (tuple, list)) or len(hc) != 2:
            raise TypeError("state must be a pair (h, c)")
        h, c = _as_f32("h", hc[0]), _as_f32("c", hc[1])
        _check_shape("h", h, self._h.shape, "(num_layers, batch, proj_size or hidden_size)")
        _check_shape("c", c, self._c.shape, "(num_layers, batch, hidden_size)")
        with self._lock:
            self._h[...] = h
            self._c[...] = c
