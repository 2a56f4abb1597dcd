"""The fastText core both students train through: the training file, hash buckets, training,
prediction, the held-out measurement, the refit and the saved model.

:class:`~retriever.distill.train.FastTextDistiller` (one binary student per task) and
:class:`~retriever.distill.multilabel.MultiLabelDistiller` (one one-vs-all student for every
task) differ only in the labels their lines carry and in what their manifests record.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from retriever._deps import require
from retriever.corpus import AtomicWriter
from retriever.distill.checks import student_checks
from retriever.distill.labels import POSITIVE, LabelSet, fasttext_text
from retriever.distill.metrics import classification_metrics
from retriever.distill.trainset import bucket_for

if TYPE_CHECKING:
    from fasttext.FastText import _FastText

    from retriever.distill.train import DistillConfig

LABEL_PREFIX = "__label__"
# fastText 0.9.x initialises its input matrix in 10 blocks, one per training thread
# (DenseMatrix::uniformThread): with fewer than 11 threads part of the matrix is left as
# uninitialised memory, and training on it can stop with "Encountered NaN" or learn from garbage.
# So training always runs at least 11 threads (hogwild, hence not bit-reproducible run to run).
MIN_THREADS = 11
MAX_BUCKET = 2_000_000

T = TypeVar("T")


def train_fasttext(
    config: DistillConfig,
    texts: Sequence[str],
    labels: Sequence[Sequence[str]],
    copies: Sequence[int] | np.ndarray,
    path: Path,
    loss: str | None = None,
) -> tuple[_FastText, int]:
    """Train fastText on ``texts`` (line ``i`` labelled ``labels[i]``, written ``copies[i]``
    times) through the training file ``path``.

    Each text is cut at ``max_chars`` and normalized once (:func:`~retriever.distill.labels.
    fasttext_text`); the lines are written in a shuffle seeded by ``config.seed`` (fastText reads
    them in order; mixed classes train better). ``loss``: instead of ``config.loss``.

    Returns:
        ``(model, bucket)``: the model and the hash buckets it was trained with (``config.bucket``,
        or sized to the texts by :func:`~retriever.distill.trainset.bucket_for`).
    """
    fasttext = require("fasttext")
    order = np.repeat(np.arange(len(texts)), np.asarray(copies, dtype=np.int64))
    np.random.default_rng(config.seed).shuffle(order)
    lines: dict[int, str] = {}
    with open(path, "w", encoding="utf-8") as fh:
        for i in order.tolist():
            if i not in lines:
                lines[i] = fasttext_text(texts[i], config.normalization, config.max_chars)
            fh.write(" ".join(LABEL_PREFIX + lab for lab in labels[i]) + f" {lines[i]}\n")
    bucket = config.bucket or bucket_for(
        list(lines.values()), config.word_ngrams, MAX_BUCKET, minn=config.minn, maxn=config.maxn
    )
    args = config.fasttext_args(bucket) | ({"loss": loss} if loss else {})
    return fasttext.train_supervised(input=str(path), **args), int(bucket)


def predict_labels(model: _FastText, lines: list[str], labels: list[str]) -> np.ndarray:
    """``P(label)`` of each fastText line (:func:`~retriever.distill.labels.fasttext_text`) for
    each fastText label (``__label__...``), in one fastText call. ``[n_lines, n_labels]`` float64.
    """
    out = np.zeros((len(lines), len(labels)), dtype=np.float64)
    if not lines:
        return out
    col = {lab: j for j, lab in enumerate(labels)}
    found, probs = model.predict(lines, k=-1, threshold=0.0)
    for k, (labs, ps) in enumerate(zip(found, probs, strict=True)):
        for lab, p in zip(labs, ps, strict=True):
            j = col.get(lab)
            if j is not None:
                out[k, j] = float(p)
    return out


def heldout_rows(rows: LabelSet, idx: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """``(y, texts)`` of rows ``idx``: ``y`` is True for a positive row."""
    return np.array([rows.labels[i] == POSITIVE for i in idx]), [rows.texts[i] for i in idx]


def heldout_metrics(
    config: DistillConfig,
    rows: LabelSet,
    test_idx: np.ndarray,
    p: np.ndarray,
    more: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], list[str]]:
    """A student's figures on its held-out rows ``test_idx`` of ``rows`` (``p``: its
    ``P(positive)`` of each), and the warnings of the check against the similarity stage.

    The figures are the classification metrics at ``config.threshold``, then ``more``, then
    ``heldout_vs_similarity`` (:func:`~retriever.distill.checks.student_checks`).
    """
    y, _ = heldout_rows(rows, test_idx)
    metrics: dict[str, Any] = classification_metrics(y, p, config.threshold) | (more or {})
    checks = student_checks(rows, test_idx, p, config.threshold, config.max_auc_gap)
    metrics["heldout_vs_similarity"] = checks["comparison"]
    return metrics, checks["warnings"]


def fit_and_save(
    out: Path,
    refit: bool,
    fit: Callable[[Path, bool], tuple[_FastText, int]],
    measure: Callable[[_FastText, Path], T],
    prefix: str = ".distill-",
) -> tuple[T, int]:
    """Train, measure, retrain on every row if ``refit``, save the model at ``out`` atomically.

    ``fit(tmp, every)`` trains on the training rows (``every``: on the held-out rows too), writing
    its training files under ``tmp``, a folder beside ``out`` removed afterwards;
    ``measure(model, tmp)`` measures the first model on the held-out rows. With ``refit`` the
    saved model has seen the held-out rows, so the figures describe a model trained on less data.

    Returns:
        ``(what measure returned, the saved model's hash buckets)``.
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=prefix) as name:
        tmp = Path(name)
        model, bucket = fit(tmp, False)
        measured = measure(model, tmp)
        if refit:
            model, bucket = fit(tmp, True)
        with AtomicWriter(out) as tmp_model:
            model.save_model(str(tmp_model))
    return measured, bucket


def model_fields(out: Path) -> dict[str, Any]:
    """The manifest's entries for the saved model file ``out``: name, size, time written."""
    return {
        "model_file": out.name,
        "model_bytes": out.stat().st_size,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
