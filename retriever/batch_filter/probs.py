"""The filter's stored probabilities: their writer and their reader, side by side.

Per shard, ``DIR/scores/<shard_name>.parquet`` holds every scored document, kept or not:
``id`` (str), ``row`` (int64), ``n_chars`` (int64) and ``prob_<task>`` (float16, two bytes a
value; :func:`~retriever.thresholds.to_float16_keeping`, so ``stored >= threshold`` is exactly the
run's decision). The filter's shard job writes it (:class:`ProbWriter`); re-thresholding
(:mod:`retriever.batch_filter.rethreshold`) reads it (:func:`score_files`, :func:`read_probs`,
:func:`prob_matrix`, :func:`read_filter_scores`), never the pools.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.corpus import AtomicWriter, shard_name
from retriever.data import Doc
from retriever.errors import InputError
from retriever.io import read_json
from retriever.names import PROB, score_name
from retriever.thresholds import to_float16_keeping

SCORES_DIR = "scores"
MANIFEST = "manifest.json"


def scores_path(filter_dir: str | os.PathLike, shard: str) -> Path:
    """Where the stored probabilities of ``shard`` live in a filter output folder."""
    return Path(filter_dir) / SCORES_DIR / f"{shard_name(shard)}.parquet"


class ProbWriter:
    """One shard's probabilities, gathered batch by batch and written at :meth:`commit` (one
    parquet table, through a temporary file).

    Args:
        path: the shard's scores file (:func:`scores_path`).
        tasks: the tasks, in the probabilities' column order.
        thresholds: ``[n_tasks]`` the run's thresholds: the float16 values keep each decision.
    """

    def __init__(self, path: str | os.PathLike, tasks: Sequence[str], thresholds: np.ndarray):
        self.path = Path(path)
        self.tasks = list(tasks)
        self.thresholds = thresholds
        self._parts: list[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]] = []

    def add(self, docs: list[Doc], probs: np.ndarray, n_chars: np.ndarray) -> None:
        """A batch: ``docs`` with their ``probs`` (``[n_docs, n_tasks]``) and ``n_chars``
        (``[n_docs]``)."""
        rows = np.array([d.metadata.get("row", -1) for d in docs], dtype=np.int64)
        half = to_float16_keeping(probs, self.thresholds)  # [n_docs, n_tasks] float16
        self._parts.append(([d.id for d in docs], rows, n_chars, half))

    def commit(self) -> None:
        """Write everything added to :attr:`path`."""
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        parts = self._parts
        cols = {
            "id": pa.array([i for p in parts for i in p[0]], pa.string()),
            "row": pa.array(np.concatenate([p[1] for p in parts]) if parts else [], pa.int64()),
            "n_chars": pa.array(np.concatenate([p[2] for p in parts]) if parts else [], pa.int64()),
        }
        probs = (
            np.concatenate([p[3] for p in parts])
            if parts
            else np.zeros((0, len(self.tasks)), dtype=np.float16)
        )  # [n_docs, n_tasks] float16: 2 bytes a probability
        for j, t in enumerate(self.tasks):
            cols[score_name(PROB, t)] = pa.array(probs[:, j], pa.float16())
        with AtomicWriter(self.path) as tmp:
            pq.write_table(pa.table(cols), tmp)
        self._parts = []


def score_files(filter_dir: str | os.PathLike) -> tuple[dict, list[tuple[str, Path]]]:
    """A filter run's settings (its manifest, read once) and ``(shard, scores file)`` of every
    shard, in the run's shard order.

    Raises:
        InputError: not a filter output folder, or a shard without stored probabilities.
    """
    out = Path(filter_dir)
    man = out / MANIFEST
    if not man.is_file():
        raise InputError(f"{out} is not a filter output folder (no manifest.json)")
    settings = read_json(man)["settings"]
    files = [(s, scores_path(out, s)) for s in settings["shards"]]
    missing = [p.stem for _, p in files if not p.is_file()]
    if missing:
        raise InputError(
            f"{len(missing)} shard(s) of {out} have no stored probabilities ({missing[:3]}); "
            "the run was made without write_scores or is not finished: rerun the filter"
        )
    return settings, files


def read_probs(path: str | os.PathLike, tasks: Sequence[str], columns: Sequence[str]) -> Any:
    """The ``columns`` and the ``prob_<task>`` columns of one shard's scores file, only those
    (a ``pyarrow.Table``)."""
    pq = require("pyarrow.parquet")
    return pq.read_table(path, columns=list(columns) + [score_name(PROB, t) for t in tasks])


def prob_matrix(table: Any, tasks: Sequence[str]) -> np.ndarray:
    """``[n, n_tasks]`` float32 of a scores table's float16 ``prob_<task>`` columns."""
    return np.stack(
        [table.column(score_name(PROB, x)).to_numpy().astype(np.float32) for x in tasks], axis=1
    ).reshape(table.num_rows, len(tasks))


def read_filter_scores(
    filter_dir: str | os.PathLike, columns: Sequence[str] = ("id", "shard", "row", "n_chars")
) -> tuple[list[str], dict[str, np.ndarray]]:
    """``(tasks, columns)`` of every shard's stored probabilities, in shard order: the
    ``columns`` asked for (of ``id`` (object), ``shard``, ``row``, ``n_chars``; only those are
    read) and ``prob_<task>`` (float32)."""
    settings, files = score_files(filter_dir)
    tasks = list(settings["tasks"])
    stored = [c for c in columns if c != "shard"]  # the shard is not a stored column
    parts: dict[str, list] = {k: [] for k in columns}
    probs: list[np.ndarray] = []
    for shard, path in files:
        t = read_probs(path, tasks, stored)
        for k in columns:
            if k == "id":
                parts[k].append(np.asarray(t.column("id").to_pylist(), dtype=object))
            elif k == "shard":
                parts[k].append(np.full(t.num_rows, shard, dtype=object))
            else:
                parts[k].append(t.column(k).to_numpy())
        probs.append(prob_matrix(t, tasks))
    cols = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    p_all = np.concatenate(probs) if probs else np.zeros((0, len(tasks)), np.float32)
    for j, x in enumerate(tasks):
        cols[score_name(PROB, x)] = p_all[:, j]
    return tasks, cols
