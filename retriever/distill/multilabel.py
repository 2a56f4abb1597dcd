"""One fastText student for every task: one tokenization and one n-gram hashing per document.

Filtering T tasks with T binary students reads, tokenizes and hashes every document T times.
:class:`MultiLabelDistiller` trains one model with ``loss = "ova"`` (one-vs-all: an independent
sigmoid per label) on the union of the tasks' label sets: a document's line carries
``__label__<task>`` for every task that labelled it positive, and ``__label__none`` when it is
positive for none (so negatives are trained on too). ``P(__label__<task>)`` then plays the role of
each per-task student's ``P(positive)``; per-task thresholds and pools stay as they were
(:class:`~retriever.batch_filter.scorer.FastTextScorer` scores all tasks sharing one model file in
one call).

Trade-off, said plainly: a document in task A's label set but absent from task B's is a negative
for B in the multi-label model (B's own student never saw it). The held-out check below measures
what that costs: each task's held-out rows (the same stratified split as the per-task student's)
are never trained on by the multi-label model, and with ``compare=True`` per-task students are
trained on exactly the same training rows, so the ROC-AUC gap is measured on the same labels.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retriever.corpus import write_json_atomic
from retriever.distill import fit
from retriever.distill.fit import LABEL_PREFIX
from retriever.distill.labels import NEGATIVE, POSITIVE, LabelSet, fasttext_text, load_labels
from retriever.distill.metrics import classification_metrics
from retriever.distill.train import StudentStage, model_manifest_path, predict_positive
from retriever.distill.trainset import (
    StudentSet,
    build_student_set,
    check_split_classes,
    held_out_count,
    load_gold_sets,
    text_key,
)
from retriever.errors import ConfigError

if TYPE_CHECKING:
    from fasttext.FastText import _FastText

NONE_LABEL = "none"
KIND = "fasttext-multilabel"


def task_label(task: str) -> str:
    """The fastText label of ``task`` in a multi-label model (``__label__<task>``)."""
    return LABEL_PREFIX + task


@dataclass
class MultiLabelReport:
    """What :class:`MultiLabelDistiller` produced: the model, its manifest, per-task metrics."""

    tasks: list[str]
    model_path: str
    manifest_path: str
    n_train: int
    metrics: dict[str, dict[str, Any]]
    per_task: dict[str, dict[str, Any]] = field(default_factory=dict)
    heldout: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    seconds: float = 0.0
    manifest: dict[str, Any] = field(repr=False, default_factory=dict)
    warnings: dict[str, list[str]] = field(default_factory=dict)

    def auc_gap(self) -> dict[str, float]:
        """Per task: multi-label ROC-AUC minus per-task ROC-AUC (needs ``compare=True``)."""
        return {t: self.metrics[t]["roc_auc"] - self.per_task[t]["roc_auc"] for t in self.per_task}


def predict_tasks(
    model: _FastText,
    texts: list[str],
    tasks: list[str],
    max_chars: int = 0,
    normalization: str = "words",
) -> np.ndarray:
    """``P(__label__<task>)`` of each text, one fastText call for all tasks. ``[n_texts, n_tasks]``.

    ``normalization``: the one the model was trained with (its manifest's ``text_normalization``).
    """
    lines = [fasttext_text(t, normalization, max_chars) for t in texts]
    return fit.predict_labels(model, lines, [task_label(t) for t in tasks])


class MultiLabelDistiller(StudentStage):
    """Stage: the label sets of several tasks -> one one-vs-all fastText model and its manifest.

    Args:
        config: hyperparameters and split, as for the per-task student (``loss`` is forced to
            ``ova``: softmax would make the tasks compete for one probability mass).
    """

    name = "distill-multilabel"

    def run(
        self,
        labels: str | os.PathLike | Sequence[str | os.PathLike] | None,
        tasks: list[str],
        out: str | os.PathLike,
        compare: bool = False,
        indexes: dict[str, str | os.PathLike] | None = None,
    ) -> MultiLabelReport:
        """Train on every task's training rows, measure each task on its held-out rows, save.

        Each task's rows are the per-task student's (:func:`~retriever.distill.trainset.
        build_student_set`: gold anchors, confirmed candidates, random and other-gold negatives,
        per the config's ``training_set``), split the same way (by source); a document's line
        carries the label of every task whose positive it is. So the multi-label student learns
        from the same signals as the per-task ones, and is checked against the similarity stage
        the same way (:func:`~retriever.distill.checks.student_checks`, per task).

        Args:
            labels: labels file or folder (``<task>.parquet``), as for ``retriever distill``;
                ``None``: none (the students learn from the gold indexes alone).
            tasks: the tasks; each becomes a label.
            out: model path (``filters/multilabel/filter.bin``); manifest beside it.
            compare: also train one per-task student per task on the same training rows and
                report its held-out metrics (``per_task``): the quality check of the one-pass
                design.
            indexes: task -> gold index folder, for the ``gold`` and ``other-gold`` sources and
                the similarity check (``None``: labels only).

        Raises:
            ConfigError: fewer than one task, a task named ``none``, too few labelled rows.
        """
        t0 = time.perf_counter()
        cfg = self.config
        if not tasks or len(set(tasks)) != len(tasks):
            raise ConfigError(f"a multi-label student needs distinct tasks, got {tasks}")
        if NONE_LABEL in tasks:
            raise ConfigError(
                f"a task may not be called {NONE_LABEL!r} (the multi-label model's negative label)"
            )
        if labels is None and not indexes:
            raise ConfigError("a multi-label student needs labels, gold indexes, or both")
        sets: dict[str, StudentSet] = {}
        for t in tasks:
            data = load_labels(labels, t) if labels is not None else None
            gold = other = None
            if indexes:
                gold, other = load_gold_sets(t, indexes)
            sets[t] = build_student_set(t, data, gold, other, cfg.student_set())
        # one split of the distinct documents for every task: a document is held out for all
        # tasks or for none (split per task, a gold exemplar present in all four sets, as gold
        # or other-gold, was held out somewhere 68% of the time, and never trained on)
        held = union_split(sets, cfg.test_fraction, cfg.seed)
        splits = {t: _split_of(ss.rows, held) for t, ss in sets.items()}
        lines = training_lines(sets, {t: splits[t][0] for t in tasks}, held)
        saved = lines  # the saved model's lines: with refit, every row of every task
        if cfg.refit:
            saved = training_lines(sets, {t: np.concatenate(splits[t]) for t in tasks}, set())
        out = Path(out)
        metrics: dict[str, dict[str, Any]] = {}
        per_task: dict[str, dict[str, Any]] = {}
        heldout: dict[str, dict[str, np.ndarray]] = {}  # per task: y, p (multi), p_per_task
        warnings: dict[str, list[str]] = {}

        def train(tmp: Path, every: bool) -> tuple[_FastText, int]:
            if every:
                return self.fit_lines(saved, tmp / "refit.txt")
            return self.fit_lines(lines, tmp / "train.txt")

        def measure(model: _FastText, tmp: Path) -> None:
            for t in tasks:
                rows, test_idx = sets[t].rows, splits[t][1]
                y, texts = fit.heldout_rows(rows, test_idx)
                p = predict_tasks(model, texts, [t], cfg.max_chars, cfg.normalization)[:, 0]
                metrics[t], warnings[t] = fit.heldout_metrics(cfg, rows, test_idx, p)
                heldout[t] = {"y": y, "p": p}
            if compare:
                for t in tasks:
                    one = [
                        (text, ([POSITIVE] if t in labs else [NEGATIVE]), seen, k)
                        for text, labs, seen, k in lines
                        if t in seen
                    ]
                    m, _ = self.fit_lines(one, tmp / f"train-{t}.txt", loss=cfg.loss)
                    y, texts = fit.heldout_rows(sets[t].rows, splits[t][1])
                    p = predict_positive(m, texts, cfg.max_chars, cfg.normalization)
                    per_task[t] = classification_metrics(y, p, cfg.threshold)
                    heldout[t]["p_per_task"] = p

        _, bucket = fit.fit_and_save(out, cfg.refit, train, measure, prefix=".distill-ml-")
        manifest = {
            "kind": KIND,
            "tasks": list(tasks),
            "labels_of_tasks": {t: task_label(t) for t in tasks},
            "none_label": task_label(NONE_LABEL),
            "labels": {
                "source": None if labels is None else str(labels),
                "files": {t: ss.rows.sources for t, ss in sets.items()},
            },
            "training_set": {t: ss.summary for t, ss in sets.items()},
            "data_fingerprint": {t: ss.rows.fingerprint() for t, ss in sets.items()},
            "n_train_lines": len(saved),
            "n_heldout": {t: int(len(splits[t][1])) for t in tasks},
            "trained_on": "train+test (refit)"
            if cfg.refit
            else "train split (held-out rows of every task excluded)",
            "config": {**asdict(cfg), "loss": "ova"},
            "bucket": bucket,
            "text_normalization": cfg.normalization,  # the filter reads it (model_normalization)
            "metrics": metrics,
            "warnings": warnings,
            # held-out predictions per task, for the report's precision-recall curves
            "heldout": {
                t: {"y": [bool(v) for v in h["y"]], "p": [round(float(v), 6) for v in h["p"]]}
                for t, h in heldout.items()
            },
            **({"per_task_metrics": per_task} if per_task else {}),
            **fit.model_fields(out),
        }
        mpath = model_manifest_path(out)
        write_json_atomic(mpath, manifest)
        return MultiLabelReport(
            list(tasks),
            str(out),
            str(mpath),
            len(saved),
            metrics,
            per_task,
            heldout,
            time.perf_counter() - t0,
            manifest,
            warnings,
        )

    def fit_lines(self, lines: list[tuple], path: Path, loss: str = "ova") -> tuple[_FastText, int]:
        """Train on :func:`training_lines` ``(text, labels, tasks, copies)`` (each written
        ``copies`` times, shuffled) through the file ``path``; ``(model, bucket)``."""
        texts, labels = [ln[0] for ln in lines], [ln[1] for ln in lines]
        return fit.train_fasttext(self.config, texts, labels, [ln[3] for ln in lines], path, loss)


# which source stands for a document seen under several (its stratum in the split)
_SOURCE_RANK = {s: r for r, s in enumerate(("gold", "confirmed", "rating", "hard-negative"))}


def union_split(sets: dict[str, StudentSet], test_fraction: float, seed: int) -> set[str]:
    """Text keys of the held-out documents, one split over the union of every task's rows.

    Stratified like :func:`~retriever.distill.trainset.split_by_source`: a document's stratum is
    its strongest source (gold, then confirmed, rating, hard-negative, then the rest by name) and
    the set of tasks it is positive for; each stratum holds out ``round(n * test_fraction)`` of
    its documents (at least one of two or more), seeded.
    """
    info: dict[str, tuple[tuple[int, str], frozenset[str]]] = {}
    for t, ss in sets.items():
        data = ss.rows
        src = data.row_source or [""] * len(data)
        for text, s, lab in zip(data.texts, src, data.labels, strict=True):
            if lab not in (POSITIVE, NEGATIVE):
                continue
            k = text_key(text)
            rank, pos = info.get(k, ((99, "~"), frozenset()))
            rank = min(rank, (_SOURCE_RANK.get(s, 50), s))
            info[k] = (rank, pos | {t} if lab == POSITIVE else pos)
    strata: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for k, (rank, pos) in info.items():
        strata.setdefault((rank[1], tuple(sorted(pos))), []).append(k)
    rng = np.random.default_rng(seed)
    held: set[str] = set()
    for key in sorted(strata):
        keys = sorted(strata[key])
        order = rng.permutation(len(keys))
        held.update(keys[j] for j in order[: held_out_count(len(keys), test_fraction)])
    return held


def _split_of(rows: LabelSet, held: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)`` row indices of one task's rows under the union split."""
    keys = [text_key(x) for x in rows.texts]
    test = np.array([i for i, k in enumerate(keys) if k in held], dtype=np.int64)
    train = np.array([i for i, k in enumerate(keys) if k not in held], dtype=np.int64)
    check_split_classes(rows, train, test, "multi-label split", "distinct documents")
    return train, test


def training_lines(
    sets: dict[str, StudentSet], rows: dict[str, np.ndarray], exclude: set[str]
) -> list[tuple[str, list[str], set[str], int]]:
    """One line per distinct text: ``(text, labels, tasks that have the row, copies)``.

    ``labels`` are the tasks whose positive it is, or ``[none]``; documents are matched across
    tasks by their whitespace-normalised text (:func:`~retriever.distill.trainset.text_key`), so
    a gold exemplar of one task that is another task's ``other-gold`` negative is one line.
    ``copies`` is the largest replication any task gave the row. Texts in ``exclude`` (keys of
    rows held out somewhere) are left out.
    """
    by_key: dict[str, tuple[str, list[str], set[str], list[int]]] = {}
    for t, ss in sets.items():
        data = ss.rows
        for i in rows[t]:
            lab = data.labels[i]
            if lab not in (POSITIVE, NEGATIVE) or int(ss.copies[i]) <= 0:
                continue
            key = text_key(data.texts[i])
            if key in exclude:
                continue
            text, pos, seen, k = by_key.setdefault(key, (data.texts[i], [], set(), [0]))
            seen.add(t)
            k[0] = max(k[0], int(ss.copies[i]))
            if lab == POSITIVE and t not in pos:
                pos.append(t)
    return [(text, pos or [NONE_LABEL], seen, k[0]) for text, pos, seen, k in by_key.values()]
