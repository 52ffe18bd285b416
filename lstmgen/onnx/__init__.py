"""ONNX in and out: LSTM graphs -> (LSTMSpec, weights), and (LSTMSpec, weights) -> an ONNX graph.

Input (import): an `onnx.ModelProto`, or a path to a .onnx file, holding one or more ONNX `LSTM`
nodes (default domain, opset 7..22) with the glue torch.onnx.export writes around them (both the
legacy TorchScript exporter and the dynamo exporter), or a bare hand-built node.
Output: `import_onnx` gives an `OnnxImport`: the spec, weights with torch.nn.LSTM's state_dict
names (gate order i, f, g, o), and how the graph's inputs and outputs relate to `Model`'s
arguments and results. `from_onnx` gives just (spec, weights).

How the import works. The graph is not executed. Every value is given an abstract meaning drawn
from a small fixed vocabulary — a constant, a vector of symbolic sizes (what Shape/Gather/Concat
compute), zeros of a symbolic shape (the exporters' zero initial state), the graph input x or
a state input (with its axes labelled), an LSTM output (with its axes labelled), the lengths,
the permutation torch's packed-sequence export sorts rows by — and each glue op is accepted
only when it maps meanings to meanings. Any other op, attribute or combination raises
ValueError naming the node (its index, op type and, via repr, its name) and what is wrong.
A constant non-zero initial state, a projection, a graph output that is not the last layer's
sequence or a run of layers' states, or layers that disagree on the cell are all refused.

Export: `to_onnx(spec, weights)` writes one LSTM node per layer plus Slice/Transpose/Reshape/
Concat glue (opset 14), for models without projection.

Gate orders: ONNX stores W, R and both biases in order i, o, f, c, and peepholes in order
i, o, f; torch (and lstmgen) use i, f, g(=c), o and peepholes i, f, o. ONNX's B is [Wb, Rb]
per direction: Wb becomes bias_ih, Rb bias_hh.

Modules, in the order the import runs: importer.py (the driver), values.py (the abstract values
and the axis unifier), cut.py (the part of a bigger graph to read), bindings.py (graph inputs and
outputs, the OnnxImport result), fold.py (glue ops), lstm_node.py (one LSTM node); gates.py (gate
orders shared with export.py).
"""

from .bindings import OnnxImport, StateSource
from .cut import describe_graph
from .export import EXPORT_OPSET, to_onnx
from .gates import OPSET_MAX, OPSET_MIN, USES_ALPHA, USES_BETA
from .importer import from_onnx, import_onnx

__all__ = ["EXPORT_OPSET", "OPSET_MAX", "OPSET_MIN", "USES_ALPHA", "USES_BETA", "OnnxImport", "StateSource",
           "describe_graph", "from_onnx", "import_onnx", "to_onnx"]
