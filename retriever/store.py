"""The corpus embedding store: a LanceDB table of every scored document's vector.

Local folder by default (``<score dir>/store``); any LanceDB URI (``s3://...``, ``db://...``) makes
it remote. One writer fills it from finished shards (:meth:`CorpusStore.ingest_shard`): the shard's
rows are deleted, then appended, so ingesting twice never duplicates, and a rescored shard replaces
its own rows only (``retriever.score.ingest_store`` keeps the per-shard markers that make a killed
ingest resumable). Once the table is large an ANN index (IVF-PQ, cosine) is built; small tables are
searched exactly.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from retriever._deps import require
from retriever.errors import InputError, ModelMismatchError, OutputError, first_line
from retriever.names import SCORE, TOPK, score_kind

log = logging.getLogger(__name__)

TABLE, META = "docs", "meta"
BASE_COLUMNS = ("id", "shard", "row", "preview", "vector")
INGEST_BATCH = 8192  # rows per append (memory: INGEST_BATCH x (dim x 4 + 300) bytes)
DELETE_CHUNK = 512  # shard names per delete (each delete scans the shard column once)


class CorpusStore:
    """Open (or create) the store at ``uri`` for embeddings of ``model`` (dimension ``dim``).

    Args:
        uri: a local folder or a LanceDB URI.
        model, dim: the embedding model; opening a store of another model raises
            :class:`ModelMismatchError`. ``None`` when only reading (taken from the store).
    """

    def __init__(self, uri: str | os.PathLike, model: str | None = None, dim: int | None = None):
        lancedb = require("lancedb")
        self.uri = str(uri)
        self.db = lancedb.connect(self.uri)
        # a table left unreadable by a failed first write (full disk, kill) is dropped: the store is
        # derived from the score parquets, so the caller re-ingests them (``repaired`` is True)
        self.repaired = False
        names = set(_table_names(self.db))
        for name in (META, TABLE):
            if name in names and not self._readable(name):
                log.warning(
                    "store %s: table %r is unreadable (an interrupted write); rebuilding it",
                    self.uri,
                    name,
                )
                self.db.drop_table(name)
                names.discard(name)
                self.repaired = True
        if META not in names and TABLE in names:  # vectors of an unknown model: start over
            self.db.drop_table(TABLE)
            names.discard(TABLE)
            self.repaired = True
        if META in names:
            meta = self.db.open_table(META).to_arrow().to_pylist()[0]
            if model is not None and (meta["model"] != model or int(meta["dim"]) != dim):
                raise ModelMismatchError(
                    f"store {self.uri} holds {meta['model']} vectors (dim {meta['dim']}), not "
                    f"{model} (dim {dim}); use another --store or the same model"
                )
            self.model, self.dim = meta["model"], int(meta["dim"])
        elif model is None:
            raise InputError(
                f"no corpus store at {self.uri}; run `retriever score ... --out DIR` first"
            )
        elif dim is None:
            raise InputError(f"a new store at {self.uri} needs the embedding dimension")
        else:
            self.model, self.dim = model, int(dim)
            self.db.create_table(META, data=[{"model": model, "dim": self.dim}])
        self._table = self.db.open_table(TABLE) if TABLE in names else None
        self._ann: bool | None = None  # has_ann_index(), looked up once (a query asks each time)

    def _readable(self, name: str) -> bool:
        try:
            t = self.db.open_table(name)
            if name == META:
                return len(t.to_arrow().to_pylist()) == 1
            t.count_rows()
            return True
        except Exception:  # noqa: BLE001 - lancedb raises ValueError, OSError, RuntimeError
            return False

    def reset(self) -> None:
        """Drop every vector (the model record stays); ingest the shards again after this."""
        if TABLE in set(_table_names(self.db)):
            self.db.drop_table(TABLE)
        self._table = None
        self._ann = None

    def count(self) -> int:
        return 0 if self._table is None else int(self._table.count_rows())

    def ingest_shard(self, name: str, parquet_path: str | os.PathLike) -> int:
        """Replace the rows of shard ``name`` with those of its scores parquet; returns rows
        added."""
        self.delete_shards([name])
        return self.add_shard(name, parquet_path)

    def delete_shards(self, names: list[str]) -> int:
        """Delete every row of the shards ``names`` (one scan per :data:`DELETE_CHUNK` names);
        returns the rows deleted."""
        if self._table is None or not names:
            return 0
        gone = 0
        for i in range(0, len(names), DELETE_CHUNK):
            quoted = ", ".join(sql_str(n) for n in names[i : i + DELETE_CHUNK])
            res = self._table.delete(f"shard IN ({quoted})")
            gone += int(getattr(res, "num_deleted_rows", 0) or 0)
        return gone

    def add_shard(self, name: str, parquet_path: str | os.PathLike) -> int:
        """Append the rows of shard ``name``'s scores parquet (after :meth:`delete_shards`, or it
        is there twice); returns rows added."""
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        pf = pq.ParquetFile(parquet_path)
        cols = ingest_columns(pf.schema_arrow.names)
        if self._table is not None:
            have = set(self._table.schema.names)  # a store made before score columns were kept
            cols = [c for c in cols if c in have]
        n = 0
        try:
            for batch in pf.iter_batches(batch_size=INGEST_BATCH, columns=cols):
                tbl = pa.Table.from_batches([batch])
                if tbl.num_rows == 0:
                    continue
                if self._table is None:
                    self._table = self.db.create_table(TABLE, data=tbl)
                else:
                    self._table.add(tbl)
                n += tbl.num_rows
        except Exception as e:  # lancedb reports a full disk as OSError or RuntimeError text
            if _is_write_error(e):
                raise OutputError(
                    f"cannot write the corpus store {self.uri} ({first_line(e)}); free space and "
                    "rerun: the store is rebuilt from the score files, nothing is lost"
                ) from e
            raise
        return n

    def shard_counts(self) -> dict[str, int]:
        """Rows per shard name (a scan of the ``shard`` column)."""
        pc = require("pyarrow.compute")
        counts: dict[str, int] = {}
        for batch in self.iter_batches(["shard"], batch_size=1 << 16):
            vc = pc.value_counts(batch.column(0))
            for name, c in zip(
                vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True
            ):
                counts[name] = counts.get(name, 0) + c
        return counts

    def ensure_ann_index(self, min_rows: int = 100_000, num_partitions: int | None = None) -> bool:
        """Build an IVF-PQ cosine index when the table has ``min_rows`` rows or more.

        Rebuilt once half the table's rows are not in it (rows added, or shards replaced, since the
        last build; a table that doubled by appends is that case). Until then a search reads the
        unindexed rows exactly, and rows deleted since the build are never returned, so the index
        stays valid. Returns True when one was built.
        """
        n = self.count()
        if self._table is None or n < min_rows:
            return False
        if self._index_state() and self.has_ann_index() and 2 * self.unindexed_rows() < n:
            return False
        parts = num_partitions or max(1, int(math.sqrt(n)))
        sub = next(
            s for s in (self.dim // 8, self.dim // 4, self.dim // 2, 1) if s and self.dim % s == 0
        )
        index_mod = require("lancedb.index")
        config = index_mod.IvfPq(distance_type="cosine", num_partitions=parts, num_sub_vectors=sub)
        self._table.create_index("vector", config=config, replace=True)
        self._rewrite_meta(ann_rows=n)
        self._ann = True
        log.info("built IVF-PQ index on %d vectors (%d partitions)", n, parts)
        return True

    def unindexed_rows(self) -> int:
        """Rows the vector index does not hold (every row when there is no index)."""
        n = self.count()
        if self._table is None or not self.has_ann_index():
            return n
        for idx in self._table.list_indices():
            if "vector" in list(idx.columns):
                stats = self._table.index_stats(idx.name)
                if stats is not None:
                    return int(stats.num_unindexed_rows)
        # no statistics: the rows added since the build, as counted then
        return max(0, n - self._index_state())

    def _meta(self) -> dict[str, Any]:
        return self.db.open_table(META).to_arrow().to_pylist()[0]

    def _rewrite_meta(self, **extra) -> None:
        meta = {**self._meta(), **extra}
        self.db.drop_table(META)
        self.db.create_table(META, data=[meta])

    def _index_state(self) -> int:
        return int(self._meta().get("ann_rows") or 0)

    def has_ann_index(self) -> bool:
        if self._ann is None:
            self._ann = self._table is not None and bool(self._table.list_indices())
        return self._ann

    def columns(self) -> list[str]:
        """Column names of the ``docs`` table (empty before the first ingest)."""
        return [] if self._table is None else list(self._table.schema.names)

    def iter_batches(self, columns: list[str], batch_size: int = 8192):
        """Every row, only ``columns``, as Arrow record batches of ``batch_size`` rows (a scan;
        memory: one batch)."""
        if self._table is None:
            return
        scan = self._table.search().select(list(columns)).limit(None)
        yield from scan.to_batches(batch_size)

    def search(
        self,
        vector: np.ndarray,
        k: int = 10,
        nprobes: int = 32,
        refine_factor: int = 4,
        where: str | None = None,
        extra_columns: tuple[str, ...] = (),
    ) -> list[dict[str, Any]]:
        """Nearest documents of one unit vector: ``[{id, shard, row, score, preview}]``, best first.

        ``score`` is the cosine similarity. With an ANN index, ``nprobes`` partitions are searched
        and ``refine_factor x k`` candidates re-ranked exactly.

        Args:
            where: a LanceDB SQL filter applied before the search (``"score_rag >= 0.5"``), so the
                ``k`` hits all pass it.
            extra_columns: more stored columns to return with each hit (``score_<task>``, ...).
        """
        if self._table is None:
            return []
        q = (
            self._table.search(np.asarray(vector, dtype=np.float32).ravel())
            .metric("cosine")
            .limit(k)
        )
        if self.has_ann_index():
            q = q.nprobes(nprobes).refine_factor(refine_factor)
        if where:
            q = q.where(where, prefilter=True)
        rows = q.select(["id", "shard", "row", "preview", *extra_columns, "_distance"]).to_list()
        return [
            {
                "id": r["id"],
                "shard": r["shard"],
                "row": int(r["row"]),
                "score": 1.0 - float(r["_distance"]),
                "preview": r["preview"],
                **{c: r[c] for c in extra_columns},
            }
            for r in rows
        ]


def ingest_columns(names: list[str]) -> list[str]:
    """Columns of a scores parquet that go into the store: the base ones, then the task scores and
    ``cluster_id`` when present (so queries can filter on ``score_<task>`` or a cluster)."""
    extra = [c for c in names if score_kind(c) in (SCORE, TOPK) or c == "cluster_id"]
    return [c for c in BASE_COLUMNS if c in names] + extra


def sql_str(value: str) -> str:
    """``value`` as a LanceDB SQL string literal (quotes doubled)."""
    return "'" + value.replace("'", "''") + "'"


def _is_write_error(e: BaseException) -> bool:
    from retriever.io import WRITE_ERRNOS

    if isinstance(e, OSError) and e.errno in WRITE_ERRNOS:
        return True
    text = str(e)
    return any(
        m in text
        for m in (
            "No space left",
            "os error 28",
            "Read-only file system",
            "Disk quota",
            "File too large",
            "os error 27",
        )
    )


def _table_names(db) -> list[str]:
    try:
        out = db.list_tables()
        names = getattr(out, "tables", out)
    except AttributeError:
        names = db.table_names()
    return list(names)


def default_store_uri(score_dir: str | os.PathLike) -> str:
    return str(Path(score_dir) / "store")


INGESTED = "store_ingested"  # a score folder's subfolder of per-shard ingest markers


def ingest_marker(score_dir: str | os.PathLike, shard: str) -> Path:
    """Where a score folder records that shard ``shard`` (its safe name) is in the store."""
    return Path(score_dir) / INGESTED / f"{shard}.json"


def forget_ingested(score_dir: str | os.PathLike, shard: str) -> None:
    """Drop the shard's ingest marker, so the next ingest takes (and replaces) its rows."""
    ingest_marker(score_dir, shard).unlink(missing_ok=True)
