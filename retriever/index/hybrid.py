"""Hybrid scoring: an index folder's optional sparse index and learned head, used by the scorer.

An index folder (``indexes/<task>/``) may hold, beside the FAISS index:

* ``sparse/`` (:mod:`retriever.index.sparse`): written by ``retriever index build``;
* ``head/`` (:mod:`retriever.index.head`): written by ``retriever index head`` or the ``head``
  step of ``retriever run`` (it needs negatives: a corpus sample and the other tasks' indexes).

The score stage then writes, per task, ``cos_<task>`` (max cosine), ``topk_<task>`` (mean top-k
cosine), ``sparse_<task>`` / ``sparse_topk_<task>`` (TF-IDF cosine), ``hybrid_<task>`` (learned
combination of those four scores, a probability) and ``head_<task>`` (learned head over the
vector, the four scores and the document's words, a probability), and ``score_<task>``, the
candidate ranking: the first of :data:`RANKING_ORDER` the folder has. The order comes from the
cross-source evaluation (``scripts/eval_quality.py --cross-source``; docs/retrieval.md).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from retriever.errors import InputError
from retriever.index.head import (
    HEAD_DIR,
    MAX_NEGATIVES,
    Features,
    HeadConfig,
    TaskHead,
    gold_features,
    load_head,
    reliable_negatives,
    train_head,
)
from retriever.index.sparse import (
    SPARSE_DIR,
    SparseConfig,
    SparseIndex,
    analyze,
    analyzer_key,
    load_sparse,
    unigrams,
)
from retriever.io import read_json
from retriever.names import HEAD, HYBRID, SPARSE, SPARSE_TOPK

if TYPE_CHECKING:
    from retriever.embed import Embedder
    from retriever.index import GoldIndex

log = logging.getLogger(__name__)

# candidate ranking, best first (measured: docs/retrieval.md); "cos" is always there
RANKING_ORDER = ("head", "hybrid", "cos")
EXTRA_COLUMNS = (SPARSE, SPARSE_TOPK, HYBRID, HEAD)  # score kinds (retriever.names)


@dataclass
class TaskExtras:
    """The optional parts of one task's index folder."""

    sparse: SparseIndex | None = None
    head: TaskHead | None = None

    @property
    def empty(self) -> bool:
        return self.sparse is None and self.head is None

    def columns(self) -> list[str]:
        cols = ["sparse", "sparse_topk"] if self.sparse is not None else []
        if self.head is not None:
            cols += [c for c in ("hybrid", "head") if c in self.head.models]
        return cols

    def ranking(self) -> str:
        """Which score is this task's candidate ranking (``score_<task>``)."""
        have = set(self.columns()) | {"cos"}
        return next(r for r in RANKING_ORDER if r in have)

    def fingerprint(self) -> dict[str, Any]:
        """What a score folder records about these parts (checked on resume)."""
        out: dict[str, Any] = {"ranking": self.ranking()}
        if self.sparse is not None:
            out["sparse"] = {
                k: self.sparse.manifest.get(k) for k in ("gold_fingerprint", "n_terms", "config")
            }
        if self.head is not None:
            out["head"] = {k: self.head.manifest.get(k) for k in ("gold_fingerprint", "trained")}
        return out


def load_extras(index_dir: str | os.PathLike) -> TaskExtras:
    """The sparse index and head of an index folder (each ``None`` when absent).

    Raises:
        InputError: the head was trained without a sparse index, or on other gold.
    """
    ex = TaskExtras(load_sparse(index_dir), load_head(index_dir))
    gold_fp = read_json(Path(index_dir) / "manifest.json").get("gold_fingerprint")
    if ex.sparse is not None and ex.sparse.manifest.get("gold_fingerprint") != gold_fp:
        raise InputError(
            f"the sparse index in {index_dir} is of another gold; rebuild it with "
            "`retriever index build` (or `retriever index sparse`)"
        )
    if ex.head is not None:
        if ex.sparse is None:
            raise InputError(
                f"{index_dir} has a head but no sparse index; rebuild it with "
                "`retriever index build`, then `retriever index head`"
            )
        if ex.head.manifest.get("sparse_fingerprint") != ex.sparse.manifest.get("gold_fingerprint"):
            raise InputError(
                f"the head in {index_dir} was trained on another gold or sparse "
                "index; retrain it with `retriever index head`"
            )
    return ex


def extra_columns(extras: Iterable[TaskExtras]) -> list[str]:
    """Extra column prefixes any of ``extras`` fills, in :data:`EXTRA_COLUMNS` order."""
    have = {c for e in extras for c in e.columns()}
    return [c for c in EXTRA_COLUMNS if c in have]


def score_extras(
    extras: dict[str, TaskExtras],
    texts: list[str],
    xq: np.ndarray,
    smax: dict[str, np.ndarray],
    stopk: dict[str, np.ndarray],
    k: int,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, np.ndarray]]:
    """Sparse and head scores of a batch, and each task's candidate ranking.

    Args:
        extras: task -> parts; texts: the (clipped) texts that were embedded; xq: their vectors
        ``[n, dim]``; smax, stopk: the dense scores per task; k: top-k size.

    Returns:
        ``(extra, ranking)``: column prefix -> task -> ``[n]`` scores, and task -> ``[n]``.
    """
    extra: dict[str, dict[str, np.ndarray]] = {c: {} for c in EXTRA_COLUMNS}
    rank: dict[str, np.ndarray] = {}
    words: dict[str, Any] = {}  # vocabulary fingerprint -> TF-IDF rows: one tokenisation per vocab
    cuts: dict[tuple, list[list[str]]] = {}  # analyzer settings -> the batch cut into terms

    def cut(config: SparseConfig) -> list[list[str]]:
        key = analyzer_key(config)
        if key not in cuts:
            two = analyzer_key(dataclasses.replace(config, ngram_max=2))
            if config.ngram_max == 1 and two in cuts:
                cuts[key] = unigrams(cuts[two])
            else:
                cuts[key] = analyze(texts, config)
        return cuts[key]

    for task, ex in extras.items():
        if ex.sparse is not None:
            rows = ex.sparse.transform_terms(cut(ex.sparse.config))
            extra["sparse"][task], extra["sparse_topk"][task] = ex.sparse.score_rows(rows, k)
        if ex.head is not None:
            v = ex.head.vocab
            if v is not None and v.fingerprint not in words:
                words[v.fingerprint] = v.transform_terms(cut(v.config))
            feats = Features(
                xq,
                smax[task],
                stopk[task],
                extra["sparse"][task],
                extra["sparse_topk"][task],
                words[v.fingerprint] if v is not None else None,
            )
            for name, p in ex.head.predict(feats).items():
                extra.setdefault(name, {})[task] = p
        r = ex.ranking()
        rank[task] = smax[task] if r == "cos" else extra[r][task]
    return {c: d for c, d in extra.items() if d}, rank


# -- building the parts ---------------------------------------------------------------------------
def build_sparse(
    index_dir: str | os.PathLike, config: SparseConfig | None = None, gi: GoldIndex | None = None
) -> SparseIndex:
    """Build (or rebuild) the sparse index of an index folder from its gold (``gi``: the folder's
    index, already loaded)."""
    from retriever.index.gold_index import GoldIndex

    gi = gi or GoldIndex.load(index_dir)
    sp = SparseIndex.build(gi.texts, config, gold_fingerprint=gi.manifest["gold_fingerprint"])
    sp.save(Path(index_dir) / SPARSE_DIR)
    return sp


def gold_vectors(gi: GoldIndex, embedder: Embedder | None = None) -> np.ndarray:
    """The gold's unit vectors in index order: read back from a flat index, else re-embedded."""
    try:
        return np.asarray(gi.index.reconstruct_n(0, gi.ntotal), dtype=np.float32)  # [n_gold, dim]
    except RuntimeError:  # IVF / PQ indexes without a direct map
        if embedder is None:
            raise InputError(
                f"index {gi.task!r} cannot return its vectors ({gi.manifest['factory']}); "
                "pass an embedder to re-embed the gold"
            ) from None
        return embedder.encode(gi.texts)


def document_features(
    gi: GoldIndex,
    sparse: SparseIndex,
    xq: np.ndarray,
    texts: list[str],
    k: int = 10,
    words=None,
) -> Features:
    """Features of documents for one task (what the score stage computes for them); ``words``:
    their rows under a head's vocabulary, if any."""
    from retriever.score.scorer import topk_scores

    D, _ = gi.search(xq, k)  # [n, k]
    cmax, ctopk = topk_scores(D)
    smax, stopk = sparse.score(texts, k)
    return Features(np.asarray(xq, dtype=np.float32), cmax, ctopk, smax, stopk, words)


def train_heads(
    index_dirs: list[str],
    negatives: list[str],
    embedder: Embedder | None = None,
    config: HeadConfig | None = None,
    k: int = 10,
    negative_vectors: np.ndarray | None = None,
    clip_chars: int | None = None,
    sources: list[str] | None = None,
    models: dict[str, tuple[str, ...]] | None = None,
) -> dict[str, TaskHead]:
    """Train and save a head for every index folder.

    Positives: the task's gold (leave-one-out scores). Negatives: ``negatives`` (corpus texts) and
    the other folders' gold. Each folder needs a sparse index (built if missing). The words'
    vocabulary is fitted once on all of those texts and shared by the heads.

    Args:
        index_dirs: ``indexes/<task>`` folders, one per task (built with one model).
        negatives: corpus document texts, clipped as the scorer clips them (``clip_chars``).
        embedder: embeds ``negatives`` (unless ``negative_vectors`` is given) and gold that cannot
            be read back from its index.
        negative_vectors: ``[len(negatives), dim]`` vectors already computed (a score folder's).
        sources: what the negatives are (recorded in the manifest).
        models: model name -> features (default :data:`retriever.index.head.MODELS`).
    """
    from retriever.index.gold_index import load_indexes
    from retriever.index.head import MODELS
    from retriever.index.sparse import TermWeights

    t0 = time.perf_counter()
    indexes = load_indexes(index_dirs)
    if embedder is not None:
        for gi in indexes.values():
            gi.check_embedder(embedder)
    dirs = dict(zip(indexes, index_dirs, strict=True))
    if not negatives:
        raise InputError("no negative documents for the head; pass --negatives CORPUS")
    msl = int(getattr(embedder, "max_seq_length", 0) or 256) if embedder is not None else 256
    clip = clip_chars or msl * 12
    negatives = [t[:clip] for t in negatives]
    if negative_vectors is None:
        if embedder is None:
            raise InputError("train_heads needs an embedder or negative_vectors")
        negative_vectors = embedder.encode(negatives)
    sparse = {}
    for task, d in dirs.items():
        sparse[task] = load_sparse(d) or build_sparse(d)
    vecs = {t: gold_vectors(gi, embedder) for t, gi in indexes.items()}
    texts = {t: [x[:clip] for x in gi.texts] for t, gi in indexes.items()}
    models = models or MODELS
    config = config or HeadConfig()
    vocab, rows = None, {}
    if any("words" in names for names in models.values()):
        every = negatives + [x for t in indexes for x in texts[t]]
        vocab = TermWeights.fit(every, config.vocabulary())
        rows = {"corpus": vocab.transform(negatives)}
        rows.update({t: vocab.transform(texts[t]) for t in indexes})
    heads = {}
    for task, gi in indexes.items():
        pos = gold_features(vecs[task], gi, sparse[task], k, rows.get(task))
        corpus = document_features(
            gi, sparse[task], negative_vectors, negatives, k, rows.get("corpus")
        )
        dropped, cut = 0, None
        if config.reliable_negatives:
            keep, cut = reliable_negatives(pos.cos, corpus.cos)
            dropped = int((~keep).sum())
            corpus = corpus.subset(keep)
        negs = [corpus]
        for other in indexes:
            if other != task:
                negs.append(
                    document_features(
                        gi, sparse[task], vecs[other], texts[other], k, rows.get(other)
                    )
                )
        head = train_head(
            task,
            pos,
            Features.concat(negs),
            config,
            models=models,
            vocab=vocab,
            manifest={
                "gold_fingerprint": gi.manifest["gold_fingerprint"],
                "sparse_fingerprint": sparse[task].manifest["gold_fingerprint"],
                "model": gi.model,
                "k": k,
                "negatives": {
                    "corpus": len(negatives) - dropped,
                    "corpus_dropped_as_task_like": dropped,
                    "corpus_drop_cut": cut,
                    "sources": sources or [],
                    "other_tasks": {o: indexes[o].ntotal for o in indexes if o != task},
                },
                "trained": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
        )
        head.save(Path(dirs[task]) / HEAD_DIR)
        heads[task] = head
        log.info("head %s: %s", task, {n: m.info for n, m in head.models.items()})
    log.info("heads trained in %.1f s", time.perf_counter() - t0)
    return heads


def read_negatives(
    corpus: list[str],
    limit: int = MAX_NEGATIVES,
    seed: int = 0,
    text_field: str = "text",
    reader=None,
    max_read: int | None = None,
) -> list[str]:
    """Up to ``limit`` corpus texts spread over the shards: the ones with the smallest seeded hash
    of the document id (the same sample whatever the order of the shards).

    Args:
        reader: a :class:`~retriever.corpus.readers.CorpusReader` (default: ``text_field``).
        max_read: read at most this many documents (a corpus of billions): then at most
            ``max_read / 20`` from each shard, the shards visited in a seeded order, so the sample
            spreads over 20 shards or more; ``None``: every document.
    """
    import hashlib
    import heapq

    from retriever.corpus.readers import CorpusReader
    from retriever.corpus.sharding import list_shards
    from retriever.data import Rejected

    reader = reader or CorpusReader(text_field=text_field)

    def key(s: str) -> int:
        return int.from_bytes(
            hashlib.blake2b(f"{seed}:{s}".encode(), digest_size=8).digest(), "big"
        )

    shards = list_shards(corpus)
    per_shard = None
    if max_read is not None:
        shards = sorted(shards, key=key)
        per_shard = max(1, max_read // min(len(shards), 20))
    heap: list[tuple[int, str]] = []  # max-heap of (-hash, text): the `limit` smallest hashes
    n_read = 0
    for shard in shards:
        if max_read is not None and n_read >= max_read:
            break
        for i, doc in enumerate(reader.read(shard)):
            if max_read is not None and per_shard is not None:
                if i >= per_shard or n_read >= max_read:
                    break
            n_read += 1
            if isinstance(doc, Rejected):
                continue
            item = (-key(doc.id), doc.text)
            if len(heap) < limit:
                heapq.heappush(heap, item)
            elif item > heap[0]:
                heapq.heapreplace(heap, item)
    return [t for _, t in sorted(heap, reverse=True)]
