"""The stage contract: a small object with one call, ``run(docs, rank, world_size) -> DocStream``.

The base class does what every step repeats (datatrove ``BaseFilter`` is the model): it cuts the
stream into batches of ``step_batch_size``, counts ``seen`` and ``kept`` and times each batch; a
subclass implements one method, :meth:`BatchStep.process_batch`, which annotates a batch (scores
in namespaced metadata keys) and returns the documents it passes on, in order. A document it
leaves out goes through :meth:`BatchStep.reject` (counted as ``rejected/<reason>``, and handed to
``exclusion`` when the caller set one, like datatrove's exclusion writer), so
``seen == kept + dropped + rejected`` (:meth:`~retriever.stats.Stats.balanced`).

Who runs it: the streaming API (``SimilarityScorer(...).run(docs)``,
``FastTextScorer(...).run(docs)``), the datatrove adapter of the score stage
(:class:`~retriever.score.datatrove_step.DatatroveSimilarityScorer`), whose ``run`` is this one,
the filter's shard job, the dataset scan (:class:`~retriever.dataset.scan.ScanStep`) and the
confirm matrix (:class:`~retriever.confirm.matrix.BpbBlocks`).
The resumable per-shard jobs that the executors run (``ShardFn(shard, rank) -> Stats``, see
:mod:`retriever.executors`) call the same scorers' batch methods; see ``docs/contracts.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

from retriever.data import Doc, DocStream
from retriever.stats import Stats


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
    """Base stage: batches, counts and times; subclasses implement :meth:`process_batch`.

    Args:
        step_batch_size: documents per :meth:`process_batch` call (memory: a batch of texts and
            their scores).
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

    def process_batch(self, docs: list[Doc]) -> list[Doc]:
        """Annotate ``docs`` and return those passed on, in order (the subclass's one method)."""
        raise NotImplementedError(f"{type(self).__name__} must implement process_batch()")

    def run(self, docs: DocStream, rank: int = 0, world_size: int = 1) -> DocStream:
        """Every document of ``docs`` through :meth:`process_batch`, ``step_batch_size`` at a
        time."""
        for batch in batched(docs, self.step_batch_size):
            t0 = time.perf_counter()
            out = self.process_batch(batch)
            self.stats.seconds += time.perf_counter() - t0
            self.stats.inc("seen", len(batch))
            self.stats.inc("kept", len(out))
            yield from out

    def __call__(self, docs: DocStream, rank: int = 0, world_size: int = 1) -> DocStream:
        return self.run(docs, rank, world_size)
