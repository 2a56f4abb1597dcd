"""The scan of ``build-dataset``: every pool file read once into a small index.

One row per usable document (pool row, id and text hashes, token count, score, cluster, source
shard), cached as parquet under the scan cache and keyed by the file's fingerprint, the token
counter, the score keys, the decontamination files and a corpus pool's reader options, so a second
build over the same pools (another mixture, another budget) skips reading and tokenizing::

    <cache>/<pool>/<shard_name>-<fp>.parquet          the index (SCAN_SCHEMA)
    <cache>/<pool>/<shard_name>-<fp>.rejected.jsonl   records that are not documents
    <cache>/<pool>/<shard_name>-<fp>.json             counters; written last: the entry is complete
"""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from retriever.corpus.readers import ReaderConfig
from retriever.corpus.sharding import shard_name
from retriever.data import Doc, Rejected
from retriever.dataset.mixture import domain_key
from retriever.dataset.pools import pool_shard_name, read_pool_shard, reader_changes
from retriever.dataset.select import Candidates, id_key, text_key
from retriever.domains.assign import cluster_domain
from retriever.errors import InputError
from retriever.io import AtomicWriter, RejectWriter, disk_guard, read_json, write_json_atomic
from retriever.manifest import file_fingerprint, fingerprint
from retriever.names import first_score, score_spellings
from retriever.progress import progress_bar
from retriever.stats import Stats
from retriever.step import BatchStep
from retriever.tokens import TokenCounter

SCAN_VERSION = 1
SCAN_BATCH = 256  # documents tokenized at a time (memory: 256 x mean document size)

DOMAIN = "domain"  # the column PoolScan.with_domains adds
SCAN_SCHEMA = pa.schema(
    [
        ("row", pa.int64()),
        ("id", pa.string()),
        ("id_hash", pa.uint64()),
        ("text_hash", pa.uint64()),
        ("n_tokens", pa.int64()),
        ("score", pa.float64()),
        ("cluster", pa.string()),
        ("source", pa.string()),
    ]
)


@dataclass
class PoolScan:
    """The scan index of one pool: one table row per document, plus counters."""

    table: pa.Table  # SCAN_SCHEMA + "file" (int32 index into files) [+ "domain": with_domains]
    files: list[str]
    stats: Stats
    methods: Counter

    def with_domains(self, domain_of: dict[str, str] | None = None) -> PoolScan:
        """This scan with each row's domain in a ``domain`` column (``""``: none), looked up once:
        ``domain_of[id]`` (id -> domain, e.g. the ``retriever domains`` output) when given, else
        the record's ``cluster_id`` (:func:`~retriever.domains.assign.cluster_domain`).

        A record without an id is ``<shard>:<row>`` in every stage (a link to a corpus shard is
        named by its target, :func:`~retriever.dataset.pools.pool_shard_name`), so the ids the
        domains were assigned to are the pool's ids.
        """
        t = self.table
        if domain_of is None:
            names = t.column("cluster")
        else:
            ids = t.column("id").to_pylist()
            names = pa.chunked_array([pa.array([domain_of.get(i) or "" for i in ids], pa.string())])
        at = t.schema.get_field_index(DOMAIN)
        t = t.append_column(DOMAIN, names) if at < 0 else t.set_column(at, DOMAIN, names)
        return replace(self, table=t)

    def domains(self) -> pa.Array:
        """Each row's domain (``""``: none): the ``domain`` column :meth:`with_domains` adds, else
        the record's ``cluster_id``."""
        t = self.table
        if not t.num_rows:
            return pa.array([], pa.string())
        return t.column(DOMAIN if DOMAIN in t.column_names else "cluster").combine_chunks()

    def domain_keys(self) -> tuple[list[str], np.ndarray]:
        """The mixture keys of the rows' domains (``domain/<d>``,
        :func:`~retriever.dataset.mixture.domain_key`): the distinct keys, in order of first
        appearance, and each row's index into them (``[n]`` int64)."""
        enc = pc.dictionary_encode(self.domains())
        at: dict[str, int] = {}  # "" and "none" are one key: domain/none
        remap = np.array(
            [at.setdefault(domain_key(d), len(at)) for d in enc.dictionary.to_pylist()],
            dtype=np.int64,
        )
        return list(at), remap[enc.indices.to_numpy(zero_copy_only=False)]

    def candidates(self) -> Candidates:
        """The pool's candidates; ``domain`` codes from :meth:`domains`."""
        t = self.table
        codes = pc.dictionary_encode(self.domains()).indices.to_numpy(zero_copy_only=False)
        return Candidates(
            n_tokens=t.column("n_tokens").to_numpy(),
            score=t.column("score").to_numpy(zero_copy_only=False).astype(np.float64),
            id_hash=t.column("id_hash").to_numpy(),
            text_hash=t.column("text_hash").to_numpy(),
            domain=codes.astype(np.int64),
        )

    @property
    def tokens(self) -> int:
        return int(pc.sum(self.table.column("n_tokens")).as_py() or 0)


def contamination_check(files: dict[str, str]) -> tuple[Any, dict]:
    """The n-gram check of the evaluation ``files`` (``{task: path}``) and what a manifest and the
    cache key record of it (``n`` and each file's full fingerprint).

    Raises:
        InputError: a file does not exist.
    """
    from retriever.evaluation.decontam import N, fingerprint_files

    for task, path in files.items():
        if not Path(path).is_file():
            raise InputError(f"decontaminate: evaluation file for {task!r} ({path}) does not exist")
    spec = {
        "n": N,
        "files": {k: [v, file_fingerprint(v, full=True)] for k, v in sorted(files.items())},
    }
    return fingerprint_files(files), spec


@dataclass
class PoolScanner:
    """Scans pool files into :class:`PoolScan` indexes, through the cache.

    Args:
        counter: the token counter (its ``spec`` keys the cache).
        score_keys: metadata keys tried in order for a document's score; ``{pool}`` is replaced
            by the pool name (each found under its legacy spelling too,
            :func:`retriever.names.score_value`).
        contamination: the evaluation sets' n-gram check (``contaminated(text)``), or ``None``.
        contamination_spec: what the manifest records of it (keys the cache).
        workers: processes scanning files in parallel.
        progress: tqdm bars (``None``: only on a terminal).
        scan_batch: documents tokenized at a time (:class:`ScanStep`; no effect on the index).
    """

    counter: TokenCounter
    score_keys: tuple[str, ...]
    contamination: Any = None
    contamination_spec: dict | None = None
    workers: int = 1
    progress: bool | None = None
    scan_batch: int = SCAN_BATCH

    def scan(
        self, pool: str, files: list[str], cache: Path, reader: ReaderConfig | None = None
    ) -> PoolScan:
        """Scan index of one pool, from the cache where each file's entry is up to date.

        Files not in the cache are scanned by ``workers`` processes (one file per task).
        ``reader``: the pool is corpus files, read with these options (``None``: a stage's pool
        records; :func:`~retriever.dataset.pools.read_pool_shard`).
        """
        keys = [k.format(pool=pool) for k in self.score_keys]
        changed = reader_changes(reader)
        bases = []
        for path in files:
            fp = fingerprint(
                {
                    "file": file_fingerprint(path),
                    "counter": self.counter.spec,
                    "keys": keys,
                    "v": SCAN_VERSION,
                    # a link to a corpus shard: its id-less records are named by the target (the
                    # entries of earlier versions, named by the link, are rescanned once)
                    **({"ids": pool_shard_name(path)} if os.path.islink(path) else {}),
                    **(
                        {"decontaminate": self.contamination_spec}
                        if self.contamination_spec
                        else {}
                    ),
                    # only when set away from the defaults: the entries of earlier builds stay
                    **({"reader": changed} if changed else {}),
                }
            )
            bases.append(cache / pool / f"{shard_name(path)}-{fp}")
        todo = [(p, b) for p, b in zip(files, bases, strict=True) if not done_marker(b).exists()]
        with disk_guard(str(cache / pool)):
            if self.workers > 1 and len(todo) > 1:
                from concurrent.futures import ProcessPoolExecutor

                # spawn: a fork would copy a loaded tokenizer's threads into the children
                ctx = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(min(self.workers, len(todo)), mp_context=ctx) as ex:
                    futs = [ex.submit(self.scan_file, p, keys, b, reader) for p, b in todo]
                    for f in progress_bar(
                        futs, desc=f"scan {pool}", unit="file", progress=self.progress
                    ):
                        f.result()
            else:
                for p, b in progress_bar(
                    todo, desc=f"scan {pool}", unit="file", progress=self.progress
                ):
                    self.scan_file(p, keys, b, reader)
        tables: list[pa.Table] = []
        stats, methods = Stats(), Counter[str]()
        for fi, base in enumerate(bases):
            info = read_json(done_marker(base))
            t = pq.read_table(base.with_name(base.name + ".parquet"))
            tables.append(t.append_column("file", pa.array(np.full(len(t), fi, dtype=np.int32))))
            stats += Stats.from_dict(info["stats"])
            methods.update(info["methods"])
        table = pa.concat_tables(tables) if tables else SCAN_SCHEMA.empty_table()
        return PoolScan(table=table, files=files, stats=stats, methods=methods)

    def scan_file(
        self, path: str, keys: list[str], base: Path, reader: ReaderConfig | None = None
    ) -> None:
        stats = Stats()
        rejects = RejectWriter(base.with_name(base.name + ".rejected.jsonl"))
        step = ScanStep(
            self.counter, keys, pool_shard_name(path), self.contamination, self.scan_batch
        )

        def docs() -> Iterator[Doc]:  # records that are not documents: counted and written out
            for rec in read_pool_shard(path, reader):
                if isinstance(rec, Rejected):
                    rejects.add(rec)
                    stats.inc("seen")
                    stats.inc(f"rejected/{rec.reason}")
                else:
                    yield rec

        for _ in step.run(docs()):
            pass
        stats += step.stats
        cols, methods = step.cols, step.methods
        stats.inc("candidates", len(cols["row"]))
        with AtomicWriter(base.with_name(base.name + ".parquet")) as tmp:
            pq.write_table(pa.table(cols, schema=SCAN_SCHEMA), tmp)
        rejects.close()
        # the .json marker goes last: its presence says the scan of this file is complete
        write_json_atomic(
            base.with_name(base.name + ".json"),
            {
                "file": path,
                "stats": stats.to_dict(),
                "methods": dict(methods),
                "rejects": rejects.counts(),
            },
        )


class ScanStep(BatchStep):
    """One pool file's documents into scan-index rows (:data:`SCAN_SCHEMA` columns in ``cols``).

    Per batch: a contaminated document is dropped (``dropped/contaminated``), the others are
    token-counted together (``methods`` counts how) and get one row each, in stream order.

    Args:
        counter: the token counter.
        keys: metadata keys tried in order for a document's score (``no_score`` counts misses).
        source: the row's ``source`` where a record's metadata has no ``shard``.
        contamination: the evaluation sets' n-gram check, or ``None``.
        step_batch_size: documents per batch.
    """

    name = "scan"

    def __init__(
        self,
        counter: TokenCounter,
        keys: list[str],
        source: str,
        contamination: Any = None,
        step_batch_size: int = SCAN_BATCH,
    ) -> None:
        super().__init__(step_batch_size)
        self.counter, self.keys, self.source = counter, keys, source
        # every spelling of every key, resolved once: a row is then plain lookups
        self.lookups = [s for k in keys for s in score_spellings(k)]
        self.contamination = contamination
        self.cols: dict[str, list] = {f.name: [] for f in SCAN_SCHEMA}
        self.methods = Counter[str]()

    def process_batch(self, docs: list[Doc]) -> list[Doc]:
        if self.contamination is not None:
            clean = [d for d in docs if not self.contamination.contaminated(d.text)]
            if len(clean) < len(docs):
                self.stats.inc("dropped/contaminated", len(docs) - len(clean))
            docs = clean
        if not docs:
            return docs
        counts, how = self.counter.count(docs)
        self.methods.update(how)
        cols = self.cols
        for d, n in zip(docs, counts, strict=True):
            score = first_score(d.metadata, self.lookups)
            if score is None:
                self.stats.inc("no_score")
            cols["row"].append(d.metadata["pool_row"])
            cols["id"].append(d.id)
            cols["id_hash"].append(id_key(d.id))
            cols["text_hash"].append(text_key(d.text))
            cols["n_tokens"].append(int(n))
            cols["score"].append(np.nan if score is None else score)
            cols["cluster"].append(cluster_domain(d.metadata.get("cluster_id")))
            cols["source"].append(str(d.metadata.get("shard", self.source)))
        return docs


def done_marker(base: Path) -> Path:
    """The marker of a finished scan file: its presence says the scan entry is complete."""
    return base.with_name(base.name + ".json")
