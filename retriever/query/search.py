"""Nearest neighbours of a new exemplar: among a task's gold, or among the scored corpus."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from retriever.corpus.writers import read_json
from retriever.embed import load_embedder
from retriever.embed.embedder import canonical_model_id
from retriever.errors import InputError, ModelMismatchError
from retriever.index import GoldIndex


def query_gold(index_dir: str | os.PathLike, texts: list[str], k: int = 10, embedder=None) -> list[list[dict[str, Any]]]:
    """Per text, the ``k`` nearest gold exemplars of the task: ``[{rank, score, id, text, source}]``."""
    gi = GoldIndex.load(index_dir)
    emb = embedder or load_embedder(gi.model)
    gi.check_embedder(emb)
    D, I = gi.search(emb.encode(texts), k)
    return gi.hits(D, I)


def query_gold_many(index_dirs: list[str | os.PathLike], texts: list[str], k: int = 10,
                    embedder=None) -> list[list[dict[str, Any]]]:
    """:func:`query_gold` over several task indexes: per text, the ``k`` best hits of all, each
    with its ``task``, best first (one index: the same hits as :func:`query_gold`)."""
    dirs = list(dict.fromkeys(str(d) for d in index_dirs))
    per_index = [query_gold(d, texts, k, embedder) for d in dirs]
    tasks = [GoldIndex.load(d).task for d in dirs] if len(dirs) > 1 else [None]
    out = []
    for i in range(len(texts)):
        hits = [{**h, "task": t} if t else h for t, res in zip(tasks, per_index, strict=True) for h in res[i]]
        hits.sort(key=lambda h: -h["score"])
        out.append([{**h, "rank": r + 1} for r, h in enumerate(hits[:k])])
    return out


def resolve_store(path_or_uri: str | os.PathLike) -> str:
    """A score folder (its ``store.json`` names the store) or a LanceDB folder / URI."""
    p = Path(path_or_uri)
    if (p / "store.json").is_file():
        return read_json(p / "store.json")["uri"]
    return str(path_or_uri)


def query_corpus(store: str | os.PathLike, texts: list[str], k: int = 10, embedder=None,
                 nprobes: int = 32) -> list[list[dict[str, Any]]]:
    """Per text, the ``k`` nearest scored corpus documents: ``[{rank, score, id, shard, row, preview}]``.

    Args:
        store: a score folder made by ``retriever score`` or its LanceDB store URI.
    """
    from retriever.store import CorpusStore

    uri = resolve_store(store)
    if "://" not in uri and not Path(uri).is_dir():  # never create a folder for a mistyped path
        raise InputError(f"no corpus store at {uri}: give a score folder made by `retriever score` "
                         "(or its LanceDB store URI)")
    st = CorpusStore(uri)
    emb = embedder or load_embedder(st.model)
    if canonical_model_id(emb.model_id) != st.model or emb.dim != st.dim:
        raise ModelMismatchError(
            f"store {st.uri} holds {st.model} vectors (dim {st.dim}); the embedder is "
            f"{emb.model_id} (dim {emb.dim}): query with --model {st.model}"
        )
    out = []
    for vec in emb.encode(texts):
        hits = st.search(vec, k, nprobes=nprobes)
        out.append([{"rank": r + 1, **h} for r, h in enumerate(hits)])
    return out
