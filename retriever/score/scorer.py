"""Embed documents once and score them against every task's gold index.

:class:`SimilarityScorer` is the stage object (a :class:`~retriever.step.BatchStep`):
``score_batch`` embeds a batch once and searches every task index (``score_texts`` on the texts),
giving a :class:`ScoredBatch` of arrays. ``scored(docs)`` yields ``(docs, ScoredBatch)`` pieces of
``batch_size`` for a columnar writer (the score job); ``run(docs)`` writes the same scores into
``metadata["score_<task>"]`` (the candidate ranking) / ``metadata["topk_<task>"]`` (mean top-k
cosine; names: :mod:`retriever.names`). Deciding what is a candidate is a separate step
(:mod:`retriever.score.select`).

An index folder may carry a sparse index (``sparse/``) and a learned head (``head/``), see
:mod:`retriever.index.hybrid`; their scores are computed in the same pass, from the same clipped
text and the same vector, and the candidate ranking is the best of them the folder has.

The similarity kernel (:func:`topk_scores`, :func:`score_embeddings`) is pure arrays: no model,
no I/O, tested against brute force. A document's score for a task is computed from its cosine
similarities to the task's gold exemplars (unit vectors, so inner product = cosine):

* ``max``: the similarity to the nearest exemplar (is there *one* gold record this looks like?);
* ``topk``: the mean of the ``k`` largest similarities (does it look like the task in general, not
  like one odd exemplar?). With fewer than ``k`` exemplars, the mean is over all of them.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from retriever.data import Doc
from retriever.errors import InputError
from retriever.names import COS, SCORE, TOPK, score_name
from retriever.step import BatchStep

if TYPE_CHECKING:
    from retriever.embed import Embedder
    from retriever.index import GoldIndex
    from retriever.index.hybrid import TaskExtras


def topk_scores(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(max, mean)`` per row of a top-k similarity matrix ``D`` sorted descending (FAISS order).

    Args:
        D: ``[n_docs, k]`` similarities, best first.

    Returns:
        Two ``[n_docs]`` float32 arrays.
    """
    D = np.asarray(D, dtype=np.float32)
    if D.ndim != 2 or D.shape[1] == 0:
        raise ValueError(f"expected a [n, k>0] matrix, got shape {D.shape}")
    return D[:, 0].copy(), D.mean(axis=1, dtype=np.float64).astype(np.float32)


def score_embeddings(
    xq: np.ndarray, xb: np.ndarray, k: int, block: int = 4096
) -> tuple[np.ndarray, np.ndarray]:
    """Reference scorer: exact ``(max, mean top-k)`` cosine of every query row against ``xb``.

    Plain numpy, blocked over queries so memory is ``block x len(xb)`` floats; used by tests and
    benchmarks as the ground truth for the FAISS path.

    Args:
        xq: ``[n, d]`` unit query vectors (documents).
        xb: ``[m, d]`` unit gold vectors.
        k: neighbours averaged by the ``topk`` score (clipped to ``m``).
        block: query rows per block (memory note above).
    """
    k = max(1, min(k, len(xb)))
    out_max = np.empty(len(xq), dtype=np.float32)
    out_mean = np.empty(len(xq), dtype=np.float32)
    for i in range(0, len(xq), block):
        S = xq[i : i + block] @ xb.T  # [block, m]
        part = -np.partition(-S, k - 1, axis=1)[:, :k]  # k largest, unordered
        part.sort(axis=1)
        D = part[:, ::-1]  # [block, k] best first
        out_max[i : i + block], out_mean[i : i + block] = topk_scores(D)
    return out_max, out_mean


@dataclass
class ScoredBatch:
    """Scores of one batch: ``vectors [n, dim]`` and per task ``[n]`` arrays.

    ``max`` / ``topk``: max and mean top-k cosine; ``extra``: column prefix (``sparse``,
    ``sparse_topk``, ``hybrid``, ``head``) -> task -> scores, for the tasks whose index has those
    parts; ``score``: the candidate ranking per task (``max`` when ``None`` or absent).
    """

    vectors: np.ndarray
    max: dict[str, np.ndarray]
    topk: dict[str, np.ndarray]
    extra: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    score: dict[str, np.ndarray] | None = None

    def ranking(self, task: str) -> np.ndarray:
        """The candidate ranking of ``task`` (what ``score_<task>`` holds)."""
        return self.max[task] if self.score is None else self.score.get(task, self.max[task])

    def rows(self, i: int, j: int) -> ScoredBatch:
        """Rows ``i:j`` of every array."""
        return ScoredBatch(
            self.vectors[i:j],
            {t: v[i:j] for t, v in self.max.items()},
            {t: v[i:j] for t, v in self.topk.items()},
            {c: {t: v[i:j] for t, v in d.items()} for c, d in self.extra.items()},
            None if self.score is None else {t: v[i:j] for t, v in self.score.items()},
        )


class SimilarityScorer(BatchStep):
    """Scores texts by their similarity to each task's gold exemplars.

    Args:
        indexes: task -> gold index; all must be built with ``embedder``'s model.
        embedder: turns texts into unit vectors (each text is embedded once for all tasks).
        k: neighbours averaged by the ``topk`` score.
        batch_size: documents per yielded batch of :meth:`scored` (a parquet row group in the job).
        sort_buffer: documents embedded in one call, one step batch (at least ``batch_size``). The
            embedder sorts a call's texts by length before forming its forward batches, so a larger
            buffer pads less: on ClimbLab, 12% padded tokens with 256 documents, 4% with 1,024
            (``scripts/bench_score.py``). Results still come out in stream order, in batches of
            ``batch_size``; memory: sort_buffer x clip_chars of text plus [sort_buffer, dim] floats.
        extras: task -> its index folder's sparse index and head
            (:func:`~retriever.index.hybrid.load_extras`); tasks without them are scored by cosine
            alone.
        clip_chars: characters of a document passed to the embedder (``None``: the model's max
            length x 12). The model truncates at ``max_seq_length`` tokens anyway; clipping first
            saves tokenizing the rest of long documents. 12 characters per word piece is far above
            the ~4-5 of English text, so the embedding does not change for normal text.
    """

    name = "similarity"

    def __init__(
        self,
        indexes: dict[str, GoldIndex],
        embedder: Embedder,
        k: int = 10,
        batch_size: int = 256,
        clip_chars: int | None = None,
        sort_buffer: int = 1024,
        extras: dict[str, TaskExtras] | None = None,
    ):
        # a step batch is the sort buffer: one embedding call (split() cuts it for scored())
        super().__init__(max(sort_buffer, batch_size))
        if not indexes:
            raise InputError(
                "no gold index given; pass --index indexes/TASK (built with `retriever index "
                "build`)"
            )
        if k < 1 or batch_size < 1 or sort_buffer < 1:
            raise InputError(
                f"k, batch_size and sort_buffer must be >= 1 (got k={k}, "
                f"batch_size={batch_size}, sort_buffer={sort_buffer})"
            )
        for gi in indexes.values():
            gi.check_embedder(embedder)
        self.indexes, self.embedder, self.k, self.batch_size = indexes, embedder, k, batch_size
        self.sort_buffer = max(sort_buffer, batch_size)
        msl = int(getattr(embedder, "max_seq_length", 0) or 512)
        self.clip_chars = clip_chars if clip_chars is not None else msl * 12
        unknown = set(extras or {}) - set(indexes)
        if unknown:
            raise InputError(
                f"sparse index / head given for tasks without an index: {sorted(unknown)}"
            )
        self.extras = {t: e for t, e in (extras or {}).items() if not e.empty}
        for t, e in self.extras.items():
            hk = e.head.manifest.get("k") if e.head is not None else None
            if hk is not None and hk != k:
                raise InputError(
                    f"the head of {t!r} was trained with k={hk}, scoring uses k={k}: "
                    f"pass -k {hk} or retrain it with `retriever index head -k {k}`"
                )

    def columns(self) -> list[str]:
        """Extra column prefixes this scorer fills, in output order (``sparse``, ``head``, ...)."""
        from retriever.index.hybrid import extra_columns

        return extra_columns(self.extras.values())

    @property
    def tasks(self) -> list[str]:
        return list(self.indexes)

    def score_texts(self, texts: list[str]) -> ScoredBatch:
        """Embed ``texts`` once and search every task index."""
        t0 = time.perf_counter()
        clipped = [t[: self.clip_chars] for t in texts]
        xq = self.embedder.encode(clipped)  # [n, dim]
        t1 = time.perf_counter()
        smax, stopk = {}, {}
        for task, gi in self.indexes.items():
            D, _ = gi.search(xq, self.k)  # [n, k]
            smax[task], stopk[task] = topk_scores(D)
        t2 = time.perf_counter()
        self.stats.inc("embed_ms", int((t1 - t0) * 1000))
        self.stats.inc("search_ms", int((t2 - t1) * 1000))
        out = ScoredBatch(xq, smax, stopk)
        if self.extras:
            from retriever.index.hybrid import score_extras

            out.extra, out.score = score_extras(self.extras, clipped, xq, smax, stopk, self.k)
            self.stats.inc("extras_ms", int((time.perf_counter() - t2) * 1000))
        return out

    def score_batch(self, docs: list[Doc]) -> ScoredBatch:
        """The scores of ``docs``' texts (:meth:`score_texts`): one embedding call."""
        return self.score_texts([d.text for d in docs])

    def split(
        self, docs: list[Doc], scores: ScoredBatch
    ) -> Iterator[tuple[list[Doc], ScoredBatch]]:
        """A scored sort buffer in pieces of ``batch_size`` (a parquet row group in the job)."""
        for i in range(0, len(docs), self.batch_size):
            yield docs[i : i + self.batch_size], scores.rows(i, i + self.batch_size)

    def annotate(self, docs: list[Doc], scores: ScoredBatch) -> list[Doc]:
        """Set ``score_``, ``topk_``, ``cos_`` (and the extras') ``<task>`` keys on every
        document."""
        # names and Python floats once per batch, not per document and task
        cols: list[tuple[str, list[float]]] = []
        for task in self.indexes:
            cols.append((score_name(SCORE, task), scores.ranking(task).tolist()))
            cols.append((score_name(TOPK, task), scores.topk[task].tolist()))
            cols.append((score_name(COS, task), scores.max[task].tolist()))
            cols += [
                (score_name(c, task), d[task].tolist())
                for c, d in scores.extra.items()
                if task in d
            ]
        for i, doc in enumerate(docs):
            for key, vals in cols:
                doc.metadata[key] = vals[i]
        return docs


def load_scorer(
    index_dirs: list[str],
    k: int = 10,
    batch_size: int = 256,
    device: str | None = None,
    embed_batch_size: int | None = None,
    sort_buffer: int = 1024,
) -> SimilarityScorer:
    """The scorer of built ``indexes/<task>`` folders: their indexes, sparse indexes and heads,
    and the embedder of their model (loaded here: call it in the worker that scores)."""
    from retriever.embed import load_embedder
    from retriever.index import load_indexes
    from retriever.index.hybrid import load_extras

    indexes = load_indexes(index_dirs)
    extras = {gi.task: load_extras(d) for gi, d in zip(indexes.values(), index_dirs, strict=True)}
    model = next(iter(indexes.values())).model
    kw = {"batch_size": embed_batch_size} if embed_batch_size is not None else {}
    emb = load_embedder(model, device=device, **kw)
    return SimilarityScorer(
        indexes, emb, k=k, batch_size=batch_size, sort_buffer=sort_buffer, extras=extras
    )
