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
from pathlib import Path

import numpy as np

from retriever._deps import require
from retriever.batch_filter.config import FilterPlan
from retriever.batch_filter.scorer import FastTextScorer
from retriever.batch_filter.writers import PoolWriter, open_pool_writer
from retriever.corpus import AtomicWriter, RejectWriter, shard_name
from retriever.data import Doc, Rejected
from retriever.stats import Stats
from retriever.tokens import TokenCounter

REJECTED_DIR = "rejected"
SCORES_DIR = "scores"


class FilterShard:
    """Callable ``(shard_path, rank) -> Stats`` for :func:`retriever.executors.run_sharded`."""

    __name__ = "FilterShard"

    def __init__(self, plan: FilterPlan):
        self.settings = plan

    def __call__(self, shard: str, rank: int = 0) -> Stats:
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
        try:
            for t in s.tasks:
                writers[t] = open_pool_writer(c.fmt, out / t / name)
            batch: list[Doc] = []
            for rec in reader.read(shard):
                stats.inc("seen")
                if isinstance(rec, Rejected):
                    rejects.add(rec)
                    stats.inc(f"rejected/{rec.reason}")
                    continue
                batch.append(rec)
                if len(batch) >= c.batch_size:
                    self._batch(batch, scorer, counter, thr, writers, rejects, stats, name)
                    batch = []
            if batch:
                self._batch(batch, scorer, counter, thr, writers, rejects, stats, name)
            rejects.close()
            if c.write_scores:
                self._write_scores(out / SCORES_DIR / f"{name}.parquet")
            for w in writers.values():
                w.commit()
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
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
            else np.zeros((0, len(self.settings.tasks)))
        )
        for j, t in enumerate(self.settings.tasks):
            cols[f"prob_{t}"] = pa.array(probs[:, j], pa.float32())
        with AtomicWriter(path) as tmp:
            pq.write_table(pa.table(cols), tmp)
        self._scores = []

    def _batch(self, docs, scorer, counter, thr, writers, rejects, stats, name) -> None:
        tasks = self.settings.tasks
        sb = scorer.score_texts([d.text for d in docs])
        probs = sb.probs  # [n_docs, n_tasks]
        chars = np.fromiter(
            (len(d.text) for d in docs), dtype=np.int64, count=len(docs)
        )  # [n_docs]
        stats.inc("chars_in", int(chars.sum()))
        keep = probs >= thr[None, :]  # [n_docs, n_tasks]; NaN (bad) compares False
        for k in np.flatnonzero(sb.bad):
            d = docs[k]
            rejects.add(
                Rejected(name, int(d.metadata.get("row", -1)), "undecodable", d.text[:2000])
            )
        if self.settings.config.write_scores:
            ok = ~sb.bad
            rows = np.array([d.metadata.get("row", -1) for d in docs], dtype=np.int64)
            self._scores.append(
                ([d.id for d, g in zip(docs, ok, strict=True) if g], rows[ok], chars[ok], probs[ok])
            )
        n_bad = int(sb.bad.sum())
        if n_bad:
            stats.inc("rejected/undecodable", n_bad)
        any_keep = np.flatnonzero(keep.any(axis=1))
        tokens = np.zeros(len(docs), dtype=np.int64)
        if len(any_keep):
            tokens[any_keep] = counter.count_tokens([docs[k] for k in any_keep])
        for k in any_keep:
            meta = docs[k].metadata
            for j, t in enumerate(tasks):
                meta[f"prob/{t}"] = round(float(probs[k, j]), 6)
        n_ok = len(docs) - n_bad
        for j, t in enumerate(tasks):
            kept = np.flatnonzero(keep[:, j])
            w = writers[t]
            for k in kept:
                w.write(docs[k])
            stats.inc(f"kept/{t}", len(kept))
            stats.inc(f"dropped/{t}", n_ok - len(kept))
            stats.inc(f"chars_kept/{t}", int(chars[kept].sum()))
            stats.inc(f"tokens_kept/{t}", int(tokens[kept].sum()))
