"""Score a corpus shard by shard: resumable, one output per shard, memory bounded by the batch.

Per shard ``<name>`` (see :func:`retriever.corpus.shard_name`) under ``out_dir``::

    scores/<name>.parquet    id, shard, row, n_chars, score_<task>, cos_<task>, topk_<task>,
                             [sparse_<task>, sparse_topk_<task>, hybrid_<task>, head_<task>],
                             preview, vector (docs/contracts.md)
    rejected/<name>.jsonl    the records that could not be read, with their reason
    done/<name>.json         counters; written last, so its presence marks the shard complete
    failed/<name>.json       the error, when the shard could not be read at all (others go on)

A shard is reader -> :meth:`SimilarityScorer.scored <retriever.step.BatchStep.scored>` -> parquet
writer: each ``(batch, ScoredBatch)`` becomes one row group, the arrays written as columns. The
done marker's ``seen`` / ``kept`` of the documents that reach the scorer are the step's counters;
the job counts the records that never do (unsampled, rejected) and the shard's wall time.

The scores file is streamed (row group per batch) into ``*.tmp`` and renamed at the end, so a killed
run leaves no partial output under a final name; a rerun skips done shards and redoes the others.
``manifest.json`` holds the settings, checked on resume (other settings -> :class:`ResumeError`).

Sampled scoring (:class:`DocSampler`): which documents get embedded, decided per document by a
seeded hash of its id.

``keep(id)`` is ``hash(seed, id) < fraction x 2^64``: no global pass, no shared state, so every
shard and every worker agrees on its own, a rerun picks the same documents, and adding shards (or
raising the fraction) never reshuffles the documents already chosen (a larger fraction keeps a
superset). The sample is uniform over documents because the hash is (blake2b, 64 bits).

``[score] sample`` is a fraction in (0, 1] (a float, or ``"5%"``) or a document count (an int, or
``"2M"``): a count becomes the fraction ``count / corpus documents``, with the corpus size read from
the shards' parquet metadata or estimated from a prefix (:func:`retriever.corpus.size.corpus_size`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from retriever._deps import require
from retriever.corpus.readers import CorpusReader, ReaderConfig, open_hub_file
from retriever.corpus.sharding import (
    HUB_PREFIX,
    doc_id,
    get_shard,
    list_shards,
    shard_location,
    shard_name,
)
from retriever.data import Rejected
from retriever.errors import (
    ConfigError,
    InputError,
    ModelMismatchError,
    OutputError,
    ResumeError,
    ShardError,
)
from retriever.io import (
    WRITE_ERRNOS,
    AtomicWriter,
    RejectWriter,
    check_writable,
    read_json,
    write_json_atomic,
)
from retriever.manifest import DoneMarkers, check_or_write_manifest, shard_fingerprint
from retriever.names import COS, SCORE, TOPK, score_name
from retriever.progress import progress_bar, progress_enabled
from retriever.stats import Stats
from retriever.store import forget_ingested

log = logging.getLogger(__name__)

PREVIEW_CHARS = 300


_SCALE = 2**64
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "g": 10**9}


@dataclass(frozen=True)
class SampleSpec:
    """What the user asked for: a ``fraction`` or a ``count`` (exactly one), and the seed."""

    fraction: float | None = None
    count: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if (self.fraction is None) == (self.count is None):
            raise ConfigError("a sample is either a fraction or a document count")
        if self.fraction is not None and not 0 < self.fraction <= 1:
            raise ConfigError(f"sample fraction must be in (0, 1], got {self.fraction}")
        if self.count is not None and self.count < 1:
            raise ConfigError(f"sample count must be >= 1, got {self.count}")

    def describe(self) -> str:
        return (
            f"{self.fraction:g} of documents"
            if self.fraction is not None
            else f"{self.count:,} documents"
        )


def parse_sample(value: Any, seed: int = 0) -> SampleSpec | None:
    """``None`` -> no sampling; float in (0, 1] or ``"5%"`` -> fraction; int or ``"2M"`` -> count.

    Raises:
        ConfigError: anything else (a negative number, ``"abc"``, a float above 1).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ConfigError(f"sample must be a fraction or a document count, got {value!r}")
    if isinstance(value, int):
        return SampleSpec(count=value, seed=seed)
    if isinstance(value, float):
        if value > 1 and value.is_integer():
            return SampleSpec(count=int(value), seed=seed)
        return SampleSpec(fraction=value, seed=seed)
    if isinstance(value, str):
        v = value.strip().lower().replace("_", "").replace(",", "")
        if v.endswith("%"):
            try:
                return SampleSpec(fraction=float(v[:-1]) / 100, seed=seed)
            except ValueError:
                pass
        m = re.fullmatch(r"(\d+(?:\.\d+)?)([kmbg]?)", v)
        if m:
            num, suf = float(m.group(1)), m.group(2)
            if not suf and "." in m.group(1) and num <= 1:
                return SampleSpec(fraction=num, seed=seed)
            return SampleSpec(count=int(round(num * _SUFFIX[suf])), seed=seed)
    raise ConfigError(
        f'sample must be a fraction in (0, 1] (0.01, "1%") or a document count (2000000, "2M"), '
        f"got {value!r}"
    )


def hash_unit(doc_id: str, seed: int = 0) -> int:
    """A uniform 64-bit integer of ``(seed, doc_id)``: the same on every machine and run."""
    h = hashlib.blake2b(
        doc_id.encode("utf-8", "surrogatepass"),
        digest_size=8,
        key=seed.to_bytes(8, "little", signed=True),
    )
    return int.from_bytes(h.digest(), "little")


@dataclass(frozen=True)
class DocSampler:
    """Keeps a document when ``hash(seed, id) < fraction x 2^64`` (see module docstring).

    Attributes:
        fraction: share of documents kept, in (0, 1].
        seed: the sample's seed (the hash key; ``[run] seed`` in a run).
        requested: what the user asked for (``"2,000,000 documents"``), for the record.
        basis: how a count became the fraction (corpus size and how it was found), or ``""``.
    """

    fraction: float
    seed: int = 0
    requested: str = ""
    basis: str = ""

    def __post_init__(self) -> None:
        if not 0 < self.fraction <= 1:
            raise ConfigError(f"sample fraction must be in (0, 1], got {self.fraction}")

    @property
    def cut(self) -> int:
        return min(_SCALE, math.floor(self.fraction * _SCALE))

    def keep(self, doc_id: str) -> bool:
        return self.fraction >= 1 or hash_unit(doc_id, self.seed) < self.cut

    def settings(self) -> dict[str, Any]:
        """What a score folder's manifest records (a resume must sample the same way)."""
        return {
            "fraction": self.fraction,
            "seed": self.seed,
            "requested": self.requested,
            "basis": self.basis,
        }


def resolve_sample(
    spec: SampleSpec | None, n_docs: int | None = None, basis: str = ""
) -> DocSampler | None:
    """The sampler of ``spec``; a count needs the corpus size ``n_docs`` (exact or estimated).

    Raises:
        ConfigError: a count without a corpus size.
    """
    if spec is None:
        return None
    if spec.fraction is not None:
        return DocSampler(spec.fraction, spec.seed, spec.describe())
    if not n_docs:
        raise ConfigError("a sample count needs the corpus size; pass a fraction instead")
    frac = min(1.0, (spec.count or 0) / n_docs)
    return DocSampler(
        frac,
        spec.seed,
        spec.describe(),
        f"{spec.count:,} of ~{n_docs:,} documents ({basis or 'corpus size'}) -> fraction "
        f"{frac:.6g}",
    )


@dataclass(frozen=True)
class Unsampled:
    """``n`` records of a shard left out by the sample without being parsed."""

    n: int


@dataclass
class ScoreJob:
    """Everything needed to score shards; picklable, so executors can ship it to workers.

    Args:
        index_dirs: one gold index folder per task (``indexes/<task>``).
        corpus: files, folders or Hub ids (``hf://org/name``) of corpus shards.
        out_dir: output folder (see module docstring).
        k: neighbours averaged by the ``topk_<task>`` score.
        batch_size: documents embedded together (memory: batch_size x ~3 KB of clipped text).
        reader: how corpus records are read (fields, detokenizer for token-id shards: ``gpt2``
            for ClimbLab).
        meta_fields: record fields copied as string columns (``cluster_id``), null when absent.
        device: cuda or cpu (default: cuda when available).
        embed_batch_size: texts per forward pass inside the embedder.
        sample: embed only the documents this sampler keeps (a seeded hash of the id, see
            :class:`DocSampler`); the others are counted as ``dropped/unsampled`` and
            never detokenized or embedded. ``None``: every document.
    """

    index_dirs: list[str]
    corpus: list[str]
    out_dir: str
    k: int = 10
    batch_size: int = 256
    reader: ReaderConfig = ReaderConfig()
    meta_fields: tuple[str, ...] = ("cluster_id",)
    device: str | None = None
    embed_batch_size: int = 64
    sample: DocSampler | None = None
    _scorer: Any = field(default=None, repr=False, compare=False)
    _bar: Any = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_scorer"] = None  # models are loaded again in each worker
        d["_bar"] = None
        return d

    # -- set-up -----------------------------------------------------------------------------------
    @property
    def out(self) -> Path:
        return Path(self.out_dir)

    def shards(self) -> list[str]:
        return list_shards(self.corpus)

    def prepare(self) -> list[str]:
        """Check the indexes and the output folder, record settings and shards; returns the
        shards."""
        from retriever.index import GoldIndex

        shards = self.shards()
        indexes = [GoldIndex.load(p) for p in self.index_dirs]
        tasks = [gi.task for gi in indexes]
        if len(set(tasks)) != len(tasks):
            raise InputError(f"two --index folders hold the same task ({tasks})")
        models = {(gi.model, gi.dim) for gi in indexes}
        if len(models) > 1:
            raise ModelMismatchError(
                f"the indexes were built with different embedding models {sorted(models)}; a "
                "document is embedded once for all tasks, so rebuild them with one --model"
            )
        model, dim = models.pop()
        check_writable(self.out)
        check_or_write_manifest(self.out, self.settings(indexes))
        known = recorded_shards(self.out, resolve=False)
        names = {shard_name(s) for s in shards}
        _check_recorded_names(self.out, known, shards)
        gone = sorted(set(known) - names)
        if gone:
            # another corpus (or shards removed): its results would be merged into this one's
            raise ResumeError(
                f"{self.out} holds scores of {len(gone)} shard(s) not in this corpus (e.g. "
                f"{known[gone[0]]}); use a new --out for another corpus, or delete this folder"
            )
        for s in shards:
            name, where = shard_name(s), shard_location(s)
            # an older folder's relative record is the same shard when it is from here
            if name in known and shard_location(known[name]) != where:
                raise InputError(
                    f"two shards map to the output name {name!r}: {known[name]} and {s}; rename one"
                )
            known[name] = where
        write_json_atomic(self.out / SHARDS_FILE, known)
        log.info("scoring %d shards for tasks %s with %s (dim %d)", len(shards), tasks, model, dim)
        return shards

    def settings(self, indexes) -> dict[str, Any]:
        return {
            "model": indexes[0].model,
            "dim": indexes[0].dim,
            "tasks": {
                gi.task: {"gold_fingerprint": gi.manifest["gold_fingerprint"], "n": gi.ntotal}
                for gi in indexes
            },
            "k": self.k,
            # the reader's options flat, as before they were nested (old folders still resume)
            "text_field": self.reader.text_field,
            "id_field": self.reader.id_field,
            "tokens_field": self.reader.tokens_field,
            "detokenizer": self.reader.detokenizer,
            **(
                {"keep_fields": list(self.reader.keep_fields)}
                if self.reader.keep_fields is not None
                else {}
            ),
            "meta_fields": list(self.meta_fields),
            "sample": self.sample.settings() if self.sample is not None else None,
            **self._extras_settings(indexes),
        }

    def _extras_settings(self, indexes) -> dict[str, Any]:
        """The sparse / head parts of the index folders (absent when none has any: old folders
        resume as before)."""
        from retriever.index.hybrid import load_extras

        extras = {gi.task: load_extras(d) for gi, d in zip(indexes, self.index_dirs, strict=True)}
        found = {t: e.fingerprint() for t, e in extras.items() if not e.empty}
        return {"extras": found} if found else {}

    def corpus_reader(self) -> CorpusReader:
        return self.reader.reader()

    def scorer(self):
        if self._scorer is None:
            from retriever.score.scorer import load_scorer

            self._scorer = load_scorer(
                self.index_dirs, self.k, self.batch_size, self.device, self.embed_batch_size
            )
        return self._scorer

    # -- work -------------------------------------------------------------------------------------
    @property
    def done(self) -> DoneMarkers:
        return DoneMarkers(self.out / "done")

    def is_done(self, shard: str) -> bool:
        return self.done.is_done(shard)

    def failed_path(self, shard: str) -> Path:
        """Where the error of a shard that could not be scored is recorded."""
        return self.out / "failed" / f"{shard_name(shard)}.json"

    def score_shard(self, shard: str, rank: int = 0) -> Stats:
        """Score one shard into its output files (or return its counters when already done).

        A done marker counts only while the shard is the file it was made from (size, mtime,
        parquet row count): a replaced shard is scored again.
        """
        name = shard_name(shard)
        failed = self.failed_path(shard)
        marker = self.done.read(shard)
        if marker is not None:
            failed.unlink(missing_ok=True)  # a failure an earlier (or concurrent) run recorded
            return Stats.from_dict(marker)
        self.done.clear(shard)  # stale: the shard changed since it was scored
        # new scores to come: the store takes this shard again once they are written
        forget_ingested(self.out, name)
        fingerprint = shard_fingerprint(shard)
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        scorer = self.scorer()
        t0 = time.perf_counter()
        stats = Stats()
        rejects = RejectWriter(self.out / "rejected" / f"{name}.jsonl")
        schema = self._schema(pa, scorer)

        reader = self.corpus_reader()
        sampler = self.sample

        def docs():
            # counts what never reaches the scorer; the scorer counts what it scores
            for row, rec in self._records(reader, shard, name):
                if isinstance(rec, Unsampled):  # parquet rows skipped before parsing, in bulk
                    stats.inc("seen", rec.n)
                    stats.inc("dropped/unsampled", rec.n)
                    continue
                if sampler is not None and isinstance(rec, dict):
                    # decided on the raw record, before any detokenizing: an unsampled document
                    # costs one hash
                    if not sampler.keep(doc_id(name, row, rec.get(self.reader.id_field))):
                        stats.inc("seen")
                        stats.inc("dropped/unsampled")
                        if self._bar is not None:
                            self._bar.update(1)  # the bar counts records read (its total)
                        continue
                if not isinstance(rec, Rejected):
                    rec = reader.to_doc(shard, row, rec, name)  # the name once per shard
                if isinstance(rec, Rejected):
                    stats.inc("seen")
                    stats.inc(f"rejected/{rec.reason}")
                    rejects.add(rec)
                    if self._bar is not None:
                        self._bar.update(1)
                    continue
                yield rec

        scorer.stats = Stats()  # the step's counters of this shard: seen and kept come from them
        with AtomicWriter(self.out / "scores" / f"{name}.parquet") as tmp:
            writer = pq.ParquetWriter(tmp, schema)
            try:
                # reader -> step -> writer: the scorer's arrays go to parquet as they are
                for batch, sc in scorer.scored(docs()):
                    writer.write_table(self._table(pa, schema, batch, sc, name))
                    stats.inc("chars", sum(len(d.text) for d in batch))
                    if self._bar is not None:
                        self._bar.update(len(batch))
            finally:
                writer.close()
        for key in ("seen", "kept"):
            if scorer.stats.counts[key]:  # as before: no zero counter in the marker
                stats.inc(key, scorer.stats.counts[key])
        rejects.close()
        stats.seconds = time.perf_counter() - t0
        self.done.write(
            shard, {"shard": shard, "name": name, "rank": rank, **stats.to_dict()}, fingerprint
        )
        failed.unlink(missing_ok=True)
        return stats

    def _records(self, reader: CorpusReader, shard: str, name: str):
        """``(row, record)`` of ``shard``; with a sample, the rows of a parquet shard outside it are
        skipped before they are turned into Python objects (``Unsampled(n)`` stands for them).

        Deciding needs only the id: the id column when the shard has one, else ``<name>:<row>``.
        The kept rows are exactly those :meth:`CorpusReader.iter_records` would give, same rows.
        """
        s = self.sample
        if s is None or not shard.endswith(".parquet"):
            yield from reader.iter_records(shard)
            return
        pq = require("pyarrow.parquet")
        from retriever.corpus.sharding import is_hub_file

        if is_hub_file(shard):
            src = open_hub_file(shard)
        elif Path(shard).is_file():
            src = open(shard, "rb")  # noqa: SIM115 - closed below
        else:
            raise InputError(f"shard {shard} does not exist")
        with src:
            pf = pq.ParquetFile(src)
            names = set(pf.schema_arrow.names)
            if (
                self.reader.text_field not in names
                and (self.reader.tokens_field or "") not in names
            ):
                raise InputError(
                    f"{shard} has no {self.reader.text_field!r} column (columns: {sorted(names)}); "
                    "pass --text-field NAME (or --tokens-field for token ids)"
                )
            has_id = self.reader.id_field in names
            row = 0
            for batch in pf.iter_batches(batch_size=reader.batch_size):
                n = batch.num_rows
                ids = batch.column(self.reader.id_field).to_pylist() if has_id else [None] * n
                keep = [i for i in range(n) if s.keep(doc_id(name, row + i, ids[i]))]
                if len(keep) < n:
                    yield row, Unsampled(n - len(keep))
                if keep:
                    for i, rec in zip(keep, batch.take(keep).to_pylist(), strict=True):
                        yield row + i, rec
                row += n

    def run(self, rank: int = 0, world_size: int = 1, progress: bool | None = False) -> Stats:
        """Score this rank's shards (``get_shard``); a shard that fails is recorded and skipped."""
        total = Stats()
        mine = get_shard(self.shards(), rank, world_size)
        bar = None
        if progress_enabled(progress):
            todo = [s for s in mine if not self.is_done(s)]
            bar = progress_bar(total=count_rows(todo), desc="score", unit="doc", progress=progress)
            self._bar = bar
        for shard in mine:
            try:
                total += self.score_shard(shard, rank)
            except OSError as e:
                if e.errno in WRITE_ERRNOS:  # full disk, read-only: every shard would fail
                    raise OutputError(
                        f"cannot write scores for {shard} under {self.out} ({e.strerror}); "
                        "free space (or fix permissions) and rerun: finished shards are kept"
                    ) from e
                self._record_failure(shard, e)
                total.inc("failed_shards")
            except ShardError as e:  # this shard is unreadable (truncated, no text column)
                self._record_failure(shard, e)
                total.inc("failed_shards")
            except (InputError, ModelMismatchError):
                raise  # a settings problem: every shard would fail the same way
            except Exception as e:  # one unreadable shard must not stop the others
                self._record_failure(shard, e)
                total.inc("failed_shards")
        if bar is not None:
            bar.close()
            self._bar = None
        return total

    def _record_failure(self, shard: str, e: BaseException) -> None:
        log.error("shard %s failed: %s", shard, e)
        write_json_atomic(
            self.failed_path(shard),
            {
                "shard": shard,
                "error": f"{type(e).__name__}: {e}",
                "traceback": traceback.format_exc(),
            },
        )

    # -- output rows ------------------------------------------------------------------------------
    def _schema(self, pa, scorer):
        cols = [
            ("id", pa.string()),
            ("shard", pa.string()),
            ("row", pa.int64()),
            ("n_chars", pa.int64()),
        ]
        for f in self.meta_fields:
            cols.append((f, pa.string()))
        extra = scorer.columns()
        for t in scorer.tasks:
            cols += [(score_name(k, t), pa.float32()) for k in (SCORE, COS, TOPK)]
            cols += [(score_name(c, t), pa.float32()) for c in extra]
        cols += [("preview", pa.string()), ("vector", pa.list_(pa.float32(), scorer.embedder.dim))]
        return pa.schema(cols)

    def _table(self, pa, schema, batch, sc, name):
        cols: dict[str, Any] = {
            "id": [d.id for d in batch],
            "shard": [name] * len(batch),
            "row": [d.metadata.get("row", -1) for d in batch],
            "n_chars": [len(d.text) for d in batch],
        }
        for f in self.meta_fields:
            cols[f] = [None if d.metadata.get(f) is None else str(d.metadata[f]) for d in batch]
        for t in sc.max:
            cols[score_name(SCORE, t)] = sc.ranking(t)
            cols[score_name(COS, t)] = sc.max[t]
            cols[score_name(TOPK, t)] = sc.topk[t]
        from retriever.index.hybrid import EXTRA_COLUMNS

        for c in EXTRA_COLUMNS:  # extra columns of tasks without that part stay null
            for t in sc.max:
                if score_name(c, t) in schema.names:
                    cols[score_name(c, t)] = sc.extra.get(c, {}).get(t, [None] * len(batch))
        cols["preview"] = [d.text[:PREVIEW_CHARS] for d in batch]
        dim = sc.vectors.shape[1]
        cols["vector"] = pa.FixedSizeListArray.from_arrays(pa.array(sc.vectors.reshape(-1)), dim)
        return pa.table(cols, schema=schema)


def count_rows(shards: list[str], max_bytes: int = 2 << 30) -> int | None:
    """Records in ``shards`` when cheap to know (parquet metadata, uncompressed jsonl up to
    ``max_bytes`` in all), else ``None``: the total of the progress bar, for its ETA."""
    n, jsonl_bytes = 0, 0
    for s in shards:
        p = Path(s)
        if not p.is_file():
            return None
        if p.suffix == ".parquet":
            n += require("pyarrow.parquet").ParquetFile(p).metadata.num_rows
        elif p.suffix == ".jsonl":
            jsonl_bytes += p.stat().st_size
            if jsonl_bytes > max_bytes:
                return None
            with open(p, "rb") as fh:
                n += sum(chunk.count(b"\n") for chunk in iter(lambda: fh.read(1 << 20), b""))
        else:
            return None
    return n


SHARDS_FILE = "shards.json"  # shard name -> where the shard is, for every shard scored into OUT


def _check_recorded_names(out: Path, known: dict[str, str], shards: list[str]) -> None:
    """Refuse a folder that holds a shard of this corpus under another name: one an older version
    took from the path as given (``a.jsonl`` scored from inside its folder was ``a``).

    Raises:
        ResumeError: naming the shard, its recorded name and its name now.
    """
    now = {shard_location(s): shard_name(s) for s in shards}
    for old, where in known.items():
        new = now.get(shard_location(where))
        if new is not None and new != old:
            raise ResumeError(
                f"{out} holds {where} as shard {old!r}, a name taken from the path as it was "
                f"given; shards are now named from their absolute path ({new!r}), so its scores "
                "and ids do not carry over: score into a new --out"
            )


def recorded_shards(out_dir: str | os.PathLike, resolve: bool = True) -> dict[str, str]:
    """``shards.json`` of a score folder (empty when absent).

    Folders scored before paths were recorded absolute hold paths relative to the folder
    ``retriever score`` ran in; with ``resolve`` they are kept while they exist from here.

    Raises:
        InputError: with ``resolve``, such a relative path does not exist from the current folder.
    """
    p = Path(out_dir) / SHARDS_FILE
    known: dict[str, str] = read_json(p) if p.exists() else {}
    if resolve:
        for shard in known.values():
            if not (shard.startswith(HUB_PREFIX) or os.path.isabs(shard) or os.path.exists(shard)):
                raise InputError(
                    f"{p} records shard {shard!r} relative to the folder `retriever score` ran in "
                    f"(a folder scored by an older version), and it is not found from "
                    f"{os.getcwd()}; run this command from that folder, or rerun the same "
                    "`retriever score` there once (it records absolute paths; nothing is redone)"
                )
    return known


def shard_outputs(out_dir: str | os.PathLike) -> dict[str, Path]:
    """Finished shards of a score folder: shard name -> scores parquet path."""
    out = Path(out_dir)
    return {
        p.stem: out / "scores" / f"{p.stem}.parquet" for p in sorted((out / "done").glob("*.json"))
    }
