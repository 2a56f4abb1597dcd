"""Similarity scoring as a datatrove pipeline step, for users' own datatrove pipelines.

    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from retriever.score.datatrove_step import DatatroveSimilarityScorer

    LocalPipelineExecutor([
        JsonlReader("corpus/"),
        DatatroveSimilarityScorer(["indexes/function-calling", "indexes/rag"]),
        JsonlWriter("scored/"),
    ], tasks=8).run()

Each document gets ``metadata["score_<task>"]`` and ``metadata["topk_<task>"]`` (see
:mod:`retriever.score.scorer`; names: :mod:`retriever.names`); nothing is dropped (deciding is a
later step). Models load in the worker on first use, so the step pickles small. ``retriever score
--executor local|slurm|ray`` runs the resumable per-shard job instead; this step is for composing
with other datatrove blocks.
"""

from __future__ import annotations

from typing import Any

from retriever._deps import require

_base = require("datatrove.pipeline.base")


_PipelineStep: Any = _base.PipelineStep  # a run-time base class


class DatatroveSimilarityScorer(_PipelineStep):
    """Adds the similarity of each datatrove ``Document`` to each task's gold.

    Args:
        index_dirs: ``indexes/<task>`` folders (same embedding model).
        k: neighbours averaged by ``topk_<task>``.
        batch_size: documents embedded together.
        device: ``cuda`` / ``cpu`` (``None``: CUDA when available).
    """

    name = "🎯 retriever similarity"
    type = "🔢 - SCORER"

    def __init__(
        self, index_dirs: list[str], k: int = 10, batch_size: int = 256, device: str | None = None
    ):
        super().__init__()
        self.index_dirs, self.k, self.batch_size, self.device = (
            list(index_dirs),
            k,
            batch_size,
            device,
        )
        self._scorer = None

    def __getstate__(self):
        d = dict(self.__dict__)
        d["_scorer"] = None
        return d

    def scorer(self):
        if self._scorer is None:
            from retriever.score.scorer import load_scorer

            # sort_buffer = batch_size: documents embedded together, as documented
            self._scorer = load_scorer(
                self.index_dirs, self.k, self.batch_size, self.device, sort_buffer=self.batch_size
            )
        return self._scorer

    def run(self, data, rank: int = 0, world_size: int = 1):
        """The scorer's own :meth:`~retriever.step.BatchStep.run` over datatrove ``Document``s
        (``annotate(batch, score_batch(batch))``; a ``Document`` has ``text`` and ``metadata``,
        all the scorer reads and writes)."""
        scorer = self.scorer()
        for doc in scorer.run(self._seen(data), rank, world_size):
            self.stat_update("scored")
            yield doc

    def _seen(self, data):
        for doc in data:
            self.stat_update("seen")
            yield doc
