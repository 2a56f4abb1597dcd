"""Train the fastText student on the combined training set and measure it on held-out rows.

The student is a supervised fastText classifier (labels ``__label__positive`` and
``__label__negative``, word bigrams), the cheap model PreSelect, DCLM and the perplexity-correlation
paper all use to carry an expensive teacher's judgement to a whole corpus. Its training set
(:mod:`retriever.distill.trainset`) keeps every signal: the task's gold exemplars and the confirmed
candidates as positives, random corpus documents and the other tasks' gold as negatives, optionally
the rejected candidates as hard negatives, each source weighted by replicating lines. A split
stratified by source holds rows out; on them the manifest records precision, recall, F1 and ROC-AUC,
the student's AUC beside the similarity stage's on the same held-out gold and random documents
(:mod:`retriever.distill.checks`, with warnings when the student is worse), and the Spearman
agreement of the student's probability with the teacher's combined score
(:func:`~retriever.distill.metrics.combined_score`) on the held-out rows plus every ``uncertain``
row (none of which the student saw).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retriever._deps import require
from retriever.corpus import AtomicWriter, write_json_atomic
from retriever.distill import fit
from retriever.distill.fit import LABEL_PREFIX, MAX_BUCKET, MIN_THREADS
from retriever.distill.labels import (
    NEGATIVE,
    NORMALIZATIONS,
    POSITIVE,
    UNCERTAIN,
    LabelSet,
    fasttext_text,
    load_labels,
)
from retriever.distill.metrics import combined_score, spearman
from retriever.distill.trainset import (
    DEFAULT_VARIANT,
    StudentSet,
    StudentSetConfig,
    build_student_set,
    load_gold_sets,
    split_by_source,
    write_student_set,
)
from retriever.errors import ConfigError

if TYPE_CHECKING:
    from fasttext.FastText import _FastText

MANIFEST_VERSION = 2


@dataclass(frozen=True)
class DistillConfig:
    """fastText hyperparameters, the training set's sources and the evaluation split.

    Args:
        lr: learning rate. Label sets are small (hundreds to thousands of rows): fastText's own
            0.1 / 5 epochs under-fits them (on 300 GSM8K vs 600 ClimbLab rows, recall 0.37 at
            p >= 0.5 with 0.1 / 10 epochs, 0.98 with 0.5).
        epoch: passes over the training lines.
        dim: vector size. Model memory is about ``(vocabulary + bucket) x dim x 4`` bytes, and
            scoring sums one vector per token and subword, so cost is linear in it. 32: as good
            as 64 on the cross-source set (docs/distill.md) at half the size and summing cost.
        word_ngrams: 2 = word bigrams (the PreSelect / DCLM setting).
        minn: shortest character n-gram of a word (fastText's subwords; 0 and ``maxn`` 0: none).
            Default 3-4: fastText splits on
            whitespace only, so without subwords ``{"name":`` (xLAM's JSON) and ``'name':``
            (ELMB's Python dicts) share nothing and the function-calling student ranks unseen
            ELMB records at AUC 0.67; with 3-4 subwords every task's student reaches AUC >= 0.9997
            and P@N >= 0.98 on the cross-source set (3-5 is no better and costs more; see
            docs/distill.md).
        maxn: longest character n-gram of a word (see ``minn``).
        min_count: drop words seen fewer times.
        bucket: n-gram hash buckets, the bulk of the model's size (0: sized to the training
            data). Sized by :func:`~retriever.distill.trainset.bucket_for`, at most 2,000,000, so
            a student of 30 rows is not a 500 MB file.
        loss: fastText's loss: ``softmax``, ``ova``, ``hs`` or ``ns``.
        thread: training threads; at least 11 are used, as fastText initialises its matrix per
            thread (see :data:`MIN_THREADS`).
        seed: fastText's seed and the split's seed.
        test_fraction: share of each source held out for the metrics.
        threshold: probability at which precision / recall / F1 are measured.
        refit: after measuring, retrain on every row and save that model. The metrics then
            describe a model trained on less data, and the manifest says so.
        max_chars: cut each training document at this many characters (``0``: whole document).
        training_set: the sources the student learns from: a variant name or a list of sources
            (comma-separated on the command line). The names are
            :data:`~retriever.distill.trainset.VARIANTS` and ``SOURCES``.
        weights: per source weight (replicated lines; see :mod:`retriever.distill.trainset`).
        balance: replicate the lighter class so both classes weigh the same (off: each row
            once, as the DCLM recipe trains).
        hard_negative_max: a rejected candidate is a hard negative only at or below this
            correlation (``None``: every candidate the confirmation labelled negative).
        max_auc_gap: warn when the student's held-out AUC is this far below the similarity
            stage's on the same rows.
        normalization: how texts become fastText lines (:func:`~retriever.distill.labels.
            fasttext_text`): ``newlines``, ``words`` (lowercase, punctuation split off) or
            ``both`` (the two on one line). Recorded in the manifest; the filter
            applies the same. On the cross-source set
            ``words`` takes the function-calling student from AUC 0.68 to 0.999 (xLAM JSON vs ELMB
            Python dicts) but the reasoning one from 0.9996 to 0.73 (docs/distill.md), so it is
            an option, not the default.
    """

    lr: float = 0.5
    epoch: int = 15
    dim: int = 32
    word_ngrams: int = 2
    minn: int = 3
    maxn: int = 4
    min_count: int = 1
    bucket: int = 0
    loss: str = "softmax"
    thread: int = MIN_THREADS
    seed: int = 0
    test_fraction: float = 0.2
    threshold: float = 0.5
    refit: bool = False
    max_chars: int = 0
    training_set: Any = DEFAULT_VARIANT
    weights: dict = field(default_factory=dict)
    balance: bool = False
    hard_negative_max: float | None = None
    max_auc_gap: float = 0.02
    normalization: str = "newlines"

    def __post_init__(self) -> None:
        checks = {
            "lr": self.lr > 0,
            "epoch": self.epoch >= 1,
            "dim": self.dim >= 1,
            "word_ngrams": self.word_ngrams >= 1,
            "minn": self.minn >= 0,
            "maxn": self.maxn == 0 if self.minn == 0 else self.maxn >= self.minn,
            "min_count": self.min_count >= 1,
            "bucket": self.bucket >= 0,
            "thread": self.thread >= 1,
            "test_fraction": 0.0 < self.test_fraction < 1.0,
            "threshold": 0.0 <= self.threshold <= 1.0,
            "max_chars": self.max_chars >= 0,
            "loss": self.loss in ("softmax", "ova", "hs", "ns"),
            "max_auc_gap": self.max_auc_gap >= 0,
            "normalization": self.normalization in NORMALIZATIONS,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(
                f"invalid distill option(s) {bad}: { ({k: getattr(self, k) for k in bad}) }; see "
                "`retriever distill --help` for the allowed ranges"
            )
        if isinstance(self.training_set, list):
            object.__setattr__(self, "training_set", tuple(self.training_set))
        self.student_set()  # raises ConfigError on an unknown source or weight

    def student_set(self) -> StudentSetConfig:
        """The training set's settings (:class:`~retriever.distill.trainset.StudentSetConfig`)."""
        return StudentSetConfig(
            sources=self.training_set,
            weights=dict(self.weights),
            balance=self.balance,
            hard_negative_max=self.hard_negative_max,
            seed=self.seed,
        )

    def fasttext_args(self, bucket: int | None = None) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "epoch": self.epoch,
            "dim": self.dim,
            "wordNgrams": self.word_ngrams,
            "minn": self.minn,
            "maxn": self.maxn,
            "minCount": self.min_count,
            "bucket": int(bucket or self.bucket or MAX_BUCKET),
            "loss": self.loss,
            "thread": max(self.thread, MIN_THREADS),
            "seed": self.seed,
            "verbose": 0,
        }


@dataclass
class DistillReport:
    """What :class:`FastTextDistiller` produced: paths, counts, held-out metrics and warnings."""

    task: str
    model_path: str
    manifest_path: str
    counts: dict[str, int]
    n_train: int
    n_test: int
    metrics: dict[str, Any]
    seconds: float
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def model_manifest_path(model_path: str | os.PathLike) -> Path:
    """The manifest beside a model: ``indexes/TASK/filter.bin`` -> ``indexes/TASK/filter.json``."""
    return Path(model_path).with_suffix(".json")


def student_set_path(model_path: str | os.PathLike) -> Path:
    """The training set beside a model: ``filter.bin`` -> ``filter.student_set.parquet``."""
    return Path(model_path).with_suffix(".student_set.parquet")


class StudentStage:
    """A stage that trains fastText students (through :mod:`retriever.distill.fit`).

    Args:
        config: hyperparameters, training set and split (:class:`DistillConfig`).
    """

    name = "distill"

    def __init__(self, config: DistillConfig | None = None):
        self.config = config or DistillConfig()


class FastTextDistiller(StudentStage):
    """Stage: labels + gold of one task -> a fastText model file, its training set and manifest.

    Args:
        config: hyperparameters, training set and split (:class:`DistillConfig`).
    """

    def run(
        self,
        labels: str | os.PathLike | Sequence[str | os.PathLike] | None,
        task: str,
        out: str | os.PathLike,
        indexes: Mapping[str, str | os.PathLike] | None = None,
    ) -> DistillReport:
        """Build the training set, train, evaluate on the held-out split, save everything.

        Args:
            labels: the confirm stage's labels (a parquet file or a folder of
                ``<task>.parquet``), or several (with ``retriever rate``'s); ``None``: none (the
                student learns from the gold alone).
            task: the task.
            out: the model path; its manifest, held-out predictions and training set go beside.
            indexes: task -> gold index folder (``indexes/<task>``), for the ``gold`` and
                ``other-gold`` sources and the similarity check; ``None``: labels only.

        Raises:
            InputError: the labels or indexes cannot be read.
            ConfigError: too few positive or negative rows for the task.
        """
        t0 = time.perf_counter()
        cfg = self.config
        data = load_labels(labels, task) if labels is not None else None
        gold = other = None
        if indexes:
            gold, other = load_gold_sets(task, {k: v for k, v in indexes.items()})
        if data is None and gold is None:
            raise ConfigError(f"task {task!r}: distill needs labels, gold indexes, or both")
        ss = build_student_set(task, data, gold, other, cfg.student_set())
        uncertain = _uncertain(data)
        return self.run_set(ss, out, uncertain, labels_source=_labels_source(labels), t0=t0)

    def run_set(
        self,
        ss: StudentSet,
        out: str | os.PathLike,
        uncertain: LabelSet | None = None,
        labels_source: str | None = None,
        t0: float | None = None,
    ) -> DistillReport:
        """Train on a built :class:`StudentSet` (held-out split by source) and save the model."""
        t0 = time.perf_counter() if t0 is None else t0
        cfg = self.config
        data = ss.rows
        task = data.task
        train_idx, test_idx = split_by_source(data, cfg.test_fraction, cfg.seed)
        out = Path(out)

        def train(tmp: Path, every: bool) -> tuple[_FastText, int]:
            return self.fit(ss, np.concatenate([train_idx, test_idx]) if every else train_idx, tmp)

        def measure(model: _FastText, tmp: Path) -> tuple[np.ndarray, dict, list[str]]:
            y, texts = fit.heldout_rows(data, test_idx)
            p = predict_positive(model, texts, cfg.max_chars, cfg.normalization)
            more = self._agreement(data, model, test_idx, y, p, uncertain)
            return (p, *fit.heldout_metrics(cfg, data, test_idx, p, more))

        (p_test, metrics, warnings), bucket = fit.fit_and_save(out, cfg.refit, train, measure)
        counts = data.counts() | {"empty_skipped": 0}
        manifest = {
            "kind": "fasttext-filter",
            "version": MANIFEST_VERSION,
            "task": task,
            "positive_label": LABEL_PREFIX + POSITIVE,
            "labels": {"source": labels_source, "files": data.sources},
            "training_set": ss.summary | {"file": student_set_path(out).name},
            "data_fingerprint": data.fingerprint(),
            "counts": counts,
            "n_train": int(len(train_idx)),
            "n_test": int(len(test_idx)),
            "split": "stratified by source (each source holds out its share)",
            "trained_on": "train+test (refit)" if cfg.refit else "train split",
            "config": asdict(cfg) | {"training_set": list(cfg.student_set().sources)},
            "bucket": bucket,
            "text_normalization": cfg.normalization,
            "metrics": metrics,
            "warnings": warnings,
            "fasttext": _version("fasttext-numpy2-wheel"),
            **fit.model_fields(out),
        }
        mpath = model_manifest_path(out)
        write_student_set(student_set_path(out), ss)
        manifest["heldout_file"] = self._write_heldout(mpath, data, test_idx, p_test).name
        write_json_atomic(mpath, manifest)
        return DistillReport(
            task=task,
            model_path=str(out),
            manifest_path=str(mpath),
            counts=counts,
            n_train=len(train_idx),
            n_test=len(test_idx),
            metrics=metrics,
            seconds=time.perf_counter() - t0,
            manifest=manifest,
            warnings=list(warnings),
        )

    def _write_heldout(
        self, mpath: Path, data: LabelSet, test_idx: np.ndarray, p: np.ndarray
    ) -> Path:
        """Held-out predictions beside the manifest (``filter.heldout.parquet``: id, y, p, source,
        similarity), for precision-recall curves (``retriever report`` reads them)."""
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        path = mpath.with_suffix(".heldout.parquet")
        src = data.row_source or [""] * len(data)
        table = pa.table(
            {
                "id": [data.ids[i] for i in test_idx],
                "y": [data.labels[i] == POSITIVE for i in test_idx],
                "p": np.asarray(p, dtype=np.float64),
                "source": [src[i] for i in test_idx],
                "similarity": data.similarity[test_idx].astype(np.float64),
            }
        )
        with AtomicWriter(path) as tmp:
            pq.write_table(table, tmp)
        return path

    def fit(self, ss: StudentSet, idx: np.ndarray, tmp: Path) -> tuple[_FastText, int]:
        """Train fastText on rows ``idx`` of ``ss`` (each written ``copies`` times, shuffled).

        Returns:
            ``(model, bucket)``: the model and the hash buckets it was trained with.
        """
        data = ss.rows
        if not ss.copies[idx].sum():
            raise ConfigError(f"task {data.task!r}: every training row has weight 0")
        texts = [data.texts[i] for i in idx]
        labels = [[data.labels[i]] for i in idx]
        return fit.train_fasttext(self.config, texts, labels, ss.copies[idx], tmp / "train.txt")

    def _agreement(
        self,
        data: LabelSet,
        model: _FastText,
        test_idx: np.ndarray,
        y_test: np.ndarray,
        p_test: np.ndarray,
        uncertain: LabelSet | None,
    ) -> dict[str, Any]:
        """Agreement with the teacher, mean probabilities and the base rate."""
        out: dict[str, Any] = {}
        # rank agreement: held-out rows plus the uncertain rows (never trained on)
        teacher = combined_score(data.similarity, data.correlation)[test_idx]
        student = p_test
        if uncertain is not None and len(uncertain):
            p_unc = predict_positive(
                model, uncertain.texts, self.config.max_chars, self.config.normalization
            )
            teacher = np.concatenate(
                [teacher, combined_score(uncertain.similarity, uncertain.correlation)]
            )
            student = np.concatenate([p_test, p_unc])
        out["spearman_combined"] = spearman(student, teacher)
        out["spearman_n"] = int(np.isfinite(teacher).sum())
        out["spearman_rows"] = "held-out positives/negatives + uncertain rows"
        out["teacher_score"] = "mean percentile rank of similarity and correlation (present ones)"
        out["mean_p_positive"] = float(p_test[y_test].mean())
        out["mean_p_negative"] = float(p_test[~y_test].mean())
        n_neg = int(sum(1 for lab in data.labels if lab == NEGATIVE))
        out["base_rate_positive"] = 1.0 - n_neg / max(1, len(data))
        return out


def _uncertain(data: LabelSet | None) -> LabelSet | None:
    if data is None:
        return None
    idx = [i for i, lab in enumerate(data.labels) if lab == UNCERTAIN]
    if not idx:
        return None
    return LabelSet(
        task=data.task,
        ids=[data.ids[i] for i in idx],
        texts=[data.texts[i] for i in idx],
        labels=[UNCERTAIN] * len(idx),
        similarity=data.similarity[idx],
        correlation=data.correlation[idx],
        sources=[],
    )


def predict_positive(
    model: _FastText, texts: list[str], max_chars: int = 0, normalization: str = "newlines"
) -> np.ndarray:
    """P(positive) of each text under ``model`` (trained with ``normalization``).

    Returns ``[len(texts)]`` float64.
    """
    lines = [fasttext_text(t, normalization, max_chars) for t in texts]
    return fit.predict_labels(model, lines, [LABEL_PREFIX + POSITIVE])[:, 0]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def _labels_source(labels) -> str | None:
    if not labels:
        return None
    if isinstance(labels, (str, os.PathLike)):
        return str(labels)
    return ", ".join(str(p) for p in labels)
