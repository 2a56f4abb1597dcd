"""Re-thresholding a finished filter run from its stored probabilities: no model, no scoring.

The filter writes every scored document's probabilities to ``DIR/scores/<shard_name>.parquet``
(float16; written and read by :mod:`retriever.batch_filter.probs`). :func:`rethreshold` reads only
those columns and says, per task, what a new threshold (or top fraction of documents / characters)
keeps: documents, characters, the threshold. :func:`write_rethresholded` then writes the new pools
by reading the corpus shards once (text only; the kept ids are known), so a new threshold costs a
read of the scores and, to get the pools, one read of the corpus: never a fastText pass.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from retriever.batch_filter.probs import prob_matrix, read_filter_scores, read_probs, score_files
from retriever.batch_filter.thresholds import above_floor, passes
from retriever.batch_filter.writers import commit_all, open_pool_writer
from retriever.corpus import shard_name
from retriever.corpus.readers import ReaderConfig
from retriever.data import Doc
from retriever.errors import ConfigError
from retriever.io import write_json_atomic
from retriever.names import PROB, score_name
from retriever.thresholds import kept_probability, threshold_for_fraction

BY = ("docs", "chars")
__all__ = ["read_filter_scores", "rethreshold", "stored_fraction_threshold", "write_rethresholded"]


def stored_fraction_threshold(p: np.ndarray, w: np.ndarray | None, fraction: float) -> float:
    """:func:`~retriever.thresholds.threshold_for_fraction` of stored (float16) probabilities,
    found over their distinct values: at most 2^15 non-negative ones, each with the summed weight
    of its documents, so a pass over the documents instead of a sort of them.

    The same threshold as the rule over every document: the first value (highest first) whose
    documents bring the kept weight to ``fraction`` is the same, and whole-number weights
    (documents, characters) sum exactly in any order.

    Args:
        p: ``[n]`` finite probabilities, each a float16 value (as read from ``scores/``).
        w: ``[n]`` weights (characters), or ``None``: one per document.
        fraction: share of the weight to keep, in (0, 1].
    """
    bits = np.asarray(p, dtype=np.float16).view(np.uint16)  # [n]; ordered as the values are
    if len(bits) == 0 or bool((bits & 0x8000).any()):  # none, or negative: the plain rule
        return threshold_for_fraction(p, w, fraction)
    present = np.flatnonzero(np.bincount(bits))  # [n_values] bit patterns that occur
    weight = np.bincount(bits, weights=w)[present]  # [n_values] documents or characters
    values = present.astype(np.uint16).view(np.float16)
    return threshold_for_fraction(values, weight, fraction)


def rethreshold(
    filter_dir: str | os.PathLike,
    threshold: float | dict[str, float] | None = None,
    top_fraction: float | None = None,
    by: str = "docs",
) -> dict[str, Any]:
    """What a new rule keeps, per task, from the stored probabilities (nothing is scored).

    Reads only each shard's ``n_chars`` and ``prob_<task>`` columns.

    Args:
        filter_dir: a filter output folder (its ``scores/``).
        threshold: keep ``p >= threshold`` (one value, or task -> value).
        top_fraction: keep the top share (0, 1] of ``by`` per task instead.
        by: ``docs`` or ``chars`` for ``top_fraction``.

    Returns:
        ``{"tasks": {task: {"threshold", "kept", "chars_kept", "docs"}}, "rule": ...}``.
    """
    if (threshold is None) == (top_fraction is None):
        raise ConfigError("give a threshold or a top fraction (one of them)")
    if by not in BY:
        raise ConfigError(
            f"by must be one of {BY} (stored scores have no token counts), got {by!r}"
        )
    tasks, cols = read_filter_scores(filter_dir, columns=["n_chars"])
    chars = cols["n_chars"].astype(np.float64)
    out: dict[str, Any] = {}
    for t in tasks:
        p = cols[score_name(PROB, t)]
        ok = np.isfinite(p)
        if top_fraction is not None:
            w = None if by == "docs" else chars[ok]
            thr = above_floor(stored_fraction_threshold(p[ok], w, top_fraction))
        else:
            given = threshold[t] if isinstance(threshold, dict) else threshold
            thr = float(given if given is not None else 0.0)
            if not 0.0 <= thr <= 1.0:
                raise ConfigError(f"thresholds are probabilities in [0, 1], got {thr}")
        keep = ok & (p >= np.float32(thr))
        out[t] = {
            "threshold": thr,
            "kept": int(keep.sum()),
            "chars_kept": int(chars[keep].sum()),
            "docs": int(ok.sum()),
        }
    rule = f"top {top_fraction:g} of {by}" if top_fraction is not None else f"p >= {threshold}"
    return {"rule": rule, "tasks": out}


def write_rethresholded(
    filter_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    thresholds: dict[str, float],
    fmt: str | None = None,
) -> dict[str, Any]:
    """Write the pools ``thresholds`` keep to ``out_dir/<task>/``: one read of the corpus shards
    (with the run's reader settings), no scoring. Returns per-task counts (also in
    ``out_dir/rethreshold.json``).

    Each shard's stored ``row`` and probabilities are read when that shard is written; a shard
    where no task keeps a document is not read from the corpus at all.
    """
    src = Path(filter_dir)
    settings, files = score_files(src)
    tasks = list(settings["tasks"])
    if set(thresholds) != set(tasks):
        raise ConfigError(f"thresholds {sorted(thresholds)} must cover the tasks {tasks}")
    reader = ReaderConfig.from_settings(settings).reader()
    fmt = fmt or settings["format"]
    out = Path(out_dir)
    thr = np.array([thresholds[t] for t in tasks], dtype=np.float32)  # [n_tasks]
    keys = [score_name(PROB, t) for t in tasks]
    counts = {t: 0 for t in tasks}
    for shard, path in files:
        scores = read_probs(path, tasks, ["row"])
        prob = prob_matrix(scores, tasks)  # [n_shard, n_tasks]
        keep = passes(prob, thr)  # [n_shard, n_tasks]
        some = np.asarray(keep.any(axis=1))  # [n_shard] documents some task keeps
        if not some.any():
            continue
        at = {int(r): i for i, r in enumerate(scores.column("row").to_numpy())}  # row -> score row
        writers = {t: open_pool_writer(fmt, out / t / shard_name(shard)) for t in tasks}
        with commit_all(writers):
            for rec in reader.read(shard):
                if not isinstance(rec, Doc):
                    continue
                i = at.get(int(rec.metadata.get("row", -1)))
                if i is None or not some[i]:
                    continue
                for j, key in enumerate(keys):
                    rec.metadata[key] = kept_probability(prob[i, j])
                for j, t in enumerate(tasks):
                    if keep[i, j]:
                        writers[t].write(rec)
                        counts[t] += 1
    summary = {"source": str(src), "thresholds": thresholds, "kept": counts}
    write_json_atomic(out / "rethreshold.json", summary)
    return summary
