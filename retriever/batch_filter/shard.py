"""Filtering one shard for every task in one pass: the function each executor task runs.

``FilterShard(settings)(shard, rank) -> Stats`` reads the shard, scores each batch under every
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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retriever._deps import require
from retriever.batch_filter.scorer import FastTextScorer
from retriever.batch_filter.writers import FORMATS, PoolWriter, open_pool_writer
from retriever.corpus import AtomicWriter, CorpusReader, RejectWriter, shard_name
from retriever.corpus.readers import Detokenizer
from retriever.data import Doc, Rejected
from retriever.errors import ConfigError
from retriever.names import check_name
from retriever.stats import Stats
from retriever.tokens import TokenCounter

REJECTED_DIR = "rejected"
SCORES_DIR = "scores"


@dataclass(frozen=True)
class FilterSettings:
    """Everything a worker needs to filter a shard (picklable, no loaded objects).

    Args:
        output: the run's output folder.
        models: task -> fastText model path.
        thresholds: task -> probability a document needs to be kept (``p >= threshold``).
        fmt: output format (:data:`~retriever.batch_filter.writers.FORMATS`).
        text_field, id_field: corpus record fields.
        tokens_field: field of token ids read with ``detokenizer`` when the text field is absent.
        keep_fields: source fields copied into metadata (``None``: every scalar field).
        tokenizer: local tokenizer for exact token counts (``None``: estimate).
        detokenizer: tokenizer (local folder or Hub id) turning token-id shards (``tokens``
            column, ``nvidia/ClimbLab``) into text; ``None``: text shards only.
        batch_size: documents per fastText call (memory: batch x mean document size).
        max_chars: score only the first ``max_chars`` characters (``0``: whole document).
        write_scores: also write every scored document's probabilities to
            ``DIR/scores/<shard_name>.parquet`` (``id``, ``row``, ``n_chars``, ``prob_<task>``), so
            a new threshold can be chosen later without scoring again.
    """

    output: str
    models: dict[str, str]
    thresholds: dict[str, float]
    fmt: str = "jsonl.gz"
    text_field: str = "text"
    id_field: str = "id"
    keep_fields: tuple[str, ...] | None = None
    tokenizer: str | None = None
    detokenizer: str | None = None
    tokens_field: str | None = "tokens"
    batch_size: int = 512
    max_chars: int = 0
    write_scores: bool = False
    tasks: list[str] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", list(self.models))
        for t in self.tasks:
            check_name(t, "task name")  # each task is a folder under the output
        if set(self.thresholds) != set(self.models):
            raise ConfigError(
                f"thresholds {sorted(self.thresholds)} != tasks {sorted(self.models)}"
            )
        if self.fmt not in FORMATS:
            raise ConfigError(
                f"unknown output format {self.fmt!r}; use one of {', '.join(FORMATS)}"
            )
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")


def make_reader(
    text_field: str,
    id_field: str,
    keep_fields: tuple[str, ...] | None,
    detokenizer: str | None,
    tokens_field: str | None = "tokens",
) -> CorpusReader:
    """The corpus reader of a filter run (token-id shards need ``detokenizer``)."""
    return CorpusReader(
        text_field=text_field,
        id_field=id_field,
        tokens_field=tokens_field,
        keep_fields=keep_fields,
        detokenizer=Detokenizer(detokenizer) if detokenizer else None,
    )


class FilterShard:
    """Callable ``(shard_path, rank) -> Stats`` for :func:`retriever.executors.run_sharded`."""

    __name__ = "FilterShard"

    def __init__(self, settings: FilterSettings):
        self.settings = settings

    def __call__(self, shard: str, rank: int = 0) -> Stats:
        s = self.settings
        t0 = time.perf_counter()
        stats = Stats()
        scorer = FastTextScorer(s.models, max_chars=s.max_chars, batch_size=s.batch_size)
        counter = TokenCounter(s.tokenizer)
        reader = make_reader(s.text_field, s.id_field, s.keep_fields, s.detokenizer, s.tokens_field)
        name = shard_name(shard)
        out = Path(s.output)
        thr = np.array([s.thresholds[t] for t in s.tasks], dtype=np.float32)  # [n_tasks]
        writers: dict[str, PoolWriter] = {}
        rejects = RejectWriter(out / REJECTED_DIR / f"{name}.jsonl")
        self._scores: list[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]] = []
        try:
            for t in s.tasks:
                writers[t] = open_pool_writer(s.fmt, out / t / name)
            batch: list[Doc] = []
            for rec in reader.read(shard):
                stats.inc("seen")
                if isinstance(rec, Rejected):
                    rejects.add(rec)
                    stats.inc(f"rejected/{rec.reason}")
                    continue
                batch.append(rec)
                if len(batch) >= s.batch_size:
                    self._batch(batch, scorer, counter, thr, writers, rejects, stats, name)
                    batch = []
            if batch:
                self._batch(batch, scorer, counter, thr, writers, rejects, stats, name)
            rejects.close()
            if s.write_scores:
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
        if self.settings.write_scores:
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
