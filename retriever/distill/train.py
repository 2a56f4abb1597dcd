"""Train the fastText student on the teacher's confirmed labels and measure how well it agrees.

The student is a supervised fastText classifier (labels ``__label__positive`` and
``__label__negative``, word bigrams), the cheap model PreSelect, DCLM and the perplexity-correlation
paper all use to carry an expensive teacher's judgement to a whole corpus. It is trained on a
stratified split of the positive and negative rows; the held-out part measures precision, recall,
F1 and ROC-AUC against the teacher's labels, and the Spearman agreement of the student's
probability with the teacher's combined score (:func:`~retriever.distill.metrics.combined_score`),
on the held-out rows plus every ``uncertain`` row (none of which the student saw).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retriever._deps import require
from retriever.corpus import AtomicWriter, write_json_atomic
from retriever.distill.labels import (
    NEGATIVE,
    POSITIVE,
    UNCERTAIN,
    LabelSet,
    fasttext_text,
    load_labels,
    split_indices,
)
from retriever.distill.metrics import classification_metrics, combined_score, spearman
from retriever.errors import ConfigError

if TYPE_CHECKING:
    from fasttext.FastText import _FastText

LABEL_PREFIX = "__label__"
MANIFEST_VERSION = 1
# fastText 0.9.x initialises its input matrix in 10 blocks, one per training thread
# (DenseMatrix::uniformThread): with fewer than 11 threads part of the matrix is left as
# uninitialised memory, and training on it can stop with "Encountered NaN" or learn from garbage.
# So training always runs at least 11 threads (hogwild, hence not bit-reproducible run to run).
MIN_THREADS = 11


@dataclass(frozen=True)
class DistillConfig:
    """fastText hyperparameters and the evaluation split.

    Args:
        lr: learning rate. Label sets are small (hundreds to thousands of rows): fastText's own
            0.1 / 5 epochs under-fits them (on 300 GSM8K vs 600 ClimbLab rows, recall 0.37 at
            p >= 0.5 with 0.1 / 10 epochs, 0.98 with 0.5).
        epoch: passes over the training lines.
        dim: vector size. Model memory is about ``(vocabulary + bucket) x dim x 4`` bytes.
        word_ngrams: 2 = word bigrams (the PreSelect / DCLM setting).
        min_count: drop words seen fewer times.
        bucket: hash buckets for the n-grams; the bulk of the model's size.
        loss: ``softmax`` (default) or ``ova`` / ``hs``.
        thread: training threads; at least :data:`MIN_THREADS` are used (see there).
        seed: fastText's seed and the split's seed.
        test_fraction: share of each class held out for the metrics.
        threshold: probability at which precision / recall / F1 are measured.
        refit: after measuring, retrain on every positive and negative row and save that model
            (the metrics then describe a model trained on less data, and the manifest says so).
        max_chars: cut each training document at this many characters (``0``: whole document).
    """

    lr: float = 0.5
    epoch: int = 15
    dim: int = 64
    word_ngrams: int = 2
    min_count: int = 1
    bucket: int = 2_000_000
    loss: str = "softmax"
    thread: int = MIN_THREADS
    seed: int = 0
    test_fraction: float = 0.2
    threshold: float = 0.5
    refit: bool = False
    max_chars: int = 0

    def __post_init__(self) -> None:
        checks = {
            "lr": self.lr > 0,
            "epoch": self.epoch >= 1,
            "dim": self.dim >= 1,
            "word_ngrams": self.word_ngrams >= 1,
            "min_count": self.min_count >= 1,
            "bucket": self.bucket >= 1,
            "thread": self.thread >= 1,
            "test_fraction": 0.0 < self.test_fraction < 1.0,
            "threshold": 0.0 <= self.threshold <= 1.0,
            "max_chars": self.max_chars >= 0,
            "loss": self.loss in ("softmax", "ova", "hs", "ns"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"invalid distill option(s) {bad}: { ({k: getattr(self, k) for k in bad}) }; see "
                "`retriever distill --help` for the allowed ranges"
            )

    def fasttext_args(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "epoch": self.epoch,
            "dim": self.dim,
            "wordNgrams": self.word_ngrams,
            "minCount": self.min_count,
            "bucket": self.bucket,
            "loss": self.loss,
            "thread": max(self.thread, MIN_THREADS),
            "seed": self.seed,
            "verbose": 0,
        }


@dataclass
class DistillReport:
    """What :class:`FastTextDistiller` produced: paths, counts and held-out metrics."""

    task: str
    model_path: str
    manifest_path: str
    counts: dict[str, int]
    n_train: int
    n_test: int
    metrics: dict[str, Any]
    seconds: float
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)


def model_manifest_path(model_path: str | os.PathLike) -> Path:
    """The manifest beside a model: ``indexes/TASK/filter.bin`` -> ``indexes/TASK/filter.json``."""
    return Path(model_path).with_suffix(".json")


class FastTextDistiller:
    """Stage: confirmed labels of one task -> a fastText model file and its manifest.

    Args:
        config: hyperparameters and split (:class:`DistillConfig`).
    """

    name = "distill"

    def __init__(self, config: DistillConfig | None = None):
        self.config = config or DistillConfig()

    def run(self, labels: str | os.PathLike, task: str, out: str | os.PathLike) -> DistillReport:
        """Train, evaluate on the held-out split, save ``out`` and its manifest atomically.

        Raises:
            InputError: the labels cannot be read.
            ConfigError: too few positive or negative rows for the task.
        """
        t0 = time.perf_counter()
        cfg = self.config
        data = load_labels(labels, task)
        train_idx, test_idx = split_indices(data.labels, cfg.test_fraction, cfg.seed)
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=".distill-") as tmp:
            model = self._train(data, train_idx, Path(tmp))
            p_test = predict_positive(model, [data.texts[i] for i in test_idx], cfg.max_chars)
            metrics = self._metrics(data, model, test_idx, p_test)
            if cfg.refit:
                model = self._train(data, np.concatenate([train_idx, test_idx]), Path(tmp))
            with AtomicWriter(out) as tmp_model:
                model.save_model(str(tmp_model))
        manifest = {
            "kind": "fasttext-filter",
            "version": MANIFEST_VERSION,
            "task": task,
            "positive_label": LABEL_PREFIX + POSITIVE,
            "labels": {"source": str(labels), "files": data.sources},
            "data_fingerprint": data.fingerprint(),
            "counts": data.counts() | {"empty_skipped": len(data) - sum(data.counts().values())},
            "n_train": int(len(train_idx)),
            "n_test": int(len(test_idx)),
            "trained_on": "train+test (refit)" if cfg.refit else "train split",
            "config": asdict(cfg),
            "text_normalization": "newlines -> spaces (fasttext_text)",
            "metrics": metrics,
            "fasttext": _version("fasttext-numpy2-wheel"),
            "model_file": out.name,
            "model_bytes": out.stat().st_size,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        mpath = model_manifest_path(out)
        manifest["heldout_file"] = self._write_heldout(mpath, data, test_idx, p_test).name
        write_json_atomic(mpath, manifest)
        return DistillReport(
            task=task,
            model_path=str(out),
            manifest_path=str(mpath),
            counts=manifest["counts"],
            n_train=len(train_idx),
            n_test=len(test_idx),
            metrics=metrics,
            seconds=time.perf_counter() - t0,
            manifest=manifest,
        )

    def _write_heldout(
        self, mpath: Path, data: LabelSet, test_idx: np.ndarray, p: np.ndarray
    ) -> Path:
        """Held-out predictions beside the manifest (``filter.heldout.parquet``: id, y, p), for
        precision-recall curves (``retriever report`` reads them)."""
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        path = mpath.with_suffix(".heldout.parquet")
        table = pa.table(
            {
                "id": [data.ids[i] for i in test_idx],
                "y": [data.labels[i] == POSITIVE for i in test_idx],
                "p": np.asarray(p, dtype=np.float64),
            }
        )
        with AtomicWriter(path) as tmp:
            pq.write_table(table, tmp)
        return path

    def _train(self, data: LabelSet, idx: np.ndarray, tmp: Path) -> _FastText:
        fasttext = require("fasttext")
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        order = idx.copy()
        rng.shuffle(order)  # fastText reads lines in order; mixed classes train better
        path = tmp / "train.txt"
        with open(path, "w", encoding="utf-8") as fh:
            for i in order:
                text = fasttext_text(
                    data.texts[i][: cfg.max_chars] if cfg.max_chars else data.texts[i]
                )
                fh.write(f"{LABEL_PREFIX}{data.labels[i]} {text}\n")
        return fasttext.train_supervised(input=str(path), **cfg.fasttext_args())

    def _metrics(
        self, data: LabelSet, model: _FastText, test_idx: np.ndarray, p_test: np.ndarray
    ) -> dict:
        y_test = np.array([data.labels[i] == POSITIVE for i in test_idx])
        out = classification_metrics(y_test, p_test, self.config.threshold)
        # rank agreement: held-out rows plus the uncertain rows (never trained on)
        unc = np.array([i for i, lab in enumerate(data.labels) if lab == UNCERTAIN], dtype=np.int64)
        p_unc = predict_positive(model, [data.texts[i] for i in unc], self.config.max_chars)
        rows = np.concatenate([test_idx, unc])
        teacher = combined_score(data.similarity, data.correlation)[rows]
        student = np.concatenate([p_test, p_unc])
        out["spearman_combined"] = spearman(student, teacher)
        out["spearman_n"] = int(np.isfinite(teacher).sum())
        out["spearman_rows"] = "held-out positives/negatives + uncertain rows"
        out["teacher_score"] = "mean percentile rank of similarity and correlation (present ones)"
        out["mean_p_positive"] = float(p_test[y_test].mean())
        out["mean_p_negative"] = float(p_test[~y_test].mean())
        n_neg = int(sum(1 for lab in data.labels if lab == NEGATIVE))
        out["base_rate_positive"] = 1.0 - n_neg / max(
            1, n_neg + int(sum(1 for lab in data.labels if lab == POSITIVE))
        )
        return out


def predict_positive(model: _FastText, texts: list[str], max_chars: int = 0) -> np.ndarray:
    """P(positive) of each text under ``model``. Returns ``[len(texts)]`` float64."""
    if not texts:
        return np.zeros(0)
    lines = [fasttext_text(t[:max_chars] if max_chars else t) for t in texts]
    labels, probs = model.predict(lines, k=-1)
    pos = LABEL_PREFIX + POSITIVE
    out = np.zeros(len(lines))
    for k, (labs, ps) in enumerate(zip(labels, probs, strict=True)):
        for lab, p in zip(labs, ps, strict=True):
            if lab == pos:
                out[k] = float(p)
                break
    return out


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"
