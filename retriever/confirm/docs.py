"""The documents the confirm stage reads, and which of them are candidates for each task.

``--docs`` is either

- a **score folder** made by ``retriever score`` (``manifest.json`` + ``scores/``): the candidates
of
  a task are its top ``top_fraction`` documents by ``sim/<task>`` (or those at or above
  ``threshold``; with neither, the threshold recorded by ``retriever score`` in ``summary.json``);
  a seeded random sample of the other documents becomes the task's non-candidate negatives;
- or any **corpus** path :func:`retriever.corpus.list_shards` accepts (jsonl / parquet with ``text``
  and ``id``): every document is a candidate of every task, and the similarity is NaN.

Documents are streamed, never held in memory: :class:`DocSet` only keeps ids and small metadata, and
re-reads texts (a pass per model and one for the labels) through :meth:`DocSet.iter_docs`.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retriever._deps import require
from retriever.corpus import CorpusReader, list_shards
from retriever.data import Doc, Rejected
from retriever.errors import ConfigError, InputError
from retriever.names import SCORE, score_name
from retriever.thresholds import threshold_for_fraction


def is_score_folder(path: str | os.PathLike) -> bool:
    p = Path(path)
    return p.is_dir() and (p / "manifest.json").is_file() and (p / "scores").is_dir()


@dataclass(frozen=True)
class CandidateRule:
    """Which documents of a score folder are candidates of a task.

    Attributes:
        top_fraction: candidates: the top fraction (0-1] of documents by similarity to the task
            (``sim/<task>``).
        threshold: task -> minimum ``sim/<task>`` (wins over ``top_fraction`` for that task).
        negatives_per_positive: random non-candidates labelled negative, per candidate (0: none).
        max_random_negatives: cap on those random negatives per task.
        max_candidates: at most this many candidates per task, the top ones by similarity (ties
            broken by input order; default: no cap). The BPB stage then costs at most
            ``models x max_candidates`` document forwards per task, known before it runs.
        seed: seed of the random negatives.
    """

    top_fraction: float | None = None
    threshold: dict[str, float] = field(default_factory=dict)
    negatives_per_positive: float = 1.0
    max_random_negatives: int = 100_000
    max_candidates: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.max_candidates is not None and (
            isinstance(self.max_candidates, bool)
            or not isinstance(self.max_candidates, int)
            or self.max_candidates < 1
        ):
            raise ConfigError(
                f"max_candidates must be an integer >= 1, got {self.max_candidates!r}"
            )
        if self.top_fraction is not None and not 0 < self.top_fraction <= 1:
            raise ConfigError(f"top_fraction must be in (0, 1], got {self.top_fraction}")
        if self.negatives_per_positive < 0 or self.max_random_negatives < 0:
            raise ConfigError("negatives_per_positive and max_random_negatives must be >= 0")


@dataclass
class TaskCandidates:
    """Per task: similarity of every document, the cut, and who is candidate / random negative."""

    task: str
    similarity: np.ndarray  # [n_docs] float64, NaN for a plain corpus
    candidate: np.ndarray  # [n_docs] bool
    random_negative: np.ndarray  # [n_docs] bool, never a candidate
    cutoff: float  # similarity cut (NaN: every document is a candidate)
    rule: str  # human-readable rule, e.g. "top 10% by similarity (>= 0.4312)"


@dataclass
class DocSet:
    """Ids and positions of the input documents, plus their candidacy per task.

    Attributes:
        source: the ``--docs`` spec.
        kind: ``"scores"`` or ``"corpus"``.
        ids: ``[n_docs]`` unique document ids, in input order.
        shard, row: where each document came from.
        tasks: per task candidates (filled by :meth:`select`).
        rejected: records the reader rejected or duplicate ids (kept aside, counted).
    """

    source: list[str]
    kind: str
    ids: list[str]
    shard: list[str]
    row: list[int]
    sim: dict[str, np.ndarray]
    rejected: list[Rejected]
    score_tasks: list[str]
    reader: CorpusReader | None = None
    tasks: dict[str, TaskCandidates] = field(default_factory=dict)

    @property
    def n_docs(self) -> int:
        return len(self.ids)

    def select(self, tasks: list[str], rule: CandidateRule) -> dict[str, TaskCandidates]:
        """Mark each task's candidates and sample its random non-candidate negatives.

        Raises:
            ConfigError: a task the score folder does not know.
        """
        out: dict[str, TaskCandidates] = {}
        for task in tasks:
            if self.kind == "corpus":
                n = self.n_docs
                cand, text = np.ones(n, dtype=bool), "plain corpus, all documents"
                if rule.max_candidates is not None and n > rule.max_candidates:
                    # no similarity to rank by: a seeded random subset
                    rng = np.random.default_rng([rule.seed, _task_seed(task)])
                    cand = np.zeros(n, dtype=bool)
                    cand[rng.choice(n, size=rule.max_candidates, replace=False)] = True
                    text = f"plain corpus, a random {rule.max_candidates:,} of {n:,} documents"
                out[task] = TaskCandidates(
                    task, np.full(n, np.nan), cand, np.zeros(n, dtype=bool), math.nan, text
                )
                continue
            if task not in self.sim:
                raise ConfigError(
                    f"task {task!r} has no similarity in {self.source[0]} (its tasks: "
                    f"{self.score_tasks}); pass --tasks from that list"
                )
            sim = self.sim[task]
            cutoff, text = self._cutoff(task, sim, rule)
            cand = sim >= cutoff
            if rule.max_candidates is not None and cand.sum() > rule.max_candidates:
                # the top max_candidates by similarity; a stable sort keeps ties in input order
                top = np.argsort(-sim, kind="stable")[: rule.max_candidates]
                cand = np.zeros(self.n_docs, dtype=bool)
                cand[top] = True
                cutoff = float(sim[top[-1]])
                text += f", capped at the top {rule.max_candidates:,} (>= {cutoff:.4f})"
            rest = np.nonzero(~cand)[0]
            k = min(
                len(rest),
                rule.max_random_negatives,
                int(round(rule.negatives_per_positive * cand.sum())),
            )
            rng = np.random.default_rng([rule.seed, _task_seed(task)])
            neg = np.zeros(self.n_docs, dtype=bool)
            if k > 0:
                neg[rng.choice(rest, size=k, replace=False)] = True
            out[task] = TaskCandidates(task, sim, cand, neg, cutoff, text)
        self.tasks = out
        return out

    def _cutoff(self, task: str, sim: np.ndarray, rule: CandidateRule) -> tuple[float, str]:
        if task in rule.threshold:
            t = float(rule.threshold[task])
            return t, f"similarity >= {t:.4f} (--threshold)"
        if rule.top_fraction is not None:
            if len(sim) == 0:
                return math.inf, "no documents"
            t = threshold_for_fraction(sim, None, rule.top_fraction)
            return t, f"top {rule.top_fraction:.2%} by similarity (>= {t:.4f})"
        from retriever.score.read import candidate_thresholds

        found = candidate_thresholds(self.source[0]).get(task)
        if found is None:
            raise ConfigError(
                f"{self.source[0]} records no candidate threshold for {task!r}: pass "
                "--top-fraction or --threshold TASK=SCORE"
            )
        return float(found), f"similarity >= {float(found):.4f} (threshold of `retriever score`)"

    def wanted_ids(self) -> set[str]:
        """Ids a BPB is needed for: the union of every task's candidates."""
        keep = np.zeros(self.n_docs, dtype=bool)
        for tc in self.tasks.values():
            keep |= tc.candidate
        return {self.ids[i] for i in np.nonzero(keep)[0]}

    def iter_docs(self, ids: set[str] | None = None) -> Iterator[Doc]:
        """Stream the documents (with text) again, in input order, each id once.

        Args:
            ids: only these ids (``None``: all).
        """
        seen: set[str] = set()
        if self.kind == "scores":
            from retriever.score.read import iter_scored_docs

            stream: Iterator = iter_scored_docs(self.source[0], ids=ids)
        else:
            stream = (
                rec
                for shard in list_shards(self.source)
                for rec in (self.reader or CorpusReader()).read(shard)
            )
        for rec in stream:
            if isinstance(rec, Rejected) or rec.id in seen:
                continue
            if ids is not None and rec.id not in ids:
                continue
            seen.add(rec.id)
            yield rec


def open_docs(
    source: Sequence[str] | str | os.PathLike, reader: CorpusReader | None = None
) -> DocSet:
    """Scan ``--docs`` once: ids, positions and similarities (texts are re-read later).

    Duplicate ids keep their first occurrence; later ones become ``Rejected(reason="duplicate_id")``
    (the BPB cache and the labels are keyed by id, so a repeat would be ambiguous).

    Raises:
        InputError: the path does not exist or holds no document.
    """
    src = [str(s) for s in ([source] if isinstance(source, (str, os.PathLike)) else source)]
    if not src:
        raise InputError("--docs needs a score folder or corpus paths")
    if len(src) == 1 and is_score_folder(src[0]):
        return _open_scores(src)
    if any(is_score_folder(s) for s in src):
        raise InputError("a score folder must be the only --docs input")
    rd = reader or CorpusReader()
    ids, shard, row, rejected, seen = [], [], [], [], set()
    for sh in list_shards(src):
        for rec in rd.read(sh):
            if isinstance(rec, Rejected):
                rejected.append(rec)
                continue
            if rec.id in seen:
                rejected.append(
                    Rejected(
                        rec.metadata.get("shard", ""),
                        rec.metadata.get("row", -1),
                        "duplicate_id",
                        rec.id,
                    )
                )
                continue
            seen.add(rec.id)
            ids.append(rec.id)
            shard.append(str(rec.metadata.get("shard", "")))
            row.append(int(rec.metadata.get("row", -1)))
    if not ids:
        raise InputError(f"{src} holds no readable document ({len(rejected)} rejected)")
    return DocSet(src, "corpus", ids, shard, row, {}, rejected, [], reader=rd)


def _open_scores(src: list[str]) -> DocSet:
    from retriever.score.read import read_scores
    from retriever.score.select import score_columns

    tasks = score_columns(src[0])
    cols_in = ["id", "shard", "row"] + [score_name(SCORE, t) for t in tasks]
    pa_tbl = read_scores(src[0], columns=cols_in)
    cols = pa_tbl.to_pydict()
    ids, shard, row, rejected, keep, seen = [], [], [], [], [], set()
    for i, doc_id in enumerate(cols["id"]):
        if doc_id in seen:
            rejected.append(
                Rejected(cols["shard"][i], int(cols["row"][i]), "duplicate_id", str(doc_id))
            )
            continue
        seen.add(doc_id)
        keep.append(i)
        ids.append(str(doc_id))
        shard.append(str(cols["shard"][i]))
        row.append(int(cols["row"][i]))
    idx = np.asarray(keep, dtype=np.int64)
    sim = {t: np.asarray(cols[score_name(SCORE, t)], dtype=np.float64)[idx] for t in tasks}
    if not ids:
        raise InputError(f"{src[0]} holds no scored document")
    return DocSet(src, "scores", ids, shard, row, sim, rejected, tasks)


def _task_seed(task: str) -> int:
    return zlib.crc32(task.encode())


def rejected_table(rows: list[Rejected]):
    """Rejected records as a ``pyarrow.Table`` (shard, row, reason, raw)."""
    pa = require("pyarrow")
    return pa.table(
        {
            "shard": pa.array([r.shard for r in rows], pa.string()),
            "row": pa.array([r.row for r in rows], pa.int64()),
            "reason": pa.array([r.reason for r in rows], pa.string()),
            "raw": pa.array([r.raw for r in rows], pa.string()),
        }
    )
