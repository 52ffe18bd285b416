"""lstmgen: compile torch.nn.LSTM-shaped models to standalone C, callable from Python via cffi."""

__version__ = "0.1.0"

from . import reference  # noqa: E402
from .api import compile, from_torch, generate, generate_sources  # noqa: E402
from .build import BuildError  # noqa: E402
from .embedded import embedded_sources, generate_embedded  # noqa: E402
from .importers import from_keras_weights  # noqa: E402
from .onnx import from_onnx, import_onnx, to_onnx  # noqa: E402
from .runtime import Model, Stream  # noqa: E402
from .schedule import Schedule, ScheduledProgram, build_program  # noqa: E402
from .spec import Activation, LSTMSpec  # noqa: E402
from .weights import random_weights  # noqa: E402

__all__ = [
    "Activation", "BuildError", "LSTMSpec", "Model", "Schedule", "ScheduledProgram", "Stream", "__version__", "build_program",
    "compile", "embedded_sources", "from_torch", "generate", "generate_embedded", "generate_sources", "random_weights", "reference",
    "from_keras_weights", "from_onnx", "import_onnx", "to_onnx",
]
