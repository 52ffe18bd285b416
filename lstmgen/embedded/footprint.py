"""The footprint of a static build: flash for the weights, RAM for the state, MACs per step.

Input: a Program on a static schedule (schedule.max_batch set, plus a fixed seq_len or a chunk).
Output: a frozen `Footprint` (exact sizes on a 32-bit target with 4-byte floats) and
`static_context`, the plain values static.h.j2 and state.c.j2 spell from it.

Code bytes and stack use are not known here: they come from cross-compiling (toolchain.measure).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..abi import HEAD_FIELD_NAMES, cell_fields
from ..kernels import WEIGHT_BYTES
from ..schedule import Schedule, ScheduledProgram
from ..spec import LSTMSpec, head_parameters

POINTER_BYTES = 4  # the weight table's pointers on the 32-bit targets this folder is for
CELL_POINTERS = len(cell_fields("float32"))  # pointers per <p>_cell_weights (abi.WEIGHT_FIELDS; int8 adds 3 scales)
LINEAR_POINTERS = len(HEAD_FIELD_NAMES)  # pointers per <p>_linear_weights of a head (abi.HEAD_FIELDS)
# Largest sizeof(<p>_state) a static build accepts. The folder is for microcontrollers: the largest
# have a few MiB of SRAM, boards with external SDRAM some tens of MiB, so a bigger state is a typo
# in seq_len or max_batch, not a target (128 GB for --seq-len 100000000 would only crash the
# self-test). It also keeps the struct far below the 2 GiB a C object may span on a 32-bit core.
MAX_STATE_BYTES = 256 * 2**20
INT32_MAX = 2**31 - 1  # T and B are int32_t in the C API


@dataclass(frozen=True)
class Footprint:
    """Sizes of a static build, all exact: bytes on a 32-bit target with 4-byte floats."""

    spec: LSTMSpec
    schedule: Schedule
    max_batch: int
    window: int  # time steps whose workspace is live at once
    max_seq_len: int  # longest T for a whole-sequence call (0: any T)
    h_floats: int  # (L*D, max_batch, R)
    c_floats: int  # (L*D, max_batch, H)
    ws_floats: int  # workspace_floats(window, max_batch)
    weight_floats: int  # floats in <p>_weights.c (kernel layout, biases folded)
    matrix_padding: int = 0  # zero weights the kgroup layout adds (int8 integer kernels: K to a multiple of g)
    input_q: int = 0  # int8 integer kernels: each product's input row rounded to max|x| / input_q steps

    @property
    def parameters(self) -> int:
        return self.spec.num_parameters

    @property
    def weight_table_bytes(self) -> int:
        cells = self.spec.num_layers * self.spec.num_directions * len(cell_fields(self.schedule.weights))
        return (cells + len(self.spec.head_linears()) * LINEAR_POINTERS) * POINTER_BYTES

    @property
    def matrix_elements(self) -> int:
        """Elements of the weight matrices W_ih, W_hh, W_hr (stored in the schedule's weights dtype),
        with the kgroup layout's zero padding."""
        return matrix_elements(self.spec) + self.matrix_padding

    @property
    def weights_bytes(self) -> int:
        """Flash for the weights: the matrices in their dtype, the float32 vectors (biases,
        peepholes, the head, int8's scales) and the <p>_model_weights pointer table."""
        dtype = self.schedule.weights
        matrices = matrix_elements(self.spec)
        scales = scale_floats(self.spec) if dtype == "int8" else 0
        return (WEIGHT_BYTES[dtype] * (matrices + self.matrix_padding) + 4 * (self.weight_floats - matrices + scales)
                + self.weight_table_bytes)

    @property
    def state_bytes(self) -> int:
        """RAM: sizeof(<p>_state) = int32 batch + h + c + workspace."""
        return 4 + 4 * (self.h_floats + self.c_floats + self.ws_floats)

    @property
    def macs_per_step(self) -> int:
        """Multiply-accumulates per time step and batch row (all layers and directions)."""
        return self.spec.macs_per_step()

    def _dtype_note(self) -> str:
        dtype = self.schedule.weights
        if dtype == "float32":
            return ""
        note = f"; the {self.matrix_elements} matrix weights as {dtype}, {WEIGHT_BYTES[dtype]} byte(s) each"
        note += f", {scale_floats(self.spec)} float32 row scales" if dtype == "int8" else ""
        if self.input_q:
            note += f"; exact int32 dot products with each input row rounded to max|x| / {self.input_q}"
        return note

    def lines(self, code: str) -> list[str]:
        """The footprint as aligned text lines (header comment, README, report)."""
        head = head_parameters(self.spec.head)
        return [
            f"parameters        {self.parameters} (floats in the state_dict)",
            f"flash, weights    {self.weights_bytes} bytes: {self.weight_floats} {'floats' if self.schedule.weights == 'float32' else 'values'} in kernel layout "
            f"(biases folded{f'; the head {head}' if self.spec.head else ''}{self._dtype_note()}) + {self.weight_table_bytes}-byte pointer table",
            f"flash, code       {code}",
            f"RAM               {self.state_bytes} bytes = sizeof(state): h {4 * self.h_floats} + c {4 * self.c_floats}"
            f" + workspace {4 * self.ws_floats} + batch 4",
            f"MACs per step     {self.macs_per_step} per batch row (max batch {self.max_batch})",
        ]


def weight_floats(spec: LSTMSpec) -> int:
    """Floats in <p>_weights.c, by formula: per (layer k, direction) cell the packed arrays

        w_ih (I_k, 4H) + w_hh (R, 4H) + bias (4H, b_ih + b_hh folded) + w_hr (H, P) + w_ph (3H)

    (bias only with bias=True, w_hr only with a projection, w_ph only with peepholes). The
    gate-blocked layout, (NB, I_k, 4U) with NB * U = H, and the portable kernels' row panels
    (weights.panel_rows: no padding) reorder the same elements: the count depends on the spec
    alone, so no weight is packed or formatted to know it. A head adds its
    Linears' weight (out, in) and bias (out) as they are."""
    H, R, P, D = spec.hidden_size, spec.output_size, spec.proj_size, spec.num_directions
    per_cell = 4 * H * R + (4 * H if spec.bias else 0) + H * P + (3 * H if spec.peepholes else 0)
    return sum(D * (4 * H * spec.layer_input_size(k) + per_cell) for k in range(spec.num_layers)) + head_parameters(spec.head)


def matrix_elements(spec: LSTMSpec) -> int:
    """Elements of W_ih, W_hh and W_hr over all cells (what weights_dtype stores)."""
    H, R, P, D = spec.hidden_size, spec.output_size, spec.proj_size, spec.num_directions
    return sum(D * (4 * H * (spec.layer_input_size(k) + R) + H * P) for k in range(spec.num_layers))


def scale_floats(spec: LSTMSpec) -> int:
    """int8's float32 scales: one per output row of W_ih and W_hh (4H each) and of W_hr (P)."""
    return spec.num_layers * spec.num_directions * (8 * spec.hidden_size + spec.proj_size)


def kgroup_padding(spec: LSTMSpec, g: int) -> int:
    """Zero weights the kgroup layout adds: each matrix's K rounded up to a multiple of g."""
    H, R, P, D = spec.hidden_size, spec.output_size, spec.proj_size, spec.num_directions

    def pad(k: int) -> int:
        return -k % g

    return sum(D * (4 * H * (pad(spec.layer_input_size(k)) + pad(R)) + P * pad(H)) for k in range(spec.num_layers))


def footprint(program: ScheduledProgram) -> Footprint:
    """Exact sizes of the static build of a scheduled Program (schedule.max_batch must be set)."""
    spec, sched = program.spec, program.schedule
    if not sched.max_batch:
        raise ValueError("footprint needs a static schedule: set max_batch (see embedded_schedule)")
    if sched.chunk and sched.seq_len:
        window = min(sched.chunk, sched.seq_len)
    else:
        window = sched.chunk or sched.seq_len or 0
    if window < 1:
        raise ValueError("footprint needs a fixed seq_len or a chunked schedule")
    cells, B = spec.num_layers * spec.num_directions, sched.max_batch
    return Footprint(
        spec=spec,
        schedule=sched,
        max_batch=B,
        window=window,
        max_seq_len=sched.seq_len or 0,
        h_floats=cells * B * spec.output_size,
        c_floats=cells * B * spec.hidden_size,
        ws_floats=program.workspace_floats(window, B),
        weight_floats=weight_floats(spec),
        matrix_padding=kgroup_padding(spec, program.kgroup) if program.kgroup else 0,
        input_q=program.plan.input_q,
    )


def check_static_size(fp: Footprint) -> None:
    """Refuse a static build whose state exceeds MAX_STATE_BYTES, naming the option to lower."""
    sched, B = fp.schedule, fp.max_batch
    if fp.max_seq_len > INT32_MAX:
        raise ValueError(f"seq_len={fp.max_seq_len} does not fit the C API's int32_t T (at most {INT32_MAX})")
    if fp.state_bytes <= MAX_STATE_BYTES:
        return
    row_bytes = (fp.state_bytes - 4) // B  # h, c and workspace all grow by one row per batch row
    if B > 1 and 4 + row_bytes <= MAX_STATE_BYTES:
        fix = f"lower max_batch (at most {(MAX_STATE_BYTES - 4) // row_bytes} rows fit)"
    elif sched.chunk:  # the window is min(chunk, seq_len): a smaller chunk always helps
        fix = "lower chunk"
    else:
        fix = "lower seq_len" + ("" if fp.spec.bidirectional or sched.time_loop == "unrolled" else
                                 ", or leave it out: the chunked schedule's workspace does not grow with T")
    raise ValueError(
        f"the static state would take {fp.state_bytes} bytes ({fp.state_bytes / 2**20:.1f} MiB: h, c and a "
        f"{fp.window}-step workspace for max_batch={B}), above the embedded cap of {MAX_STATE_BYTES // 2**20} MiB "
        f"(MAX_STATE_BYTES): {fix}"
    )


def static_context(fp: Footprint, prefix: str) -> dict:
    """What static.h.j2 and state.c.j2 spell."""
    sched = fp.schedule
    P = prefix.upper()
    if sched.time_loop == "unrolled":
        seq_doc = "T must equal it (unrolled)"
        forward_doc = f"T must be {P}_MAX_SEQ_LEN (the time loop is unrolled)."
    elif fp.max_seq_len:
        seq_doc = "longest T of a whole-sequence call"
        forward_doc = f"1 <= T <= {P}_MAX_SEQ_LEN."
    else:
        seq_doc = "0: any T (the chunked schedule's workspace does not grow with T)"
        forward_doc = f"any T >= 1 (it runs in {sched.chunk}-step windows)."
    return dict(
        summary=f"{fp.spec.summary()}; {sched}",
        footprint=fp.lines("`make size` in the embedded folder (arm-none-eabi-size); `lstmgen report` measures it"),
        max_batch=fp.max_batch,
        max_seq_len=fp.max_seq_len,
        window=fp.window,
        h_floats=fp.h_floats,
        c_floats=fp.c_floats,
        ws_floats=fp.ws_floats,
        state_bytes=fp.state_bytes,
        weights_bytes=fp.weights_bytes,
        seq_doc=seq_doc,
        forward_doc=forward_doc,
    )
