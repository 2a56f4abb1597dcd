"""Library calls behind ``retriever index build`` and ``retriever index add``."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from retriever.config import GoldSource, TaskSpec, find_task_spec
from retriever.data import Doc
from retriever.embed import load_embedder
from retriever.errors import ConfigError
from retriever.gold.loader import GoldLoader, GoldSet, text_key
from retriever.index.gold_index import GoldIndex
from retriever.io import check_writable
from retriever.stats import Stats

log = logging.getLogger(__name__)


def build_index(
    task: str | TaskSpec,
    gold: list[str] | None = None,
    indexes_dir: str | os.PathLike = "indexes",
    out: str | os.PathLike | None = None,
    model: str | None = None,
    factory: str | None = None,
    embedder=None,
    use_gpu: bool | None = None,
    gold_limit: int | None = None,
    sparse: bool = True,
) -> GoldIndex:
    """Load a task's gold, embed it and write ``<indexes_dir>/<task>/``.

    Args:
        task: task name (spec ``<indexes_dir>/<task>.toml``) or a loaded :class:`TaskSpec`.
        gold: paths or Hub ids replacing the spec's sources (``--gold``). With no spec for ``task``
            they define the task on their own.
        indexes_dir: where specs live and indexes are written.
        out: index folder (default ``<indexes_dir>/<task>``).
        model, factory: override the spec's embedding model / FAISS factory string.
        embedder: an already loaded embedder (its model wins over ``model``).
        gold_limit: read at most this many records per gold source (the run config's
        ``gold_limit``). sparse: also build the TF-IDF index of the gold (``sparse/``,
        :mod:`retriever.index.sparse`)
            that hybrid scoring and the learned head use.
    """
    spec = _spec(task, gold, indexes_dir)
    if gold_limit is not None:
        if gold_limit < 1:
            raise ConfigError(f"--gold-limit must be at least 1, got {gold_limit}")
        spec = dataclasses.replace(
            spec, sources=tuple(dataclasses.replace(s, limit=gold_limit) for s in spec.sources)
        )
    dest = Path(out or Path(indexes_dir) / spec.task)
    check_writable(dest.parent, "index folder")  # before embedding all the gold, not after
    gold_set = GoldLoader(spec.sources).load()
    emb = embedder or load_embedder(model or spec.model)
    gi = GoldIndex.build(spec.task, gold_set, emb, factory=factory or spec.factory, use_gpu=use_gpu)
    gi.manifest["spec"] = spec.spec_path
    gi.save(dest)
    if sparse:
        from retriever.index.hybrid import build_sparse

        build_sparse(dest, gi=gi)
    log.info(
        "index %s: %d exemplars (%s)", spec.task, gi.ntotal, gold_set.stats.to_dict()["counts"]
    )
    return gi


def _spec(task: str | TaskSpec, gold: list[str] | None, indexes_dir) -> TaskSpec:
    if isinstance(task, TaskSpec):
        return task.with_sources(gold) if gold else task
    if gold and not (Path(indexes_dir) / f"{task}.toml").is_file() and not task.endswith(".toml"):
        return TaskSpec(task=task, sources=tuple(GoldSource(path=g) for g in gold))
    spec = find_task_spec(task, indexes_dir)
    return spec.with_sources(gold) if gold else spec


def add_to_index(
    index_dir: str | os.PathLike,
    texts: list[str] | None = None,
    gold: list[str] | None = None,
    embedder=None,
) -> tuple[int, Stats]:
    """Add exemplars (given texts and/or gold files) to an index folder; duplicates are skipped.

    Returns:
        ``(added, stats)`` where ``stats`` counts seen / kept / dropped duplicates / rejected.
    """
    gi = GoldIndex.load(index_dir)
    emb = embedder or load_embedder(gi.model)
    gi.check_embedder(emb)
    have = {text_key(t) for t in gi.texts}
    docs: list[Doc] = []
    stats = Stats()
    for t in texts or []:
        stats.inc("seen")
        if not t or not t.strip():
            stats.inc("rejected/empty")
            continue
        if text_key(t) in have:
            stats.inc("dropped/duplicate")
            continue
        have.add(text_key(t))
        stats.inc("kept")
        docs.append(Doc(id=f"added:{gi.ntotal + len(docs)}", text=t, metadata={"source": "added"}))
    sources = (
        [
            {
                "name": "added",
                "path": "<command line>",
                "format": "text",
                "records": len(docs),
                "fingerprint": text_key("\n".join(d.text for d in docs)),
            }
        ]
        if docs
        else []
    )
    gold_set = GoldSet(docs, stats, sources)
    if gold:
        extra = GoldLoader([GoldSource(path=g) for g in gold], seen_keys=have).load()
        gold_set.docs += extra.docs
        gold_set.stats += extra.stats
        gold_set.sources += extra.sources
    added = gi.add(gold_set, emb) if gold_set.docs else 0
    if added:
        gi.save(index_dir)
        from retriever.index.sparse import SPARSE_DIR

        if (Path(index_dir) / SPARSE_DIR).is_dir():  # the sparse index follows the gold (a head
            from retriever.index.hybrid import build_sparse  # then needs retraining: load says so)

            build_sparse(index_dir, gi=gi)
    return added, gold_set.stats
