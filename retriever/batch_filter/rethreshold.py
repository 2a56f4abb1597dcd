"""Re-thresholding a finished filter run from its stored probabilities: no model, no scoring.

The filter writes every scored document's probabilities to ``DIR/scores/<shard_name>.parquet``
(float16, see :func:`~retriever.thresholds.to_float16_keeping`). :func:`rethreshold` reads only
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

from retriever._deps import require
from retriever.batch_filter.shard import SCORES_DIR
from retriever.batch_filter.writers import commit_all, open_pool_writer
from retriever.corpus import shard_name
from retriever.corpus.readers import ReaderConfig
from retriever.data import Doc
from retriever.errors import ConfigError, InputError
from retriever.io import read_json, write_json_atomic
from retriever.names import PROB, score_name
from retriever.thresholds import threshold_for_fraction

BY = ("docs", "chars")


def read_filter_scores(filter_dir: str | os.PathLike) -> tuple[list[str], dict[str, np.ndarray]]:
    """``(tasks, columns)`` of every shard's stored probabilities, in shard order:
    ``id`` (object), ``shard``, ``row``, ``n_chars`` and ``prob_<task>`` (float32)."""
    pq = require("pyarrow.parquet")
    out = Path(filter_dir)
    man = out / "manifest.json"
    if not man.is_file():
        raise InputError(f"{out} is not a filter output folder (no manifest.json)")
    settings = read_json(man)["settings"]
    tasks = list(settings["tasks"])
    parts: dict[str, list] = {k: [] for k in ("id", "shard", "row", "n_chars")}
    probs: list[np.ndarray] = []
    missing = []
    for shard in settings["shards"]:
        p = out / SCORES_DIR / f"{shard_name(shard)}.parquet"
        if not p.is_file():
            missing.append(shard_name(shard))
            continue
        t = pq.read_table(p)
        parts["id"].append(np.asarray(t.column("id").to_pylist(), dtype=object))
        parts["shard"].append(np.full(t.num_rows, shard, dtype=object))
        parts["row"].append(t.column("row").to_numpy())
        parts["n_chars"].append(t.column("n_chars").to_numpy())
        probs.append(
            np.stack(
                [t.column(score_name(PROB, x)).to_numpy().astype(np.float32) for x in tasks], axis=1
            ).reshape(t.num_rows, len(tasks))
        )
    if missing:
        raise InputError(
            f"{len(missing)} shard(s) of {out} have no stored probabilities ({missing[:3]}); "
            "the run was made without write_scores or is not finished: rerun the filter"
        )
    cols = {k: np.concatenate(v) if v else np.zeros(0) for k, v in parts.items()}
    p_all = np.concatenate(probs) if probs else np.zeros((0, len(tasks)), np.float32)
    for j, x in enumerate(tasks):
        cols[score_name(PROB, x)] = p_all[:, j]
    return tasks, cols


def rethreshold(
    filter_dir: str | os.PathLike,
    threshold: float | dict[str, float] | None = None,
    top_fraction: float | None = None,
    by: str = "docs",
) -> dict[str, Any]:
    """What a new rule keeps, per task, from the stored probabilities (nothing is scored).

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
    tasks, cols = read_filter_scores(filter_dir)
    chars = cols["n_chars"].astype(np.float64)
    out: dict[str, Any] = {}
    for t in tasks:
        p = cols[score_name(PROB, t)]
        ok = np.isfinite(p)
        if top_fraction is not None:
            w = None if by == "docs" else chars[ok]
            thr = threshold_for_fraction(p[ok], w, top_fraction)
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
    ``out_dir/rethreshold.json``)."""
    src = Path(filter_dir)
    settings = read_json(src / "manifest.json")["settings"]
    tasks, cols = read_filter_scores(src)
    if set(thresholds) != set(tasks):
        raise ConfigError(f"thresholds {sorted(thresholds)} must cover the tasks {tasks}")
    reader = ReaderConfig.from_settings(settings).reader()
    fmt = fmt or settings["format"]
    out = Path(out_dir)
    counts = {t: 0 for t in tasks}
    for shard in settings["shards"]:
        sel = cols["shard"] == shard
        prob = np.stack(
            [cols[score_name(PROB, t)][sel] for t in tasks], axis=1
        )  # [n_shard, n_tasks]
        at = {int(r): i for i, r in enumerate(cols["row"][sel])}  # shard row -> score row
        keep = prob >= np.array([thresholds[t] for t in tasks], dtype=np.float32)[None, :]
        if not keep.any():
            continue
        writers = {t: open_pool_writer(fmt, out / t / shard_name(shard)) for t in tasks}
        with commit_all(writers):
            for rec in reader.read(shard):
                if not isinstance(rec, Doc):
                    continue
                i = at.get(int(rec.metadata.get("row", -1)))
                if i is None or not keep[i].any():
                    continue
                for j, t in enumerate(tasks):
                    rec.metadata[score_name(PROB, t)] = round(float(prob[i, j]), 6)
                for j, t in enumerate(tasks):
                    if keep[i, j]:
                        writers[t].write(rec)
                        counts[t] += 1
    summary = {"source": str(src), "thresholds": thresholds, "kept": counts}
    write_json_atomic(out / "rethreshold.json", summary)
    return summary
