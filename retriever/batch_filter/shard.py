"""Filtering one shard for every task in one pass: the function each executor task runs.

``FilterShard(plan)(shard, rank) -> Stats`` is reader -> :meth:`FastTextScorer.scored
<retriever.step.BatchStep.scored>` -> decision -> writers: each batch's probabilities come as
arrays (never through document metadata), :func:`~retriever.batch_filter.thresholds.passes`
decides on them, and the writers get the documents each task keeps
(``DIR/<task>/<shard_name><suffix>``) and every scored document's probabilities
(``DIR/scores/<shard_name>.parquet``, :class:`~retriever.batch_filter.probs.ProbWriter`); rejected
records go to ``DIR/rejected/<shard_name>.jsonl``. All files go through ``*.tmp`` and are renamed
only when the whole shard is done; the executor then writes the done marker. A kill at any point
leaves either nothing or complete files that the rerun overwrites with the same content: no
duplicate, no loss.

Counters (one :class:`~retriever.stats.Stats` per shard): ``seen``, ``rejected/<reason>``,
``chars_in``, and per task ``kept/<task>``, ``dropped/<task>``, ``chars_kept/<task>``,
``tokens_kept/<task>``. For every task, ``seen == kept + dropped + rejected``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from retriever.batch_filter.config import FilterPlan
from retriever.batch_filter.probs import ProbWriter, scores_path
from retriever.batch_filter.scorer import FastTextScorer
from retriever.batch_filter.thresholds import passes
from retriever.batch_filter.writers import PoolWriter, commit_all, open_pool_writer
from retriever.corpus import RejectWriter, shard_name
from retriever.data import Doc, Rejected
from retriever.names import PROB, score_name
from retriever.stats import Stats
from retriever.thresholds import kept_probability
from retriever.tokens import TokenCounter

REJECTED_DIR = "rejected"


class FilterShard:
    """Callable ``(shard_path, rank) -> Stats`` for :func:`retriever.executors.run_sharded`."""

    __name__ = "FilterShard"

    def __init__(self, plan: FilterPlan):
        self.settings = plan

    def __call__(self, shard: str, rank: int = 0) -> Stats:
        """Reader -> :meth:`FastTextScorer.scored` -> decision -> one writer per task and the
        probabilities' writer."""
        s = self.settings
        t0 = time.perf_counter()
        stats = Stats()
        c = s.config
        scorer = FastTextScorer(s.models, max_chars=c.max_chars, batch_size=c.batch_size)
        counter = TokenCounter(c.tokenizer)
        reader = c.reader.reader()
        name = shard_name(shard)
        out = Path(s.output)
        thr = np.array([s.thresholds[t] for t in s.tasks], dtype=np.float32)  # [n_tasks]
        writers: dict[str, PoolWriter] = {}
        rejects = RejectWriter(out / REJECTED_DIR / f"{name}.jsonl")
        probs_out = ProbWriter(scores_path(out, shard), s.tasks, thr) if c.write_scores else None

        def unscorable(d: Doc, reason: str) -> None:
            rejects.add(Rejected(name, int(d.metadata.get("row", -1)), reason, d.text[:2000]))
            stats.inc(f"rejected/{reason}")

        def docs() -> Iterator[Doc]:
            for rec in reader.read(shard):
                stats.inc("seen")
                if isinstance(rec, Rejected):
                    rejects.add(rec)
                    stats.inc(f"rejected/{rec.reason}")
                    continue
                stats.inc("chars_in", len(rec.text))
                yield rec

        scorer.exclusion = unscorable
        with commit_all(writers):
            for t in s.tasks:
                writers[t] = open_pool_writer(c.format, out / t / name)
            for batch, sb in scorer.scored(docs()):  # the scorable documents, with their probs
                n_chars = np.fromiter((len(d.text) for d in batch), np.int64, len(batch))
                if probs_out is not None:
                    probs_out.add(batch, sb.probs, n_chars)
                keep = passes(sb.probs, thr)  # [n_docs, n_tasks]: the decision, on the arrays
                self._write(batch, sb.probs, keep, n_chars, counter, writers, stats)
            rejects.close()
            if probs_out is not None:
                probs_out.commit()
        stats.seconds = time.perf_counter() - t0
        return stats

    def _write(
        self,
        docs: list[Doc],
        probs: np.ndarray,
        keep: np.ndarray,
        chars: np.ndarray,
        counter: TokenCounter,
        writers: dict[str, PoolWriter],
        stats: Stats,
    ) -> None:
        """Write a decided batch: each task's kept documents, carrying their probabilities
        (rounded, :func:`~retriever.thresholds.kept_probability`), and the batch's counters.

        Args:
            docs: the batch's documents.
            probs: ``[n_docs, n_tasks]`` their probabilities.
            keep: ``[n_docs, n_tasks]`` bool, the decision.
            chars: ``[n_docs]`` their lengths in characters.
        """
        tasks = self.settings.tasks
        keys = [score_name(PROB, t) for t in tasks]
        n = len(docs)
        any_keep = np.flatnonzero(keep.any(axis=1))  # documents some task keeps
        tokens = np.zeros(n, dtype=np.int64)
        if len(any_keep):
            tokens[any_keep] = counter.count_tokens([docs[k] for k in any_keep])
        for k, row in zip(any_keep.tolist(), probs[any_keep].tolist(), strict=True):
            meta = docs[k].metadata
            for key, p in zip(keys, row, strict=True):
                meta.pop(key, None)  # a source field of that name: the probability comes last
                meta[key] = kept_probability(p)
        for j, t in enumerate(tasks):
            kept = np.flatnonzero(keep[:, j])
            w = writers[t]
            for i in kept:
                w.write(docs[i])
            stats.inc(f"kept/{t}", len(kept))
            stats.inc(f"dropped/{t}", n - len(kept))
            stats.inc(f"chars_kept/{t}", int(chars[kept].sum()))
            stats.inc(f"tokens_kept/{t}", int(tokens[kept].sum()))
