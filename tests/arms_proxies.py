"""A small, real proxy loop for the arms tests: a byte-bigram language model.

``BigramTrainer`` counts byte bigrams over a seeded sample of a dataset's LMFlow parts (up to a
byte budget) and saves them; ``BigramEvaluator`` scores a saved model the way the harness does:
bits per byte of each task's texts, and multiple choice ``acc`` / ``acc_norm`` (log-likelihood of
``" " + choice`` after the prompt, raw and divided by the choice's length). It learns from the
data it is given, so an arm with task-like data gets a lower BPB on the task: the arms tests can
check the loop's conclusions, in milliseconds, without the proxy stage's transformer.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np

from retriever.arms import TrainOutcome


def dataset_texts(data: Path) -> list[str]:
    texts = []
    for f in sorted((Path(data) / "lmflow").glob("part_*.json")):
        texts += [i["text"] for i in json.loads(f.read_text())["instances"]]
    return texts


class BigramTrainer:
    def __init__(self, tokens: int = 4000, alpha: float = 0.1):
        self.tokens = tokens
        self.alpha = alpha
        self.spec = {"trainer": "bigram", "tokens": tokens, "alpha": alpha}
        self.calls: list[tuple[str, int]] = []

    def train(self, data: Path, out: Path, seed: int) -> TrainOutcome:
        t0 = time.perf_counter()
        self.calls.append((str(data), seed))
        texts = dataset_texts(data)
        rng = np.random.default_rng(seed)
        counts = np.full((256, 256), self.alpha)  # [prev byte, next byte]
        n = 0
        while n < self.tokens and texts:
            b = np.frombuffer(texts[rng.integers(len(texts))].encode(), dtype=np.uint8)
            b = b[: self.tokens - n + 1]
            np.add.at(counts, (b[:-1], b[1:]), 1.0)
            n += max(1, len(b) - 1)
        out.mkdir(parents=True, exist_ok=True)
        np.save(out / "bigram.npy", counts)
        dt = max(time.perf_counter() - t0, 1e-9)
        return TrainOutcome(out, n, n / dt, dt)


def _logp(counts: np.ndarray, prev: bytes, text: bytes) -> float:
    lp = np.log(counts / counts.sum(axis=1, keepdims=True))
    seq = np.frombuffer((prev[-1:] or b" ") + text, dtype=np.uint8)
    return float(lp[seq[:-1], seq[1:]].sum())


class BigramEvaluator:
    def __init__(self, data: dict[str, str]):
        self.data = data
        self.spec = {"evaluator": "bigram", "data": data}

    def evaluate(self, checkpoint: Path) -> dict[str, dict[str, float]]:
        counts = np.load(Path(checkpoint) / "bigram.npy")
        out = {}
        for task, path in self.data.items():
            recs = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
            nats = nbytes = 0.0
            acc, acc_norm, n_mc = 0, 0, 0
            for r in recs:
                text = r["text"].encode()
                nats -= _logp(counts, b"", text)
                nbytes += len(text)
                if "choices" in r:
                    prompt = f"Question: {r['question']}\nAnswer:".encode()
                    ll = [_logp(counts, prompt, (" " + c).encode()) for c in r["choices"]]
                    norm = [v / len(c) for v, c in zip(ll, r["choices"], strict=True)]
                    acc += int(np.argmax(ll) == r["answer"])
                    acc_norm += int(np.argmax(norm) == r["answer"])
                    n_mc += 1
            out[task] = {
                "bpb": nats / math.log(2) / nbytes,
                "acc": acc / n_mc if n_mc else math.nan,
                "acc_norm": acc_norm / n_mc if n_mc else math.nan,
                "n": len(recs),
            }
        return out
