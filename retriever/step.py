"""The stage contract: ``run(docs, rank, world_size) -> DocStream``; for a scorer also ``scored``.

The base class does what every step repeats (datatrove ``BaseFilter`` is the model): it cuts the
stream into batches of ``step_batch_size``, counts ``seen`` and ``kept`` and times each batch; a
subclass implements one batch method.

* A **scorer** implements :meth:`BatchStep.score_batch` (a batch -> its scores, as arrays) and
  :meth:`BatchStep.annotate` (write them into namespaced metadata keys). Scoring stays apart from
  writing and deciding: :meth:`BatchStep.scored` yields each batch with its scores, for a caller
  that writes the arrays as they are (the score job's parquet columns), and :meth:`BatchStep.run`
  is ``annotate(batch, score_batch(batch))`` for a caller that wants documents.
  :meth:`BatchStep.split` is the hook that cuts one scored batch into the pieces ``scored`` yields
  (the similarity scorer embeds a sort buffer in one call and yields row groups of
  ``batch_size``; the fastText scorer leaves out, through :meth:`BatchStep.reject`, the texts it
  could not read).
* Any other step implements :meth:`BatchStep.process_batch` (a batch -> the documents it passes
  on, in order) and is used through :meth:`BatchStep.run`.

A document a step leaves out goes through :meth:`BatchStep.reject` (counted as
``rejected/<reason>``, and handed to ``exclusion`` when the caller set one, like datatrove's
exclusion writer), so ``seen == kept + dropped + rejected`` (:meth:`Stats.balanced
<retriever.stats.Stats.balanced>`). Both loops count and time alike: ``seen`` the documents in,
``kept`` those passed on (by :meth:`~BatchStep.scored`: those :meth:`~BatchStep.split` yields), and
``stats.seconds`` the time spent in the batch method.

Who runs it: the score job (:class:`~retriever.score.job.ScoreJob`: reader ->
``SimilarityScorer.scored`` -> parquet writer, its ``seen`` / ``kept`` taken from the step's
counters), the filter's shard job (:class:`~retriever.batch_filter.shard.FilterShard`: reader ->
``FastTextScorer.scored`` -> the decision on the arrays -> pool writers and the probabilities'
writer), the streaming API (``SimilarityScorer(...).run(docs)``,
``FastTextScorer(...).run(docs)``), the datatrove adapters
(:class:`~retriever.score.datatrove_step.DatatroveSimilarityScorer`, whose ``run`` is this one,
and :class:`~retriever.batch_filter.datatrove_filter.FastTextTaskFilter`, whose ``filter_batch``
decides on ``FastTextScorer.score_batch`` of datatrove ``Document`` objects), the dataset scan
(:class:`~retriever.dataset.scan.ScanStep`) and the confirm matrix
(:class:`~retriever.confirm.matrix.BpbBlocks`). The executors run per-shard jobs
(``ShardFn(shard, rank) -> Stats``, see :mod:`retriever.executors`) built of a reader, these
steps and a writer; see ``docs/contracts.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

from retriever.data import Doc, DocStream
from retriever.stats import Stats

T = TypeVar("T")


def batched(docs: Iterable[Doc], size: int) -> Iterator[list[Doc]]:
    """``docs`` in lists of ``size`` (the last one shorter), in stream order."""
    batch: list[Doc] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class BatchStep:
    """Base stage: batches, counts and times; a subclass implements one batch method.

    A scorer implements :meth:`score_batch` and :meth:`annotate`; any other step
    :meth:`process_batch` (see the module docstring).

    Args:
        step_batch_size: documents per batch-method call (memory: a batch of texts and their
            scores).
    """

    name = "step"

    def __init__(self, step_batch_size: int = 256) -> None:
        self.step_batch_size = step_batch_size
        self.stats = Stats()
        # where rejected documents go (doc, reason), e.g. a shard's reject file; None: counted only
        self.exclusion: Callable[[Doc, str], None] | None = None

    def reject(self, doc: Doc, reason: str) -> None:
        """Leave ``doc`` out: count it as ``rejected/<reason>`` and hand it to ``exclusion``."""
        self.stats.inc(f"rejected/{reason}")
        if self.exclusion is not None:
            self.exclusion(doc, reason)

    # -- the subclass's method(s) -----------------------------------------------------------------
    def score_batch(self, docs: list[Doc]) -> Any:
        """The scores of ``docs``, one per document, in order (a scorer's one method)."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement score_batch() (or process_batch())"
        )

    def annotate(self, docs: list[Doc], scores: Any) -> list[Doc]:
        """Write ``scores`` (of :meth:`score_batch`) into ``docs``' metadata; return those passed
        on, in order (a document left out goes through :meth:`reject`). Default: all of them,
        unchanged."""
        return docs

    def split(self, docs: list[Doc], scores: Any) -> Iterator[tuple[list[Doc], Any]]:
        """How :meth:`scored` yields one scored batch: in pieces, in order, without the documents
        the scores say cannot be used (each left out through :meth:`reject`). Default: the batch
        as it is."""
        yield docs, scores

    def process_batch(self, docs: list[Doc]) -> list[Doc]:
        """Annotate ``docs`` and return those passed on, in order; default:
        ``annotate(docs, score_batch(docs))``."""
        return self.annotate(docs, self.score_batch(docs))

    # -- the loops --------------------------------------------------------------------------------
    def _timed(
        self, docs: Iterable[Doc], fn: Callable[[list[Doc]], T]
    ) -> Iterator[tuple[list[Doc], T]]:
        """``(batch, fn(batch))`` per batch of ``step_batch_size``; ``fn``'s time and the batch
        counted as ``seen``."""
        for batch in batched(docs, self.step_batch_size):
            t0 = time.perf_counter()
            out = fn(batch)
            self.stats.seconds += time.perf_counter() - t0
            self.stats.inc("seen", len(batch))
            yield batch, out

    def scored(self, docs: Iterable[Doc]) -> Iterator[tuple[list[Doc], Any]]:
        """Every document of ``docs`` with its scores: ``(batch, score_batch(batch))`` pieces
        cut by :meth:`split`, in stream order; those it yields counted as ``kept`` (all of them
        unless :meth:`split` rejects some)."""
        for batch, scores in self._timed(docs, self.score_batch):
            for piece, piece_scores in self.split(batch, scores):
                self.stats.inc("kept", len(piece))
                yield piece, piece_scores

    def run(self, docs: DocStream, rank: int = 0, world_size: int = 1) -> DocStream:
        """Every document of ``docs`` through :meth:`process_batch`, ``step_batch_size`` at a
        time."""
        for _, out in self._timed(docs, self.process_batch):
            self.stats.inc("kept", len(out))
            yield from out

    def __call__(self, docs: DocStream, rank: int = 0, world_size: int = 1) -> DocStream:
        return self.run(docs, rank, world_size)
