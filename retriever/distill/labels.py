"""Confirmed labels -> fastText training lines (the ``Labels`` contract of docs/contracts.md).

``LABELS`` is one parquet file or a folder of ``<task>.parquet`` files with the columns ``id``,
``text``, ``task``, ``similarity``, ``correlation``, ``label`` (``positive`` / ``negative`` /
``uncertain``) and ``reason``, and (since the student's training set keeps every signal) ``source``:
``confirmed`` / ``hard-negative`` / ``random`` / ``candidate`` (uncertain) as the confirm stage
writes them, ``gold`` / ``other-gold`` in the student's own set (see
:mod:`retriever.distill.trainset`). Files without ``source`` are read too: it is inferred from the
label and the reason. ``uncertain`` rows are never trained on, but they are ranked by the student to
measure how well it agrees with the teacher's combined score.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retriever._deps import require
from retriever.errors import ConfigError, InputError
from retriever.manifest import file_fingerprint

POSITIVE = "positive"
NEGATIVE = "negative"
UNCERTAIN = "uncertain"
LABEL_VALUES = (POSITIVE, NEGATIVE, UNCERTAIN)
REQUIRED_COLUMNS = ("id", "text", "task", "label")
# one label row: id, text, label, similarity, correlation, source, reason
Row = tuple[str, str, str, float, float, str, str]


_PUNCT = re.compile(r"([^\w\s])")
NORMALIZATIONS = ("newlines", "words", "both")


def fasttext_text(text: str, normalization: str = "newlines", max_chars: int = 0) -> str:
    """One line for fastText (of the text's first ``max_chars`` characters; ``0``: all of it).

    ``newlines`` (the default, and what models without a recorded normalization were trained
    with): newlines become spaces, every other character is left for fastText's tokenizer, which
    splits on whitespace only (datatrove's ``FastTextClassifierFilter`` with
    ``newline_replacement=" "`` does the same).

    ``words`` (``retriever distill --normalization words``): lowercased, and every punctuation
    mark made a token of its own. fastText's whitespace split otherwise glues punctuation to words,
    so ``{"name":`` (xLAM's JSON) and ``'name':`` (ELMB's Python dicts) are different tokens and a
    student trained on one format cannot recognise the other: on the cross-source held-out set
    the function-calling student went from AUC 0.68 to 0.999 with this normalization alone, but
    the reasoning one fell from 0.9996 to 0.73 (docs/distill.md), so it is not the default.

    ``both`` (``--normalization both``): the ``newlines`` text followed by the ``words`` text on
    one line, so the student sees both tokenizations (measured in docs/distill.md; the line is
    about twice as long, so filtering costs more).

    Training and filtering both go through this function, with the normalization the model's
    manifest records (:func:`model_normalization`), so a student sees documents the same way at
    both ends.
    """
    if max_chars:
        text = text[:max_chars]
    if normalization == "words":
        return _words(text)
    if normalization == "both":
        return text.replace("\n", " ") + " " + _words(text)
    return text.replace("\n", " ")


def _words(text: str) -> str:
    return _PUNCT.sub(r" \1 ", text.lower()).replace("\n", " ")


def model_normalization(model_path: str | os.PathLike) -> str:
    """The normalization a model was trained with: its manifest's ``text_normalization``.

    Models without a manifest, or with an older free-text entry, were trained with ``newlines``.
    """
    man = Path(model_path).with_suffix(".json")
    if man.is_file():
        import json

        try:
            v = json.loads(man.read_text()).get("text_normalization")
        except (OSError, ValueError, AttributeError):
            v = None
        if v in NORMALIZATIONS:
            return v
    return "newlines"


@dataclass
class LabelSet:
    """The labelled documents of one task, as parallel lists.

    Attributes:
        task: task name.
        ids, texts, labels: one entry per row (labels in :data:`LABEL_VALUES`).
        similarity, correlation: teacher scores, NaN where absent. ``[n_rows]`` float64.
        sources: ``[path, fingerprint]`` of every labels file read.
        row_source: per row, where it came from (``gold``, ``confirmed``, ``random``,
            ``other-gold``, ``hard-negative``, ``candidate``); ``None`` when unknown.
        reasons: per row, what decided its label (``None`` when unknown).
    """

    task: str
    ids: list[str]
    texts: list[str]
    labels: list[str]
    similarity: np.ndarray
    correlation: np.ndarray
    sources: list[list[str]] = field(default_factory=list)
    row_source: list[str] | None = None
    reasons: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    def counts(self) -> dict[str, int]:
        return {v: sum(1 for x in self.labels if x == v) for v in LABEL_VALUES}

    def fingerprint(self) -> str:
        """Hash of the rows (id, label, text) in order: changes when any training input changes."""
        h = hashlib.sha256()
        for i, lab, t in zip(self.ids, self.labels, self.texts, strict=True):
            h.update(i.encode("utf-8", "replace"))
            h.update(b"\x00" + lab.encode() + b"\x00")
            h.update(hashlib.sha1(t.encode("utf-8", "replace")).digest())
        return h.hexdigest()[:16]

    @classmethod
    def from_rows(cls, task: str, rows: Sequence[Row], sources: list[list[str]]) -> LabelSet:
        """The set of ``task`` from rows ``(id, text, label, similarity, correlation, source,
        reason)`` read from the files ``sources``."""
        cols = [list(c) for c in zip(*rows, strict=True)] if rows else [[] for _ in range(7)]
        ids, texts, labels, sims, corrs, row_source, reasons = cols
        return cls(
            task,
            ids,
            texts,
            labels,
            np.asarray(sims, dtype=np.float64),
            np.asarray(corrs, dtype=np.float64),
            sources,
            row_source,
            reasons,
        )


def label_files(path: str | os.PathLike, task: str) -> list[Path]:
    """The parquet files to read for ``task``: the file itself, or ``<folder>/<task>.parquet``.

    A folder without ``<task>.parquet`` falls back to every parquet file in it (rows are then
    selected by their ``task`` column).

    Raises:
        InputError: the path does not exist or holds no parquet file.
    """
    p = Path(path)
    if p.is_file():
        if not p.name.endswith(".parquet"):
            raise InputError(
                f"labels file {p} is not parquet; the confirm stage writes labels/<task>.parquet"
            )
        return [p]
    if p.is_dir():
        own = p / f"{task}.parquet"
        if own.is_file():
            return [own]
        found = sorted(p.glob("*.parquet"))
        if not found:
            raise InputError(
                f"labels folder {p} holds no <task>.parquet (run `retriever confirm` first)"
            )
        return found
    raise InputError(
        f"labels {p} does not exist: pass a labels parquet file or a folder of <task>.parquet"
    )


def load_labels(path: str | os.PathLike | Sequence[str | os.PathLike], task: str) -> LabelSet:
    """Read the rows of ``task`` from the labels at ``path`` (or at several paths: the confirm
    stage's labels and ``retriever rate``'s, read one after the other).

    Raises:
        InputError: a file lacks a required column or holds an unknown label value.
        ConfigError: no row of the files belongs to ``task``.
    """
    pq = require("pyarrow.parquet")
    rows: list[Row] = []
    sources: list[list[str]] = []
    tasks_seen: set[str] = set()
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    for f in [f for p in paths for f in label_files(p, task)]:
        table = pq.read_table(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
        if missing:
            raise InputError(
                f"labels file {f} lacks the column(s) {missing} (has {table.column_names}); "
                "see docs/contracts.md, section Labels"
            )
        sources.append([str(f), file_fingerprint(f)])
        col = {c: table.column(c).to_pylist() for c in REQUIRED_COLUMNS}
        sim = _float_column(table, "similarity")
        cor = _float_column(table, "correlation")
        n = table.num_rows
        why = table.column("reason").to_pylist() if "reason" in table.column_names else [""] * n
        src = table.column("source").to_pylist() if "source" in table.column_names else [None] * n
        for k in range(table.num_rows):
            t = col["task"][k]
            tasks_seen.add(str(t))
            if t != task:
                continue
            lab = col["label"][k]
            if lab not in LABEL_VALUES:
                raise InputError(
                    f"{f} row {k}: label {lab!r} is not one of {LABEL_VALUES}; fix the labels file"
                )
            text = col["text"][k]
            if not isinstance(text, str) or not text.strip():
                # an empty document teaches nothing; skipping it is recorded in the counts below
                lab = "empty"
            reason = str(why[k] or "")
            source = str(src[k]) if src[k] else _infer_source(lab, reason)
            text = text if isinstance(text, str) else ""
            rows.append((str(col["id"][k]), text, lab, sim[k], cor[k], source, reason))
    if not rows:
        raise ConfigError(
            f"no labelled row of task {task!r} in {', '.join(map(str, paths))} "
            f"(tasks present: {sorted(tasks_seen)})"
        )
    return LabelSet.from_rows(task, rows, sources)


def _infer_source(label: str, reason: str) -> str:
    from retriever.distill.trainset import infer_source

    return infer_source(label, reason)


def _float_column(table, name: str) -> list[float]:
    if name not in table.column_names:
        return [float("nan")] * table.num_rows
    return [float("nan") if v is None else float(v) for v in table.column(name).to_pylist()]


def label_schema(extra: Sequence[tuple[str, object]] = ()):
    """The contract's seven columns (``id`` ... ``reason``) as a pyarrow schema, then ``extra``.

    ``extra`` is ``(name, pyarrow type)`` pairs, e.g. ``source`` or a writer's own columns.
    """
    pa = require("pyarrow")
    return pa.schema(
        [
            ("id", pa.string()),
            ("text", pa.string()),
            ("task", pa.string()),
            ("similarity", pa.float64()),
            ("correlation", pa.float64()),
            ("label", pa.string()),
            ("reason", pa.string()),
            *extra,
        ]
    )


def write_labels(path: str | os.PathLike, rows: list[dict]) -> Path:
    """Write label rows (dicts with the contract's columns) as parquet, atomically.

    Used by tests and benchmarks to stand in for the confirm stage's output.
    """
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    from retriever.corpus import AtomicWriter

    schema = label_schema([("source", pa.string())] if any("source" in r for r in rows) else [])
    norm = [
        {
            "id": str(r["id"]),
            "text": r["text"],
            "task": r["task"],
            "similarity": r.get("similarity", float("nan")),
            "correlation": r.get("correlation", float("nan")),
            "label": r["label"],
            "reason": r.get("reason", ""),
            **({"source": r.get("source")} if any("source" in x for x in rows) else {}),
        }
        for r in rows
    ]
    p = Path(path)
    with AtomicWriter(p) as tmp:
        pq.write_table(pa.Table.from_pylist(norm, schema=schema), tmp)
    return p


def split_indices(
    labels: list[str], test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Stratified, seeded train / held-out split of the positive and negative rows.

    Returns:
        ``(train_idx, test_idx)``: int64 row indices into ``labels``; each class puts
        ``round(n_class * test_fraction)`` rows (at least one) into the held-out part.

    Raises:
        ConfigError: fewer than 2 rows of a class, or a fraction outside (0, 1).
    """
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must be in (0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    train, test = [], []
    for cls in (POSITIVE, NEGATIVE):
        idx = np.array([i for i, lab in enumerate(labels) if lab == cls], dtype=np.int64)
        if len(idx) < 2:
            raise ConfigError(
                f"need at least 2 {cls} rows to train and evaluate, got {len(idx)}; "
                "label more documents (retriever confirm) or loosen its thresholds"
            )
        rng.shuffle(idx)
        n_test = min(len(idx) - 1, max(1, round(len(idx) * test_fraction)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))
