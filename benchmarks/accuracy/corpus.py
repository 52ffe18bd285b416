"""The accuracy corpus: its models, their weights, and inputs that look like each model's task.

Three sections:
- trained: small torch.nn.LSTMs that train.py trains in seconds on tasks that need memory. Their
  weights are committed next to this file as <name>.npz: the LSTM's state_dict (weight_ih_l0, ...,
  float32) plus the task's Linear head as head.weight / head.bias (train.py --check runs the head
  to show the model solves its task; the corpus measures the LSTM alone). Committed, so the corpus
  does not depend on training being bit-reproducible across machines.
- adversarial: weights generated here from fixed seeds to stress float32 arithmetic: forget gates
  near 1, saturated gates, a cell state that grows to ~100.
- trained-like: trained_like.py's models (random weights of trained scale, forget biases +1..+5).

Inputs: for trained models, the task's own inputs (the adding problem's values and markers, recall
cues, sine waves, text); for the others, smooth random walks (trained_like.feature_input). Every
input is a function of (model, T, B) only.
"""

from __future__ import annotations

import dataclasses
import os
import zlib
from collections.abc import Callable

import numpy as np

import lstmgen

from . import trained_like

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# ---- text for the character models -----------------------------------------------------------

# The README, lower-cased; characters outside VOCAB share one "rare" symbol.
TEXT_FILE = os.path.join(ROOT, "README.md")
VOCAB = " \n" + "abcdefghijklmnopqrstuvwxyz" + "0123456789" + "`,.-|()_/:;=*\"'#+"
RARE = len(VOCAB)
V = len(VOCAB) + 1  # symbols (one-hot width of the character model's input)
MASK = V  # the denoiser's corruption symbol: its input has V + 1 channels
_INDEX = {ch: i for i, ch in enumerate(VOCAB)}


def text_ids(path: str = TEXT_FILE) -> np.ndarray:
    with open(path, encoding="utf-8") as fh:
        text = fh.read().lower()
    return np.array([_INDEX.get(ch, RARE) for ch in text], np.int64)


def one_hot(ids: np.ndarray, n: int) -> np.ndarray:
    out = np.zeros((*ids.shape, n), np.float32)
    np.put_along_axis(out, ids[..., None], 1.0, axis=-1)
    return out


def _windows(ids: np.ndarray, T: int, B: int, rng: np.random.Generator) -> np.ndarray:
    """B windows of T + 1 symbols at random offsets (the text repeated if it is shorter): (T + 1, B)."""
    if len(ids) < T + 2:
        ids = np.tile(ids, (T + 2) // len(ids) + 1)
    starts = rng.integers(0, len(ids) - T - 1, size=B)
    return np.stack([ids[s:s + T + 1] for s in starts], axis=1)


# ---- tasks: (x (T, B, I) float32, target) ----------------------------------------------------


def adding_task(T: int, B: int, rng: np.random.Generator):
    """The adding problem (Hochreiter & Schmidhuber): channel 0 holds values in [0, 1], channel 1
    marks two of them, one in each half; the target is their sum, read at the last step."""
    x = np.zeros((T, B, 2), np.float32)
    x[:, :, 0] = rng.uniform(0.0, 1.0, (T, B))
    first = rng.integers(0, T // 2, size=B)
    second = rng.integers(T // 2, T, size=B)
    cols = np.arange(B)
    x[first, cols, 1] = 1.0
    x[second, cols, 1] = 1.0
    y = (x[first, cols, 0] + x[second, cols, 0]).astype(np.float32)
    return x, y


RECALL_K = 4  # cue symbols
RECALL_P = 0.05  # chance of a cue per step (mean gap 20 steps, gaps of 100+ occur)


def recall_task(T: int, B: int, rng: np.random.Generator):
    """Delayed recall: at random steps (and at t = 0) a cue, one of K one-hot symbols, appears;
    otherwise the input is all zeros. The target at every step is the last cue seen, however
    long ago (the memory is unbounded; the LSTM has to latch it)."""
    cue = rng.random((T, B)) < RECALL_P
    cue[0] = True
    sym = rng.integers(0, RECALL_K, size=(T, B))
    x = np.where(cue[..., None], one_hot(sym, RECALL_K), 0.0).astype(np.float32)
    last = np.where(cue, sym, -1)
    y = np.maximum.accumulate(np.where(cue, np.arange(T)[:, None], 0), axis=0)  # index of the last cue
    y = np.take_along_axis(last, y, axis=0)
    return x, y


def sine_task(T: int, B: int, rng: np.random.Generator):
    """Next-sample prediction of sine waves whose frequency (0.02 .. 0.25 rad per step),
    amplitude and phase are drawn per sequence: the model has to infer the frequency from the
    past samples. x_t = a sin(w t + phi), target x_{t+1}."""
    w = rng.uniform(0.02, 0.25, size=B)
    a = rng.uniform(0.5, 1.0, size=B)
    phi = rng.uniform(0.0, 2 * np.pi, size=B)
    t = np.arange(T + 1)[:, None]
    s = (a * np.sin(w * t + phi)).astype(np.float32)
    return s[:-1, :, None], s[1:, :, None]


def char_task(T: int, B: int, rng: np.random.Generator, ids: np.ndarray):
    """Next-character prediction on text: x one-hot (V channels), target the next symbol."""
    win = _windows(ids, T, B, rng)
    return one_hot(win[:-1], V), win[1:]


DENOISE_P = 0.15  # share of characters replaced by MASK


def denoise_task(T: int, B: int, rng: np.random.Generator, ids: np.ndarray):
    """Denoising text (a bidirectional task): a share of the characters is replaced by MASK; the
    target is the original character at every step. Returns (x, y, masked)."""
    win = _windows(ids, T, B, rng)[:-1]
    masked = rng.random(win.shape) < DENOISE_P
    return one_hot(np.where(masked, MASK, win), V + 1), win, masked


# ---- the corpus --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    section: str  # "trained", "adversarial" or "trained-like"
    spec_kw: dict
    about: str
    make_weights: Callable[[lstmgen.LSTMSpec], dict] | None = None  # adversarial / trained-like
    task: str | None = None  # trained: the task of its inputs
    head_out: int = 0  # trained: the head's output features

    @property
    def spec(self) -> lstmgen.LSTMSpec:
        return lstmgen.LSTMSpec(**self.spec_kw)

    @property
    def weight_file(self) -> str:
        return os.path.join(HERE, f"{self.name}.npz")

    def load(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """A trained model's committed (LSTM weights, head weights)."""
        with np.load(self.weight_file) as z:
            arrays = {k: z[k] for k in z.files}
        head = {k[len("head."):]: v for k, v in arrays.items() if k.startswith("head.")}
        return {k: v for k, v in arrays.items() if not k.startswith("head.")}, head

    def weights(self) -> dict[str, np.ndarray]:
        """The LSTM's float32 weights, state_dict names."""
        if self.section == "trained":
            return self.load()[0]
        return self.make_weights(self.spec)

    def inputs(self, T: int, B: int) -> np.ndarray:
        """The corpus input of this model at (T, B): float32 (T, B, input_size)."""
        rng = np.random.default_rng([zlib.crc32(self.name.encode()), T, B])
        if self.task == "adding":
            return adding_task(T, B, rng)[0]
        if self.task == "recall":
            return recall_task(T, B, rng)[0]
        if self.task == "sine":
            return sine_task(T, B, rng)[0]
        if self.task == "char":
            return char_task(T, B, rng, text_ids())[0]
        if self.task == "denoise":
            return denoise_task(T, B, rng, text_ids())[0]
        return trained_like.feature_input(T, B, self.spec.input_size, seed=int(rng.integers(2**31)))


def _uniform(spec: lstmgen.LSTMSpec, gain: float, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    k = gain / np.sqrt(spec.hidden_size)
    return {name: rng.uniform(-k, k, size=shape) for name, shape in spec.weight_shapes().items()}


def _gate_bias(spec: lstmgen.LSTMSpec, w: dict, **bias) -> dict[str, np.ndarray]:
    """Add per-gate offsets (i, f, g, o: a number, or an array of H) to every bias_ih."""
    H = spec.hidden_size
    for name in w:
        if name.startswith("bias_ih"):
            for gate, value in bias.items():
                k = "ifgo".index(gate)
                w[name][k * H:(k + 1) * H] += value
    return {name: arr.astype(np.float32) for name, arr in w.items()}


def forget_bias_4(seed: int):
    """Weights of trained scale (+-1/sqrt(H)), forget bias +4: f = sigmoid(4 +- noise) ~ 0.98."""
    def make(spec):
        return _gate_bias(spec, _uniform(spec, 1.0, seed), f=4.0)
    return make


def saturated(seed: int, gain: float = 8.0):
    """Large weights (+-8/sqrt(H)) and biases: most gate pre-activations beyond |4|, so the gates
    sit at 0 or 1 and g, tanh(c) at +-1; the activations' tails decide the result."""
    def make(spec):
        rng = np.random.default_rng(seed + 1)
        H = spec.hidden_size
        return _gate_bias(spec, _uniform(spec, gain, seed), **{g: rng.uniform(-3, 3, H) for g in "ifgo"})
    return make


def cell_100(seed: int):
    """|c| grows to ~100: input gate open (bias +5), g saturated (bias +-3, alternating sign per
    unit), forget bias +4.6 (f ~ 0.99, so c -> i g / (1 - f) ~ 100 over a few hundred steps),
    small weights (+-0.3/sqrt(H)) that make the gates jitter."""
    def make(spec):
        H = spec.hidden_size
        sign = np.where(np.arange(H) % 2 == 0, 1.0, -1.0)
        rng = np.random.default_rng(seed + 1)
        return _gate_bias(spec, _uniform(spec, 0.3, seed), i=5.0, f=4.6, g=3.0 * sign, o=rng.uniform(-1, 1, H))
    return make


def _trained_like(gain: float, fb: float, name: str):
    def make(spec):
        return trained_like.trained_like(spec, gain, fb, seed=zlib.crc32(name.encode()))
    return make


TRAINED = [
    Entry("adding-h32", "trained", dict(input_size=2, hidden_size=32), "adding problem, T = 50 in training",
          task="adding", head_out=1),
    Entry("recall-h64-p16", "trained", dict(input_size=RECALL_K, hidden_size=64, proj_size=16),
          f"delayed recall of the last of {RECALL_K} sparse cues (projection)", task="recall", head_out=RECALL_K),
    Entry("sine-h32-2l", "trained", dict(input_size=1, hidden_size=32, num_layers=2),
          "sine next-sample prediction, unknown frequency (2 layers)", task="sine", head_out=1),
    Entry("char-h128", "trained", dict(input_size=V, hidden_size=128), "character model of README.md",
          task="char", head_out=V),
    Entry("denoise-h48-bi", "trained", dict(input_size=V + 1, hidden_size=48, bidirectional=True),
          "README.md text denoiser, 15% of characters masked (bidirectional)", task="denoise", head_out=V),
]

ADVERSARIAL = [
    Entry("adv-forget4-h64", "adversarial", dict(input_size=16, hidden_size=64), "forget bias +4 (f ~ 0.98)",
          forget_bias_4(101)),
    Entry("adv-forget4-h96-p32-bi", "adversarial", dict(input_size=16, hidden_size=96, proj_size=32, bidirectional=True),
          "forget bias +4, projection, bidirectional", forget_bias_4(102)),
    Entry("adv-saturated-h32", "adversarial", dict(input_size=16, hidden_size=32), "saturated gates (weights +-8/sqrt(H))",
          saturated(103)),
    Entry("adv-saturated-h64-2l", "adversarial", dict(input_size=16, hidden_size=64, num_layers=2),
          "saturated gates, 2 layers", saturated(104)),
    Entry("adv-c100-h32", "adversarial", dict(input_size=8, hidden_size=32), "abs(c) grows to ~100", cell_100(105)),
    Entry("adv-c100-h64-2l", "adversarial", dict(input_size=8, hidden_size=64, num_layers=2),
          "abs(c) grows to ~100, 2 layers", cell_100(106)),
]

TRAINED_LIKE = [
    Entry(name, "trained-like", kw, f"uniform +-{gain}/sqrt(H), forget bias +{fb:g}", _trained_like(gain, fb, name))
    for name, (kw, gain, fb) in trained_like.CORPUS.items()
]

ENTRIES = {e.name: e for e in TRAINED + ADVERSARIAL + TRAINED_LIKE}
SECTIONS = ("trained", "adversarial", "trained-like")
