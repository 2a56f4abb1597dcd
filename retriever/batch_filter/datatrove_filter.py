"""The retriever filter as a datatrove ``BaseFilter``, to drop into your own datatrove pipelines.

Example:
    >>> from datatrove.executor import LocalPipelineExecutor
    >>> from datatrove.pipeline.readers import JsonlReader
    >>> from datatrove.pipeline.writers import JsonlWriter
    >>> from retriever.batch_filter.datatrove_filter import FastTextTaskFilter
    >>> LocalPipelineExecutor([
    ...     JsonlReader("corpus/"),
    ...     FastTextTaskFilter({"function-calling": "indexes/function-calling/filter.bin"}, 0.5),
    ...     JsonlWriter("pool/"),
    ... ], tasks=8).run()

Each document gets ``metadata["prob_<task>"]`` for every task; it is kept when its probability
passes the threshold of at least one task (``keep="any"``) or of every task (``keep="all"``).
Documents fastText cannot read are dropped with reason ``undecodable``.
"""

from __future__ import annotations

from datatrove.data import Document
from datatrove.pipeline.filters.base_filter import BaseFilter

from retriever.batch_filter.scorer import FastTextScorer
from retriever.errors import ConfigError
from retriever.names import PROB, score_name


class FastTextTaskFilter(BaseFilter):
    """datatrove filter: keep documents whose P(positive) passes a task's threshold.

    Args:
        models: task -> fastText model path (trained by ``retriever distill``).
        thresholds: one probability for every task, or task -> probability.
        keep: ``"any"`` (default) or ``"all"`` tasks must pass.
        batch_size: documents per fastText call (datatrove's ``filter_batch``).
        max_chars: score only the first characters (``0``: whole document).
        exclusion_writer: datatrove writer for the dropped documents.
    """

    name = "🎯 retriever fastText"
    _requires_dependencies = [("fasttext", "fasttext-numpy2-wheel")]

    def __init__(
        self,
        models: dict[str, str],
        thresholds: float | dict[str, float] = 0.5,
        keep: str = "any",
        batch_size: int = 512,
        max_chars: int = 0,
        exclusion_writer=None,
    ):
        super().__init__(exclusion_writer, batch_size=batch_size)
        if keep not in ("any", "all"):
            raise ConfigError(f"keep must be 'any' or 'all', got {keep!r}")
        if isinstance(thresholds, dict):
            if set(thresholds) != set(models):
                raise ConfigError(
                    f"thresholds {sorted(thresholds)} must cover the tasks {sorted(models)}"
                )
            self.thresholds = dict(thresholds)
        else:
            self.thresholds = {t: float(thresholds) for t in models}
        self.keep = keep
        self.scorer = FastTextScorer(models, max_chars=max_chars, batch_size=batch_size)

    def filter_batch(self, batch: list[Document]) -> list[bool | tuple[bool, str]]:
        sb = self.scorer.score_batch(batch)  # the step's batch method: a Document has a text
        tasks = self.scorer.tasks
        out: list[bool | tuple[bool, str]] = []
        for k, doc in enumerate(batch):
            if sb.bad[k]:
                out.append((False, "undecodable"))
                continue
            passed = []
            for j, t in enumerate(tasks):
                p = float(sb.probs[k, j])
                doc.metadata[score_name(PROB, t)] = p
                passed.append(p >= self.thresholds[t])
            ok = any(passed) if self.keep == "any" else all(passed)
            out.append(True if ok else (False, "below_threshold"))
        return out

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        return self.filter_batch([doc])[0]
