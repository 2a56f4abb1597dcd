"""Reading a score folder back: the score table, and the scored documents with their text."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from retriever._deps import require
from retriever.corpus.readers import ReaderConfig
from retriever.data import Doc, Rejected
from retriever.errors import InputError
from retriever.io import read_json
from retriever.names import CANDIDATE, SCORE, TOPK, score_name
from retriever.score.job import shard_outputs
from retriever.score.select import score_columns


def read_scores(
    score_dir: str | os.PathLike, columns: list[str] | None = None, with_vectors: bool = False
):
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


def iter_scored_docs(
    score_dir: str | os.PathLike,
    ids: set[str] | None = None,
    task: str | None = None,
    candidates_only: bool = False,
) -> Iterator[Doc]:
    """The scored documents with their full text, re-read from the shards listed in the folder.

    Scores go into ``metadata`` under their column names (:mod:`retriever.names`):
    ``score_<task>`` (the candidate ranking), ``topk_<task>`` (mean top-k), and
    ``candidate_<task>`` (bool, from the thresholds in ``summary.json``).

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
            raise InputError(
                f"no threshold for {task!r} in {out}/summary.json; rerun with "
                "--top-fraction/--threshold"
            )
    reader = ReaderConfig.from_settings(settings).reader()
    cols = ["id", "row"] + [score_name(k, t) for t in tasks for k in (SCORE, TOPK)]
    for name, path in shard_outputs(out).items():
        tbl = pq.read_table(path, columns=cols).to_pydict()
        by_row: dict[int, int] = {}
        for i, r in enumerate(tbl["row"]):
            if ids is not None and tbl["id"][i] not in ids:
                continue
            if candidates_only and tbl[score_name(SCORE, str(task))][i] < thr[str(task)]:
                continue
            by_row[r] = i
        if not by_row:
            continue
        if name not in shards:
            raise InputError(
                f"{out}/shards.json does not list shard {name!r}; the folder is damaged"
            )
        for rec in reader.read(shards[name]):
            if isinstance(rec, Rejected) or rec.metadata.get("row") not in by_row:
                continue
            i = by_row[rec.metadata["row"]]
            for t in tasks:
                for k in (SCORE, TOPK):
                    rec.metadata[score_name(k, t)] = float(tbl[score_name(k, t)][i])
                if thr.get(t) is not None:
                    rec.metadata[score_name(CANDIDATE, t)] = bool(
                        tbl[score_name(SCORE, t)][i] >= thr[t]
                    )
            yield rec


def top_documents(
    score_dir: str | os.PathLike, n: int, column: str = "score"
) -> dict[str, list[dict]]:
    """Per task, the ``n`` best-scored documents ``[{rank, id, shard, row, score, preview}]``.

    Streams the score files one at a time (memory: one shard's id/score/preview columns).
    """
    import numpy as np

    pq = require("pyarrow.parquet")
    tasks = score_columns(score_dir)
    best: dict[str, list[tuple[float, dict]]] = {t: [] for t in tasks}
    for name, path in shard_outputs(score_dir).items():
        tbl = pq.read_table(
            path, columns=["id", "row", "preview"] + [score_name(column, t) for t in tasks]
        )
        for t in tasks:
            s = tbl.column(score_name(column, t)).to_numpy(zero_copy_only=False)  # [n_docs]
            top = np.argsort(-s, kind="stable")[:n]
            best[t] += [
                (
                    float(s[i]),
                    {
                        "id": tbl.column("id")[int(i)].as_py(),
                        "shard": name,
                        "row": tbl.column("row")[int(i)].as_py(),
                        "preview": tbl.column("preview")[int(i)].as_py(),
                    },
                )
                for i in top
            ]
    out = {}
    for t, items in best.items():
        items.sort(key=lambda x: -x[0])
        out[t] = [{"rank": r + 1, "score": sc, **h} for r, (sc, h) in enumerate(items[:n])]
    return out


def export_candidates(score_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, int]:
    """Write each task's candidates with their full text to ``OUT/<task>.jsonl.gz``.

    One datatrove-style record per line, ``{"id", "text", "metadata"}`` (metadata: the scores
    ``score_<task>``, ``topk_<task>``, ``candidate_<task>`` and the shard row), readable by
    datatrove's ``JsonlReader`` and by ``datasets.load_dataset("json", ...)``. Tasks without a
    threshold are skipped. Returns documents written per task.
    """
    import gzip

    import orjson

    from retriever.io import AtomicWriter

    out = Path(out_dir)
    thr = candidate_thresholds(score_dir)
    if not any(v is not None for v in thr.values()):
        raise InputError(
            f"no task of {score_dir} has a threshold; pass --top-fraction or --threshold TASK=SCORE"
        )
    counts = {}
    for task, t in thr.items():
        if t is None:
            continue
        n = 0
        with AtomicWriter(out / f"{task}.jsonl.gz") as tmp, gzip.open(tmp, "wb") as fh:
            for d in iter_scored_docs(score_dir, task=task, candidates_only=True):
                fh.write(
                    orjson.dumps({"id": d.id, "text": d.text, "metadata": d.metadata}, default=str)
                    + b"\n"
                )
                n += 1
        counts[task] = n
    return counts
