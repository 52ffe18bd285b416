"""Which part of an ONNX graph the importer reads, and a listing of a graph to choose it from.

Input: a GraphProto and the caller's `inputs=` / `outputs=` tensor names and `constants=` names.
Output: `cut_graph` gives a `Cut`: the nodes to visit (with their index in the whole graph, so
refusals name the node the user sees in the file) and the value infos the importer treats as the
graph's inputs and outputs. Without inputs= and outputs= the cut is the whole graph. With them,
the nodes are those needed to compute the outputs from the inputs, the constants and the
initializers; nodes outside the cut are ignored, whatever their op.
`describe_graph` gives the text `lstmgen inspect --graph` prints: inputs, nodes and outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Cut:
    nodes: tuple  # ((index in graph.node, NodeProto), ...) in graph order
    inputs: tuple  # ValueInfoProto per graph input the importer interprets
    outputs: tuple  # ValueInfoProto per graph output (possibly without a type)


def _names(value: Any, what: str) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"{what}= must be a list of tensor names, got {type(value).__name__}")
    for n in value:
        if not isinstance(n, str) or not n:
            raise TypeError(f"{what}= must hold non-empty tensor names (str), got {n!r}")
    if len(set(value)) != len(value):
        dup = sorted({n for n in value if list(value).count(n) > 1})
        raise ValueError(f"{what}= names {', '.join(map(repr, dup))} more than once")
    return list(value)


def _listed(names) -> str:
    return ", ".join(repr(n) for n in names)


def cut_graph(model: Any, inputs: Any = None, outputs: Any = None, constants: Sequence[str] = ()) -> Cut:
    g = model.graph
    inputs, outputs = _names(inputs, "inputs"), _names(outputs, "outputs")
    inits = {t.name for t in g.initializer}
    declared = {vi.name: vi for vi in g.input if vi.name not in inits}
    producer = {}
    for i, node in enumerate(g.node):
        for name in node.output:
            if name:
                producer.setdefault(name, i)
    known = set(declared) | set(producer)
    if inputs is not None:
        bad = [n for n in inputs if n not in known]
        if bad:
            raise ValueError(f"inputs= names {_listed(bad)}, which no node produces and no graph input is "
                             "(lstmgen inspect --graph lists the tensors)")
        both = [n for n in inputs if n in constants]
        if both:
            raise ValueError(f"{_listed(both)} named in both inputs= and constants=")
    if outputs is not None:
        bad = [n for n in outputs if n not in producer]
        if bad:
            raise ValueError(f"outputs= names {_listed(bad)}, which no node produces "
                             "(lstmgen inspect --graph lists the tensors)")
    if inputs is None and outputs is None:
        return Cut(tuple(enumerate(g.node)), tuple(vi for vi in g.input if vi.name not in constants), tuple(g.output))

    out_names = outputs if outputs is not None else [vi.name for vi in g.output]
    stop = set(inputs or ()) | set(constants) | inits
    needed: set[int] = set()
    reached: set[str] = set()
    todo, seen = list(out_names), set()
    while todo:
        name = todo.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        if name in stop:
            continue
        if name in producer:
            i = producer[name]
            if i not in needed:
                needed.add(i)
                todo.extend(g.node[i].input)
        elif name in declared:
            reached.add(name)
        # anything else: the node's visit reports the input no node produces
    if inputs is None:
        in_names = [vi.name for vi in g.input if vi.name in reached]
    else:
        outside = sorted(reached)
        if outside:
            raise ValueError(f"the cut needs graph input(s) {_listed(outside)}, which are not in inputs= "
                             "(add them to inputs=, or bind them with constants=)")
        in_names = inputs
    infos = _value_infos(model, [n for n in in_names if n not in declared] + out_names)
    infos.update({n: declared[n] for n in in_names if n in declared})
    missing = [n for n in in_names if n not in infos]
    if missing:
        raise ValueError(f"inputs= {_listed(missing)} have no known type and shape in the graph "
                         "(value_info), even after onnx shape inference")
    from onnx import ValueInfoProto

    out_infos = tuple(infos[n] if n in infos else ValueInfoProto(name=n) for n in out_names)
    return Cut(tuple((i, g.node[i]) for i in sorted(needed)), tuple(infos[n] for n in in_names), out_infos)


def _value_infos(model: Any, names: list[str]) -> dict[str, Any]:
    """Declared value infos of `names` (inputs, outputs, value_info), then shape inference's."""
    g = model.graph
    found = {}
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        if vi.name in names and vi.name not in found and vi.type.tensor_type.HasField("shape"):
            found[vi.name] = vi
    if all(n in found for n in names):
        return found
    try:
        from onnx import shape_inference

        inferred = shape_inference.infer_shapes(model).graph
    except Exception:  # noqa: BLE001 - shape inference refusing the model: report what stays unknown
        return found
    for vi in list(inferred.value_info) + list(inferred.output):
        if vi.name in names and vi.name not in found and vi.type.tensor_type.HasField("shape"):
            found[vi.name] = vi
    return found


def describe_graph(model: Any) -> str:
    """Inputs, nodes (index, op, name, inputs -> outputs) and outputs of a model's main graph.

    `model` is what import_onnx takes (a ModelProto, bytes or a path); the text names every tensor
    that import_onnx(..., inputs=, outputs=) can cut at.
    """
    from onnx import TensorProto

    from .importer import _load

    model = _load(model)
    g = model.graph

    def typed(vi) -> str:
        t = vi.type.tensor_type
        if not vi.type.HasField("tensor_type"):
            return f"{vi.name!r} (not a tensor)"
        try:
            elem = TensorProto.DataType.Name(t.elem_type).lower()
        except ValueError:
            elem = f"type {t.elem_type}"
        if not t.HasField("shape"):
            return f"{vi.name!r} {elem} (shape unknown)"
        dims = [str(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
        return f"{vi.name!r} {elem} ({', '.join(dims)})"

    inits = {t.name: t for t in g.initializer}
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    lines = [f"opsets: {opsets}", "graph inputs:"]
    lines += ["  " + typed(vi) for vi in g.input if vi.name not in inits]
    lines.append(f"initializers: {len(inits)}")
    lines.append("nodes:")
    for i, node in enumerate(g.node):
        op = (node.domain + "." if node.domain not in ("", "ai.onnx") else "") + node.op_type
        name = f" {node.name!r}" if node.name else ""
        args = ", ".join(repr(n) if n not in inits else f"{n!r}(init)" for n in node.input)
        lines.append(f"  #{i} {op}{name}: {args} -> {', '.join(repr(n) for n in node.output)}")
    lines.append("graph outputs:")
    lines += ["  " + typed(vi) for vi in g.output]
    return "\n".join(lines)
