"""The ONNX import driver.

Input: an `onnx.ModelProto`, bytes of one, or a path to a .onnx file (external data read from
`base_dir`, by default the file's folder), plus optional `constants=` (graph inputs bound to
arrays, e.g. weights given as inputs) and `inputs=` / `outputs=` (a cut of a bigger graph).
Output: `import_onnx` gives an `OnnxImport` (bindings.py); `from_onnx` gives (spec, weights).
The driver checks the opset, chooses the nodes to read (cut.py) and refuses the first op it cannot
read, gives initializers, constants and graph inputs their abstract values, visits the nodes in
order (glue ops: fold.py, LSTM nodes: lstm_node.py, a head after the LSTM: head.py) and binds the
outputs (bindings.py).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from ..spec import LSTMSpec
from .bindings import Bindings, OnnxImport
from .cut import cut_graph
from .fold import _GLUE_ATTRS, GlueOps
from .gates import OPSET_MAX, OPSET_MIN
from .head import _HEAD_ATTRS, HeadOps
from .lstm_node import _LSTM_ATTRS, LstmNode
from .values import Const, Label


class _Importer(GlueOps, HeadOps, LstmNode, Bindings):
    def __init__(self, model: Any, constants: dict[str, np.ndarray] | None = None, inputs: Any = None,
                 outputs: Any = None):
        import onnx
        from onnx import numpy_helper

        self.onnx = onnx
        self.numpy_helper = numpy_helper
        self.model = model
        self.graph = model.graph
        self.values: dict[str, Any] = {}
        self.parent: dict[Label, Label] = {}
        self.static: dict[Label, int] = {}
        self.notes: list[str] = []
        self.layers: list[dict] = []  # per LSTM layer: its parameters
        self.time_label: Label | None = None
        self.batch_label: Label | None = None
        self.x_name: str | None = None
        self.input_rank: dict[str, int] = {}
        self.roles: dict[str, str] = {}  # graph input name -> x | h | c | lengths
        self.lens_name: str | None = None
        self.where = "graph"
        self.constants = constants or {}
        self.cut = cut_graph(model, inputs, outputs, tuple(self.constants))

    # -- entry ---------------------------------------------------------------------------------
    def run(self) -> OnnxImport:
        opset = None
        for o in self.model.opset_import:
            if o.domain in ("", "ai.onnx"):
                opset = o.version
        if opset is None:
            self.fail("the model imports no default-domain opset")
        if not OPSET_MIN <= opset <= OPSET_MAX:
            self.fail(f"opset {opset} is not supported (LSTM import covers opset {OPSET_MIN}..{OPSET_MAX})")
        self.opset = opset
        g = self.graph
        for i, node in self.cut.nodes:  # the first op lstmgen cannot read, before any graph input
            self.where = self.node_where(i, node)
            self.check_op(node)
        self.where = "graph"
        for init in g.initializer:
            self.values[init.name] = Const(self.numpy_helper.to_array(init))
        for name, value in self.constants.items():
            self.values[name] = Const(value)
        for vi in self.cut.inputs:
            if vi.name in self.values:
                continue  # an initializer listed as an input (old IR), or bound by constants=: a constant
            self.values[vi.name] = self.graph_input(vi)
        for i, node in self.cut.nodes:
            self.where = self.node_where(i, node)
            self.visit(node)
        self.where = "graph"
        return self.finish()

    @staticmethod
    def node_where(i: int, node: Any) -> str:
        return f"node #{i} {node.op_type}" + (f" {node.name!r}" if node.name else "")

    def check_op(self, node: Any) -> None:
        if node.domain not in ("", "ai.onnx"):
            self.fail(f"op domain {node.domain!r} is not supported (only ONNX LSTM and its glue are)")
        if node.op_type != "LSTM" and node.op_type not in _GLUE_ATTRS and node.op_type not in _HEAD_ATTRS:
            self.fail(f"op {node.op_type} is not supported: lstmgen imports LSTM nodes and the glue exporters put "
                      f"around them ({', '.join(sorted(_GLUE_ATTRS))}), and a head after the LSTM output "
                      f"({', '.join(sorted(_HEAD_ATTRS))}); import_onnx(..., inputs=, outputs=) "
                      "cuts a bigger graph to its LSTM part")

    def visit(self, node: Any) -> None:
        op = node.op_type
        self.check_op(node)
        allowed = _LSTM_ATTRS if op == "LSTM" else (_GLUE_ATTRS[op] if op in _GLUE_ATTRS else _HEAD_ATTRS[op])
        for a in node.attribute:
            if a.name not in allowed:
                self.fail(f"attribute {a.name!r} is not supported")
        ins = []
        for name in node.input:
            if name == "":
                ins.append(None)
            elif name not in self.values:
                self.fail(f"input {name!r} is not produced by any earlier node (graph not topologically sorted?)")
            else:
                ins.append(self.values[name])
        outs = getattr(self, f"op_{op}")(node, ins)
        if not isinstance(outs, list):
            outs = [outs]
        for name, v in zip(node.output, outs):
            if name:
                self.values[name] = v
        for name in list(node.output)[len(outs):]:
            if name:
                self.fail(f"output {name!r} is not supported")


def _external_tensors(model: Any) -> list[str]:
    """Names of the main graph's tensors (initializers, Constant values) stored in external files."""
    from onnx.external_data_helper import uses_external_data

    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for a in node.attribute:
            tensors += ([a.t] if a.HasField("t") else []) + list(a.tensors)
    return [t.name or "(unnamed)" for t in tensors if uses_external_data(t)]


def _load(model: Any, base_dir: Any = None) -> Any:
    try:
        import onnx
        from onnx.external_data_helper import load_external_data_for_model
    except ImportError:  # pragma: no cover - exercised only without onnx
        raise ImportError("importing ONNX models needs the onnx package (pip install onnx)") from None
    if base_dir is not None:
        if not isinstance(base_dir, (str, os.PathLike)):
            raise TypeError(f"base_dir must be a folder path, got {type(base_dir).__name__}")
        base_dir = os.fspath(base_dir)
        if not os.path.isdir(base_dir):
            raise ValueError(f"base_dir {base_dir!r} is not a folder")
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        try:
            if base_dir is None:
                return onnx.load(path)  # external data relative to the file's folder
            loaded = onnx.load(path, load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and others
            raise ValueError(f"{path}: cannot read as an ONNX model: {exc}") from None
        where = path
    elif isinstance(model, (bytes, bytearray)):
        try:
            loaded = onnx.load_from_string(bytes(model))
        except Exception as exc:  # protobuf's DecodeError and others: not a ValueError (found by fuzz/)
            raise ValueError(f"cannot read {len(model)} bytes as an ONNX model: {exc}") from None
        where = f"the {len(model)}-byte model"
    elif isinstance(model, onnx.ModelProto):
        loaded, where = model, "the ModelProto"
    else:
        raise TypeError(f"expected an onnx.ModelProto, bytes or a path to a .onnx file, got {type(model).__name__}")
    external = _external_tensors(loaded)
    if not external:
        return loaded
    shown = ", ".join(repr(n) for n in external[:3]) + (f" and {len(external) - 3} more" if len(external) > 3 else "")
    if base_dir is None:
        raise ValueError(f"{where} keeps tensors {shown} in external data files; pass base_dir= (the folder "
                         "those files are in) or the .onnx file's path")
    if loaded is model:
        loaded = onnx.ModelProto()
        loaded.CopyFrom(model)  # the caller's proto stays as it was
    try:
        load_external_data_for_model(loaded, base_dir)
    except Exception as exc:  # missing file, a location outside base_dir, short file, ...
        raise ValueError(f"{where}: cannot read the external data of {shown} from {base_dir!r}: {exc}") from None
    return loaded


def _constants(constants: Any) -> dict[str, np.ndarray]:
    """constants= as {name: array}; the names are checked against the graph by the importer."""
    if constants is None:
        return {}
    if not isinstance(constants, dict):
        raise TypeError(f"constants= must be a dict of graph input name -> array, got {type(constants).__name__}")
    from onnx import TensorProto, numpy_helper

    out = {}
    for name, value in constants.items():
        if not isinstance(name, str):
            raise TypeError(f"constants= keys must be graph input names (str), got {name!r}")
        arr = numpy_helper.to_array(value) if isinstance(value, TensorProto) else np.asarray(value)
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"constants[{name!r}] must be a numeric array, got dtype {arr.dtype}")
        out[name] = arr
    return out


def import_onnx(model: Any, *, constants: dict[str, Any] | None = None, inputs: Any = None, outputs: Any = None,
                base_dir: Any = None) -> OnnxImport:
    """Import an ONNX LSTM graph: spec, weights and the graph's relation to Model (see OnnxImport).

    constants: {graph input name: array} binds graph inputs to values, e.g. W, R, B and P given as
    inputs (as in ONNX's own backend tests); lstmgen embeds weights, so they must be constant.
    inputs, outputs: tensor names that cut a bigger graph to its LSTM part; the importer treats them
    as the graph's inputs and outputs and ignores nodes outside the cut (`lstmgen inspect --graph`
    and `describe_graph` list the names).
    base_dir: the folder of the external data files of a model given as bytes or a ModelProto (for
    a path, the file's folder is the default); without it such a model is refused, never read
    against the process's working directory.
    """
    loaded = _load(model, base_dir)
    bound = _constants(constants)
    importer = None
    try:
        declared = {vi.name for vi in loaded.graph.input} | set(inputs if isinstance(inputs, (list, tuple)) else ())
        unknown = [n for n in bound if n not in declared]
        if unknown:
            raise ValueError(f"constants= names {', '.join(map(repr, unknown))}, which are not graph inputs "
                             f"(graph inputs: {', '.join(repr(vi.name) for vi in loaded.graph.input) or 'none'})")
        importer = _Importer(loaded, bound, inputs, outputs)
        return importer.run()
    except (ValueError, TypeError):
        raise
    except Exception as exc:  # onnx's helpers on malformed protos: KeyError, IndexError, ... (found by fuzz/)
        where = getattr(importer, "where", None) or "the graph"
        raise ValueError(f"malformed ONNX model at {where}: {type(exc).__name__}: {exc}") from exc


def from_onnx(model: Any, *, constants: dict[str, Any] | None = None, inputs: Any = None, outputs: Any = None,
              base_dir: Any = None) -> tuple[LSTMSpec, dict[str, np.ndarray]]:
    """(spec, weights) from an ONNX model (ModelProto, bytes or path) of one or more LSTM nodes.

    For a graph exported by torch.onnx.export, compile(spec, weights) computes the graph's own
    outputs. For a bare LSTM node (layout 0) Y (T, D, B, H) is out.reshape(T, B, D, H)
    .transpose(0, 2, 1, 3) and Y_h / Y_c are h_n / c_n; `import_onnx(...).graph_outputs` does
    this mapping for any accepted graph. The keyword arguments are import_onnx's.
    """
    imp = import_onnx(model, constants=constants, inputs=inputs, outputs=outputs, base_dir=base_dir)
    return imp.spec, imp.weights
