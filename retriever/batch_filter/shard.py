"""Filtering one shard for every task in one pass: the function each executor task runs.

``FilterShard(plan)(shard, rank) -> Stats`` reads the shard, scores each batch under every
task's model, and writes the documents each task keeps to ``DIR/<task>/<shard_name><suffix>``
(rejected records to ``DIR/rejected/<shard_name>.jsonl``). All files go through ``*.tmp`` and
are renamed only when the whole shard is done; the executor then writes the done marker. A kill
at any point leaves either nothing or complete files that the rerun overwrites with the same
content: no duplicate, no loss.

Counters (one :class:`~retriever.stats.Stats` per shard): ``seen``, ``rejected/<reason>``,
``chars_in``, and per task ``kept/<task>``, ``dropped/<task>``, ``chars_kept/<task>``,
``tokens_kept/<task>``. For every task, ``seen == kept + dropped + rejected``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from retriever._deps import require
from retriever.batch_filter.config import FilterPlan
from retriever.batch_filter.scorer import FastTextScorer
from retriever.batch_filter.writers import PoolWriter, commit_all, open_pool_writer
from retriever.corpus import AtomicWriter, RejectWriter, shard_name
from retriever.data import Doc, Rejected
from retriever.names import PROB, score_name
from retriever.stats import Stats
from retriever.step import batched
from retriever.thresholds import kept_probability, to_float16_keeping
from retriever.tokens import TokenCounter

REJECTED_DIR = "rejected"
SCORES_DIR = "scores"


class FilterShard:
    """Callable ``(shard_path, rank) -> Stats`` for :func:`retriever.executors.run_sharded`."""

    __name__ = "FilterShard"

    def __init__(self, plan: FilterPlan):
        self.settings = plan

    def __call__(self, shard: str, rank: int = 0) -> Stats:
        """Reader -> :class:`FastTextScorer` (the step contract) -> one writer per task."""
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
        self._scores: list[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]] = []

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
            for batch in batched(scorer.run(docs()), c.batch_size):
                self._write(batch, counter, thr, writers, stats)
            rejects.close()
            if c.write_scores:
                self._write_scores(out / SCORES_DIR / f"{name}.parquet")
        stats.seconds = time.perf_counter() - t0
        return stats

    def _write_scores(self, path: Path) -> None:
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        parts = self._scores
        cols = {
            "id": pa.array([i for p in parts for i in p[0]], pa.string()),
            "row": pa.array(np.concatenate([p[1] for p in parts]) if parts else [], pa.int64()),
            "n_chars": pa.array(np.concatenate([p[2] for p in parts]) if parts else [], pa.int64()),
        }
        probs = (
            np.concatenate([p[3] for p in parts])
            if parts
            else np.zeros((0, len(self.settings.tasks)), dtype=np.float16)
        )  # [n_docs, n_tasks] float16: 2 bytes a probability
        for j, t in enumerate(self.settings.tasks):
            cols[score_name(PROB, t)] = pa.array(probs[:, j], pa.float16())
        with AtomicWriter(path) as tmp:
            pq.write_table(pa.table(cols), tmp)
        self._scores = []

    def _write(
        self, docs: list[Doc], counter: TokenCounter, thr: np.ndarray, writers, stats
    ) -> None:
        """Decide and write a batch of scored documents (``prob_<task>`` set by the scorer)."""
        tasks = self.settings.tasks
        keys = [score_name(PROB, t) for t in tasks]
        n = len(docs)
        probs = np.array(
            [[d.metadata[key] for key in keys] for d in docs], dtype=np.float32
        ).reshape(n, len(tasks))  # [n_docs, n_tasks]
        chars = np.fromiter((len(d.text) for d in docs), dtype=np.int64, count=n)  # [n_docs]
        keep = probs >= thr[None, :]  # [n_docs, n_tasks]
        if self.settings.config.write_scores:
            rows = np.array([d.metadata.get("row", -1) for d in docs], dtype=np.int64)
            self._scores.append(([d.id for d in docs], rows, chars, to_float16_keeping(probs, thr)))
        kept_any = np.asarray(keep.any(axis=1))  # [n_docs]
        any_keep = np.flatnonzero(kept_any)
        tokens = np.zeros(n, dtype=np.int64)
        if len(any_keep):
            tokens[any_keep] = counter.count_tokens([docs[k] for k in any_keep])
        for k in range(n):
            meta = docs[k].metadata
            for key in keys:  # kept documents carry their probabilities rounded
                p = meta.pop(key)
                if kept_any[k]:
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
