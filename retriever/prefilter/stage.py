"""The keyword prefilter stage: match counts per task for every document, then a cheap decision.

Scoring is kept apart from deciding: every document's counts are written (``kw_<task>`` columns of
``OUT/matches/<shard>.parquet``); the decision (``mode = "drop"``: keep a document when some task
has at least ``min_matches`` matches) only chooses which documents go to
``OUT/kept/<shard>.jsonl.gz`` (datatrove jsonl layout: ``id``, ``text``, ``metadata`` with
``kw/<task>``), which the score stage reads as its corpus. ``mode = "features"`` writes the counts
only.

Per shard, outputs are written to ``*.tmp`` and renamed, then a ``done/<shard>.json`` marker with
the shard's counters; a rerun skips done shards. ``summary.json``: docs in = kept + dropped/no_match
+ rejected, per shard and in total, and the share of documents each task's patterns match.
"""

from __future__ import annotations

import gzip
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import orjson

from retriever.corpus import CorpusReader, ReaderConfig, list_shards, shard_name
from retriever.data import Doc, DocStream, Rejected
from retriever.errors import ConfigError
from retriever.io import AtomicWriter, RejectWriter, write_json_atomic
from retriever.manifest import DoneMarkers, check_or_write_manifest, shard_fingerprint
from retriever.names import KEYWORDS, score_name
from retriever.prefilter.matcher import DEFAULT_PATTERNS, KeywordMatcher
from retriever.progress import progress_bar
from retriever.stats import Stats

MODES = ("drop", "features")


@dataclass(frozen=True)
class PrefilterConfig:
    """Settings of the keyword prefilter.

    Attributes:
        tasks: tasks to match (their patterns: ``patterns[task]``, else the task spec's
            ``patterns``, else :data:`~retriever.prefilter.matcher.DEFAULT_PATTERNS`).
        mode: ``"drop"`` keeps documents where some task reaches ``min_matches``; ``"features"``
            keeps every document and only records the counts.
        min_matches: matches a task needs for a document to pass (``drop`` mode).
        patterns: ``{task: [regex, ...]}`` overriding the defaults.
        reader: how corpus records are read (the run's ``[corpus]`` options).
    """

    tasks: tuple[str, ...] = tuple(DEFAULT_PATTERNS)
    mode: str = "features"
    min_matches: int = 1
    patterns: Mapping[str, Sequence[str]] = field(default_factory=dict)
    reader: ReaderConfig = ReaderConfig()

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"prefilter mode {self.mode!r}: use one of {', '.join(MODES)}")
        if (
            isinstance(self.min_matches, bool)
            or not isinstance(self.min_matches, int)
            or self.min_matches < 1
        ):
            raise ConfigError(
                f"prefilter min_matches must be an integer >= 1, got {self.min_matches!r}"
            )
        if not self.tasks:
            raise ConfigError("the prefilter needs at least one task")
        missing = [t for t in self.tasks if t not in self.patterns and t not in DEFAULT_PATTERNS]
        if missing:
            raise ConfigError(
                f"no prefilter patterns for task(s) {missing}: give `patterns` for them "
                f"(defaults exist for {', '.join(DEFAULT_PATTERNS)})"
            )

    def resolved_patterns(self) -> dict[str, tuple[str, ...]]:
        return {t: tuple(self.patterns.get(t, DEFAULT_PATTERNS.get(t, ()))) for t in self.tasks}


class KeywordPrefilter:
    """A stage with one call: ``run(docs)`` yields the documents with ``kw/<task>`` counts added,
    dropping those that match no task well enough in ``drop`` mode (counted in :attr:`stats`)."""

    def __init__(self, config: PrefilterConfig | None = None):
        self.config = config or PrefilterConfig()
        self.matcher = KeywordMatcher(self.config.resolved_patterns())
        self.stats = Stats()

    def score(self, text: str) -> np.ndarray:
        """``[n_tasks]`` match counts (the score; :meth:`keep` is the decision)."""
        return self.matcher.count(text)

    def keep(self, counts: np.ndarray) -> bool:
        return self.config.mode == "features" or int(counts.max()) >= self.config.min_matches

    def run(self, docs: DocStream, rank: int = 0, world_size: int = 1) -> DocStream:
        tasks = self.matcher.tasks
        for doc in docs:
            self.stats.inc("seen")
            c = self.score(doc.text)
            for t, n in zip(tasks, c, strict=True):
                doc.metadata[f"kw/{t}"] = int(n)
            if self.keep(c):
                self.stats.inc("kept")
                yield doc
            else:
                self.stats.inc("dropped/no_match")


def prefilter_corpus(
    corpus: str | Sequence[str],
    out: str | os.PathLike,
    config: PrefilterConfig | None = None,
    *,
    progress: bool | None = None,
) -> dict:
    """Run the prefilter over every shard of ``corpus`` into ``out``; returns the summary.

    Resumable: shards with a ``done/`` marker are skipped. A folder made with other settings is
    refused (:class:`~retriever.errors.ResumeError`).
    """
    config = config or PrefilterConfig()
    out = Path(out)
    shards = list_shards(list(corpus) if not isinstance(corpus, str) else [corpus])
    stage = KeywordPrefilter(config)  # compiles the patterns: a bad one fails before any write
    rd = config.reader
    settings = {
        **{k: v for k, v in asdict(config).items() if k != "reader"},
        # the reader's options flat, as before it was nested (a resumed folder keeps matching)
        "text_field": rd.text_field,
        "id_field": rd.id_field,
        **{k: v for k, v in rd.to_dict().items() if v != ReaderConfig().to_dict()[k]},
        "patterns": stage.config.resolved_patterns(),
        "tasks": list(config.tasks),
        "corpus": shards,
    }
    out.mkdir(parents=True, exist_ok=True)
    check_or_write_manifest(out, settings)
    reader = rd.reader()
    total = Stats()
    per_task = np.zeros(len(stage.matcher.tasks), dtype=np.int64)
    per_shard = {}
    markers = DoneMarkers(out / "done")
    for shard in progress_bar(shards, desc="prefilter", unit="shard", progress=progress):
        name = shard_name(shard)
        rec = markers.read(shard)
        if rec is None:
            before = shard_fingerprint(shard)
            rec = _prefilter_shard(shard, name, out, reader, config)
            markers.write(shard, rec, before)
        st = Stats.from_dict(rec["stats"])
        total += st
        per_task += np.asarray(rec["matched_per_task"], dtype=np.int64)
        per_shard[name] = st.to_dict()["counts"]
    scored = total.counts["kept"] + total.total("dropped")
    summary = {
        "docs_in": total.counts["seen"],
        "kept": total.counts["kept"],
        "dropped": {
            k.split("/", 1)[1]: v for k, v in total.counts.items() if k.startswith("dropped/")
        },
        "rejected": {
            k.split("/", 1)[1]: v for k, v in total.counts.items() if k.startswith("rejected/")
        },
        "balanced": total.balanced(),
        "kept_share": total.counts["kept"] / scored if scored else 0.0,
        "matched_share": {
            t: (int(n) / scored if scored else 0.0)
            for t, n in zip(stage.matcher.tasks, per_task, strict=True)
        },
        "mode": config.mode,
        "min_matches": config.min_matches,
        "seconds": round(total.seconds, 3),
        "docs_per_s": round(scored / total.seconds, 1) if total.seconds else None,
        "shards": per_shard,
    }
    write_json_atomic(out / "summary.json", summary)
    return summary


def _prefilter_shard(
    shard: str, name: str, out: Path, reader: CorpusReader, config: PrefilterConfig
) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    stage = KeywordPrefilter(config)
    tasks = stage.matcher.tasks
    rejects = RejectWriter(out / "rejected" / f"{name}.jsonl")
    cols: dict[str, list] = {"id": [], "shard": [], "row": [], "n_chars": [], "kept": []}
    counts: list[np.ndarray] = []
    t0 = time.perf_counter()

    def docs() -> Iterator[Doc]:
        for rec in reader.read(shard):
            if isinstance(rec, Rejected):
                stage.stats.inc("seen")
                stage.stats.inc(f"rejected/{rec.reason}")
                rejects.add(rec)
                continue
            yield rec

    kept_path = out / "kept" / f"{name}.jsonl.gz"
    with AtomicWriter(kept_path) as tmp_kept:
        with gzip.open(tmp_kept, "wb", compresslevel=3) as fk:
            for doc in docs():
                c = stage.score(doc.text)
                keep = stage.keep(c)
                stage.stats.inc("seen")
                stage.stats.inc("kept" if keep else "dropped/no_match")
                cols["id"].append(doc.id)
                cols["shard"].append(name)
                cols["row"].append(int(doc.metadata.get("row", -1)))
                cols["n_chars"].append(len(doc.text))
                cols["kept"].append(keep)
                counts.append(c)
                if keep and config.mode == "drop":
                    meta = dict(doc.metadata)
                    meta.update({f"kw/{t}": int(n) for t, n in zip(tasks, c, strict=True)})
                    fk.write(
                        orjson.dumps(
                            {"id": doc.id, "text": doc.text, "metadata": meta}, default=str
                        )
                        + b"\n"
                    )
    if config.mode == "features":
        kept_path.unlink(missing_ok=True)
    mat = np.stack(counts) if counts else np.zeros((0, len(tasks)), dtype=np.int32)
    kw = {score_name(KEYWORDS, t): mat[:, j] for j, t in enumerate(tasks)}
    table = pa.table({**cols, **kw})
    with AtomicWriter(out / "matches" / f"{name}.parquet") as tmp:
        pq.write_table(table, tmp)
    rejects.close()
    stage.stats.seconds = time.perf_counter() - t0
    return {
        "shard": shard,
        "stats": stage.stats.to_dict(),
        "matched_per_task": (mat >= config.min_matches).sum(axis=0).tolist(),
    }


def read_matches(out: str | os.PathLike):
    """The ``matches/`` parquet files of a prefilter folder as one ``pyarrow.Table``."""
    import pyarrow.parquet as pq

    files = sorted((Path(out) / "matches").glob("*.parquet"))
    if not files:
        from retriever.errors import InputError

        raise InputError(f"{out} holds no prefilter matches (run `retriever prefilter` first)")
    import pyarrow as pa

    return pa.concat_tables([pq.read_table(f) for f in files])
