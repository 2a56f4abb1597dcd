"""Nearest neighbours of a new exemplar: among a task's gold, or among the scored corpus.

Indexes, stores and the embedder are loaded once per process (:mod:`retriever.query.cache`), so
only the first query pays the model load.
"""

from __future__ import annotations

import os
from typing import Any

from retriever.embed import load_embedder
from retriever.embed.embedder import canonical_model_id
from retriever.errors import ModelMismatchError
from retriever.query.cache import open_index, open_store, resolve_store

__all__ = ["check_store_embedder", "query_corpus", "query_gold", "query_gold_many", "resolve_store"]


def query_gold(
    index_dir: str | os.PathLike, texts: list[str], k: int = 10, embedder=None
) -> list[list[dict[str, Any]]]:
    """Per text, the ``k`` nearest gold exemplars of the task: ``[{rank, score, id, text,
    source}]``."""
    gi = open_index(index_dir)
    emb = embedder or load_embedder(gi.model)
    gi.check_embedder(emb)
    D, I = gi.search(emb.encode(texts), k)
    return gi.hits(D, I)


def query_gold_many(
    index_dirs: list[str | os.PathLike], texts: list[str], k: int = 10, embedder=None
) -> list[list[dict[str, Any]]]:
    """:func:`query_gold` over several task indexes: per text, the ``k`` best hits of all, each
    with its ``task``, best first (one index: the same hits as :func:`query_gold`)."""
    dirs = list(dict.fromkeys(str(d) for d in index_dirs))
    per_index = [query_gold(d, texts, k, embedder) for d in dirs]
    tasks = [open_index(d).task for d in dirs] if len(dirs) > 1 else [None]
    out = []
    for i in range(len(texts)):
        hits = [
            {**h, "task": t} if t else h
            for t, res in zip(tasks, per_index, strict=True)
            for h in res[i]
        ]
        hits.sort(key=lambda h: -h["score"])
        out.append([{**h, "rank": r + 1} for r, h in enumerate(hits[:k])])
    return out


def check_store_embedder(st, emb) -> None:
    """Raise :class:`ModelMismatchError` unless ``emb`` made the vectors of store ``st``."""
    if canonical_model_id(emb.model_id) != st.model or emb.dim != st.dim:
        raise ModelMismatchError(
            f"store {st.uri} holds {st.model} vectors (dim {st.dim}); the embedder is "
            f"{emb.model_id} (dim {emb.dim}): query with --model {st.model}"
        )


def query_corpus(
    store: str | os.PathLike, texts: list[str], k: int = 10, embedder=None, nprobes: int = 32
) -> list[list[dict[str, Any]]]:
    """Per text, the ``k`` nearest scored corpus documents: ``[{rank, score, id, shard, row,
    preview}]``.

    Args:
        store: a score folder made by ``retriever score`` or its LanceDB store URI.
    """
    st = open_store(store)
    emb = embedder or load_embedder(st.model)
    check_store_embedder(st, emb)
    out = []
    for vec in emb.encode(texts):
        hits = st.search(vec, k, nprobes=nprobes)
        out.append([{"rank": r + 1, **h} for r, h in enumerate(hits)])
    return out
