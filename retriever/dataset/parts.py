"""The write step of ``build-dataset``: the selection in parts of about ``part_tokens`` tokens.

A part is an LMFlow ``text_only`` json and/or a parquet file (``OUT_SCHEMA``); all formats of a
part are renamed into place together, so a killed build resumes at the first missing part. Parts
read the pool files in (file, row) order, keeping the file a part ends in open for the next one.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from retriever.corpus.readers import ReaderConfig
from retriever.data import Doc, Rejected
from retriever.dataset.pools import read_pool_shard
from retriever.dataset.scan import PoolScan
from retriever.dataset.select import Selection
from retriever.errors import InputError
from retriever.io import AtomicWriter, LMFlowStream, disk_guard
from retriever.progress import progress_bar

OUT_SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("text", pa.string()),
        ("pool", pa.string()),
        ("score", pa.float64()),
        ("n_tokens", pa.int64()),
        ("cluster", pa.string()),
        ("source", pa.string()),
    ]
)


def selection_table(scans: dict[str, PoolScan], selection: Selection, part_tokens: int) -> pa.Table:
    """Chosen documents sorted by (pool, file, row), each with its output part."""
    tables = []
    for k, scan in scans.items():
        idx = np.sort(selection.pools[k].selected)
        t = scan.table.take(pa.array(idx)).select(
            ["file", "row", "id", "n_tokens", "score", "cluster", "source"]
        )
        paths = pa.array([scan.files[i] for i in t.column("file").to_pylist()], pa.string())
        t = t.append_column("path", paths).append_column(
            "pool", pa.array([k] * len(t), pa.string())
        )
        tables.append(t.sort_by([("file", "ascending"), ("row", "ascending")]))
    t = pa.concat_tables(tables) if tables else None
    if t is None or len(t) == 0:
        empty = {
            "pool": pa.string(),
            "path": pa.string(),
            "row": pa.int64(),
            "id": pa.string(),
            "n_tokens": pa.int64(),
            "score": pa.float64(),
            "cluster": pa.string(),
            "source": pa.string(),
            "part": pa.int32(),
        }
        return pa.schema(empty).empty_table()
    cum = np.cumsum(t.column("n_tokens").to_numpy())  # [n]
    # a part closes once it holds part_tokens; a document longer than that makes a part of
    # its own, and part numbers stay dense (no empty part)
    raw = (cum - 1) // part_tokens  # [n], non-decreasing
    part = np.unique(raw, return_inverse=True)[1].astype(np.int32)
    t = t.append_column("part", pa.array(part))
    return t.select(["pool", "path", "row", "id", "n_tokens", "score", "cluster", "source", "part"])


def write_parts(
    out: Path,
    chosen: pa.Table,
    formats: tuple[str, ...],
    progress: bool | None = None,
    readers: dict[str, ReaderConfig] | None = None,
) -> list[dict]:
    """Write the parts of ``chosen`` (:func:`selection_table`) under ``out``; return one entry per
    part. ``readers``: pool file -> reader options of the files that are corpus files (as the scan
    read them)."""
    parts: list[dict] = []
    if len(chosen) == 0:
        return parts
    part_col = chosen.column("part").to_numpy()
    n_parts = int(part_col.max()) + 1
    bounds = np.searchsorted(part_col, np.arange(n_parts + 1))  # part p: bounds[p]:bounds[p+1]
    reader = _PoolFiles(readers)
    for p in progress_bar(range(n_parts), desc="write parts", unit="file", progress=progress):
        rows = chosen.slice(bounds[p], bounds[p + 1] - bounds[p])
        paths = {
            f: out / f / f"part_{p:05d}.{'json' if f == 'lmflow' else 'parquet'}" for f in formats
        }
        info = {
            "part": p,
            "docs": len(rows),
            "tokens": int(pc.sum(rows.column("n_tokens")).as_py()),
            "files": {f: str(paths[f].relative_to(out)) for f in formats},
        }
        parts.append(info)
        if all(pth.exists() for pth in paths.values()):
            continue  # finished by an earlier run
        with disk_guard(str(paths[formats[0]])):
            write_part(rows, paths, reader)
    return parts


def write_part(rows: pa.Table, paths: dict[str, Path], reader: _PoolFiles) -> None:
    # every format of a part is renamed into place only when all of them are written
    with ExitStack() as stack:
        tmps = {f: stack.enter_context(AtomicWriter(p)) for f, p in paths.items()}
        with ExitStack() as files:
            lm = (
                LMFlowStream(files.enter_context(open(tmps["lmflow"], "wb")))
                if "lmflow" in tmps
                else None
            )
            pw = None
            if "parquet" in tmps:
                pw = files.enter_context(pq.ParquetWriter(tmps["parquet"], OUT_SCHEMA))
            buf: list[dict] = []
            for rec in _read_rows(rows, reader):
                if lm is not None:
                    lm.write(rec["text"])
                if pw is not None:
                    buf.append(rec)
                    if len(buf) >= 4096:
                        pw.write_table(pa.Table.from_pylist(buf, schema=OUT_SCHEMA))
                        buf.clear()
            if pw is not None and buf:
                pw.write_table(pa.Table.from_pylist(buf, schema=OUT_SCHEMA))
            if lm is not None:
                lm.close()


class _PoolFiles:
    """Sequential access to pool files for writing parts: parts are consecutive in (file, row)
    order, so the file a part ends in is kept open for the next part instead of re-read."""

    def __init__(self, readers: dict[str, ReaderConfig] | None = None) -> None:
        self.readers = readers or {}  # corpus files: path -> their reader options
        self.path: str | None = None
        self.it: Iterator[Doc | Rejected] | None = None
        self.next_row = 0  # pool row the open iterator yields next

    def docs_from(self, path: str, row: int) -> Iterator[Doc]:
        """Docs of ``path`` from pool row ``row`` on (rows before it are skipped)."""
        if self.path != path or self.it is None or self.next_row > row:
            docs = read_pool_shard(path, self.readers.get(path))
            self.path, self.it, self.next_row = path, iter(docs), 0
        for rec in self.it:
            self.next_row += 1
            if isinstance(rec, Doc) and rec.metadata["pool_row"] >= row:
                yield rec


def _read_rows(rows: pa.Table, files: _PoolFiles | None = None) -> Iterator[dict]:
    """The records of ``rows`` (sorted by path, row), read back from the pool files in order."""
    files = files or _PoolFiles()
    paths = rows.column("path").to_pylist()
    want_rows = rows.column("row").to_pylist()
    ids = rows.column("id").to_pylist()
    meta = rows.select(["pool", "score", "n_tokens", "cluster", "source"]).to_pylist()
    i = 0
    while i < len(paths):
        path = paths[i]
        j = i
        while j < len(paths) and paths[j] == path:
            j += 1
        need = dict(zip(want_rows[i:j], range(i, j), strict=True))
        last = want_rows[j - 1]
        found = 0
        for rec in files.docs_from(path, want_rows[i]):
            r = rec.metadata["pool_row"]
            k = need.get(r)
            if k is not None:
                if rec.id != ids[k]:
                    raise InputError(
                        f"pool file {path} changed during the build (row {r} is now {rec.id!r}, "
                        f"was {ids[k]!r}); rerun build-dataset into a new --out folder"
                    )
                found += 1
                yield {"id": rec.id, "text": rec.text, **meta[k]}
            if r >= last:
                break
        if found != j - i:
            raise InputError(
                f"pool file {path} lost rows since it was scanned; rerun into a new --out folder"
            )
        i = j


def duplicates_table(scans: dict[str, PoolScan], selection: Selection) -> pa.Table:
    ids, pool, kept_by = [], [], []
    for k, scan in scans.items():
        ps = selection.pools[k]
        if len(ps.duplicates):
            ids.extend(scan.table.column("id").take(pa.array(ps.duplicates)).to_pylist())
            pool.extend([k] * len(ps.duplicates))
            kept_by.extend(ps.duplicate_of)
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "pool": pa.array(pool, pa.string()),
            "kept_by": pa.array(kept_by, pa.string()),
        }
    )
