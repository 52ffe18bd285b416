"""Train the corpus's small LSTMs on tasks that need memory and write their weights.

    python benchmarks/accuracy/train.py [--models adding-h32,...]   # train, write <name>.npz
    python benchmarks/accuracy/train.py --check                     # evaluate the committed files

Each model is a torch.nn.LSTM plus a Linear head, trained on CPU in seconds with one thread and
fixed seeds (deterministic on one machine; the committed .npz files are what the corpus uses, so
it does not depend on training reproducing bit for bit elsewhere). The .npz holds the LSTM's
state_dict (float32, torch names) and the head as head.weight / head.bias. After training, and
with --check, each model is evaluated on fresh task data against a trivial baseline, so the
corpus is known to hold models that learned their task.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))

import numpy as np  # noqa: E402

from benchmarks.accuracy import corpus  # noqa: E402

# name: (training T, batch, steps, learning rate, seed)
TRAINING = {
    "adding-h32": (50, 64, 1500, 1e-2, 1),
    "recall-h64-p16": (100, 32, 400, 1e-2, 2),
    "sine-h32-2l": (100, 32, 600, 1e-2, 3),
    "char-h128": (64, 32, 600, 5e-3, 4),
    "denoise-h48-bi": (64, 32, 600, 1e-2, 5),
}
TEXT_SPLIT = 0.9  # the character models train on the first 90% of the text, evaluate on the rest


def _torch():
    import torch

    torch.set_num_threads(1)
    return torch


def build(entry: corpus.Entry):
    torch = _torch()
    s = entry.spec
    lstm = torch.nn.LSTM(s.input_size, s.hidden_size, s.num_layers, bidirectional=s.bidirectional, proj_size=s.proj_size)
    head = torch.nn.Linear(s.num_directions * s.output_size, entry.head_out)
    return lstm, head


def batch(entry: corpus.Entry, T: int, B: int, rng, part: str):
    """Task data as torch tensors: (x, target, weight mask or None)."""
    torch = _torch()
    ids = None
    if entry.task in ("char", "denoise"):
        ids = corpus.text_ids()
        cut = int(len(ids) * TEXT_SPLIT)
        ids = ids[:cut] if part == "train" else ids[cut:]
    if entry.task == "adding":
        x, y = corpus.adding_task(T, B, rng)
        return torch.from_numpy(x), torch.from_numpy(y), None
    if entry.task == "recall":
        x, y = corpus.recall_task(T, B, rng)
        return torch.from_numpy(x), torch.from_numpy(y), None
    if entry.task == "sine":
        x, y = corpus.sine_task(T, B, rng)
        return torch.from_numpy(x), torch.from_numpy(y), None
    if entry.task == "char":
        x, y = corpus.char_task(T, B, rng, ids)
        return torch.from_numpy(x), torch.from_numpy(y), None
    x, y, masked = corpus.denoise_task(T, B, rng, ids)
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(masked)


SINE_WARMUP = 10  # steps before the sine loss counts (the frequency is unknown at t = 0)


def loss_and_metric(entry: corpus.Entry, lstm, head, x, y, mask):
    """(training loss, task metric, metric name): MSE for regression, accuracy or nats otherwise."""
    torch = _torch()
    F = torch.nn.functional
    out, _ = lstm(x)
    if entry.task == "adding":
        pred = head(out[-1])[:, 0]
        loss = F.mse_loss(pred, y)
        return loss, float(loss.detach()), "MSE"
    if entry.task == "sine":
        pred = head(out)[SINE_WARMUP:]
        loss = F.mse_loss(pred, y[SINE_WARMUP:])
        return loss, float(loss.detach()), "MSE"
    logits = head(out)
    if entry.task == "recall":
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, float((logits.argmax(-1) == y).float().mean()), "accuracy"
    if entry.task == "char":
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        return loss, float(loss.detach()), "nats/char"
    sel = mask.reshape(-1)
    flat = logits.reshape(-1, logits.shape[-1])[sel]
    loss = F.cross_entropy(flat, y.reshape(-1)[sel])
    return loss, float((flat.argmax(-1) == y.reshape(-1)[sel]).float().mean()), "accuracy on masked"


def baseline(entry: corpus.Entry, x, y, mask) -> tuple[float, str]:
    """A trivial predictor's metric on the same data, and what it is."""
    yn = y.numpy()
    if entry.task == "adding":
        return float(((yn - 1.0) ** 2).mean()), "predict 1.0 (the mean)"
    if entry.task == "sine":
        xn = x.numpy()
        return float(((xn[SINE_WARMUP:] - yn[SINE_WARMUP:]) ** 2).mean()), "predict x_t (persistence)"
    if entry.task == "recall":
        return float(max((yn == k).mean() for k in range(corpus.RECALL_K))), "the most frequent cue"
    train = corpus.text_ids()[: int(len(corpus.text_ids()) * TEXT_SPLIT)]
    p = np.bincount(train, minlength=corpus.V) / len(train)
    if entry.task == "char":
        return float(-np.log(np.maximum(p[yn], 1e-12)).mean()), "unigram frequencies of the training text"
    return float((yn[mask.numpy()] == p.argmax()).mean()), "the most frequent character"


def evaluate(entry: corpus.Entry, lstm, head, seed: int = 12345) -> list[str]:
    """The task metric on fresh data at the training length and at 10x it, with the baseline."""
    torch = _torch()
    T, B = TRAINING[entry.name][:2]
    lines = []
    for t in (T, 10 * T):
        rng = np.random.default_rng([seed, t])
        x, y, mask = batch(entry, t, 256 if entry.task in ("adding", "sine", "recall") else 16, rng, "eval")
        with torch.no_grad():
            _, metric, what = loss_and_metric(entry, lstm, head, x, y, mask)
        base, base_what = baseline(entry, x, y, mask)
        lines.append(f"{entry.name}: T = {t}: {what} {metric:.4g} (baseline {base:.4g}: {base_what})")
    return lines


def train(entry: corpus.Entry) -> tuple[dict, dict]:
    torch = _torch()
    T, B, steps, lr, seed = TRAINING[entry.name]
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lstm, head = build(entry)
    params = list(lstm.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    t0 = time.perf_counter()
    for step in range(steps):
        x, y, mask = batch(entry, T, B, rng, "train")
        loss, metric, what = loss_and_metric(entry, lstm, head, x, y, mask)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % max(1, steps // 5) == 0 or step == steps - 1:
            print(f"  {entry.name} step {step:5d}: loss {float(loss):.4g}, {what} {metric:.4g}", flush=True)
    print(f"  {entry.name}: trained in {time.perf_counter() - t0:.1f} s", flush=True)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in lstm.state_dict().items()}
    hd = {k: v.detach().numpy().astype(np.float32) for k, v in head.state_dict().items()}
    return sd, hd


def load(entry: corpus.Entry):
    torch = _torch()
    lstm, head = build(entry)
    sd, hd = entry.load()
    lstm.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    head.load_state_dict({k: torch.from_numpy(v) for k, v in hd.items()})
    return lstm.eval(), head.eval()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=None, help=f"comma-separated (default: all of {', '.join(TRAINING)})")
    ap.add_argument("--check", action="store_true", help="evaluate the committed weight files, train nothing")
    ap.add_argument("--out", default=None, help="write the .npz files into this folder instead (e.g. to compare a retraining)")
    args = ap.parse_args(argv)
    names = args.models.split(",") if args.models else list(TRAINING)
    unknown = sorted(set(names) - set(TRAINING))
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {', '.join(TRAINING)}")
    for name in names:
        entry = corpus.ENTRIES[name]
        if not args.check:
            sd, hd = train(entry)
            path = os.path.join(args.out, os.path.basename(entry.weight_file)) if args.out else entry.weight_file
            np.savez_compressed(path, **sd, **{f"head.{k}": v for k, v in hd.items()})
            print(f"  wrote {os.path.relpath(path)} ({os.path.getsize(path)} bytes)")
            if args.out:
                continue
        lstm, head = load(entry)
        for line in evaluate(entry, lstm, head):
            print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
