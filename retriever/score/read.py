"""Reading a score folder back: the score table, and the scored documents with their text."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from retriever._deps import require
from retriever.corpus.readers import CorpusReader, Detokenizer
from retriever.corpus.writers import read_json
from retriever.data import Doc, Rejected
from retriever.errors import InputError
from retriever.score.job import shard_outputs
from retriever.score.select import score_columns


def read_scores(score_dir: str | os.PathLike, columns: list[str] | None = None, with_vectors: bool = False):
    """All finished shards' score rows as one ``pyarrow.Table`` (vectors left out unless asked)."""
    pa = require("pyarrow")
    pq = require("pyarrow.parquet")
    paths = list(shard_outputs(score_dir).values())
    if not paths:
        raise InputError(f"{score_dir} holds no finished shard; run `retriever score` first")
    tables = []
    for p in paths:
        names = pq.ParquetFile(p).schema_arrow.names
        cols = columns or [c for c in names if with_vectors or c != "vector"]
        tables.append(pq.read_table(p, columns=cols))
    return pa.concat_tables(tables)


def candidate_thresholds(score_dir: str | os.PathLike) -> dict[str, float | None]:
    """Per task, the threshold recorded in ``summary.json`` by the last ``retriever score``."""
    p = Path(score_dir) / "summary.json"
    if not p.exists():
        return {}
    return {t: d["threshold"] for t, d in read_json(p)["tasks"].items()}


def iter_scored_docs(score_dir: str | os.PathLike, ids: set[str] | None = None, task: str | None = None,
                     candidates_only: bool = False) -> Iterator[Doc]:
    """The scored documents with their full text, re-read from the shards listed in the folder.

    Scores go into ``metadata``: ``sim/<task>`` (max cosine), ``simk/<task>`` (mean top-k), and
    ``candidate/<task>`` (bool, from the thresholds in ``summary.json``).

    Args:
        ids: only these document ids.
        task: with ``candidates_only``, the task whose candidates are wanted.
        candidates_only: only documents at or above the task's threshold (``task`` required).
    """
    pq = require("pyarrow.parquet")
    out = Path(score_dir)
    tasks = score_columns(out)
    settings = read_json(out / "manifest.json")["settings"]
    shards = read_json(out / "shards.json")
    thr = candidate_thresholds(out)
    if candidates_only:
        if task not in tasks:
            raise InputError(f"candidates_only needs one of the tasks {tasks}, got {task!r}")
        if thr.get(task) is None:
            raise InputError(f"no threshold for {task!r} in {out}/summary.json; rerun with --top-fraction/--threshold")
    reader = CorpusReader(
        text_field=settings["text_field"], id_field=settings["id_field"], tokens_field=settings["tokens_field"],
        detokenizer=Detokenizer(settings["detokenizer"]) if settings.get("detokenizer") else None,
    )
    cols = ["id", "row"] + [f"{p}_{t}" for t in tasks for p in ("score", "topk")]
    for name, path in shard_outputs(out).items():
        tbl = pq.read_table(path, columns=cols).to_pydict()
        by_row: dict[int, int] = {}
        for i, r in enumerate(tbl["row"]):
            if ids is not None and tbl["id"][i] not in ids:
                continue
            if candidates_only and tbl[f"score_{task}"][i] < thr[task]:
                continue
            by_row[r] = i
        if not by_row:
            continue
        if name not in shards:
            raise InputError(f"{out}/shards.json does not list shard {name!r}; the folder is damaged")
        for rec in reader.read(shards[name]):
            if isinstance(rec, Rejected) or rec.metadata.get("row") not in by_row:
                continue
            i = by_row[rec.metadata["row"]]
            for t in tasks:
                rec.metadata[f"sim/{t}"] = float(tbl[f"score_{t}"][i])
                rec.metadata[f"simk/{t}"] = float(tbl[f"topk_{t}"][i])
                if thr.get(t) is not None:
                    rec.metadata[f"candidate/{t}"] = bool(tbl[f"score_{t}"][i] >= thr[t])
            yield rec
