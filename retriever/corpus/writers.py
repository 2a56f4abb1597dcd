"""Atomic, resumable outputs: write ``*.tmp`` then ``os.replace``; rejected records written aside.

A file that exists under its final name is complete; a ``.tmp`` left by a killed run is ignored and
overwritten. This is what lets every stage resume shard by shard without duplicates or gaps.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from retriever.data import Rejected


class AtomicWriter:
    """Context manager giving a temporary path that becomes ``path`` only on a clean exit.

    Example:
        >>> with AtomicWriter(out / "shard.parquet") as tmp:
        ...     pq.write_table(table, tmp)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.tmp = self.path.with_name(self.path.name + ".tmp")

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON, atomically."""
    with AtomicWriter(path) as tmp:
        tmp.write_bytes(orjson.dumps(obj, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY, default=str))


def read_json(path: str | os.PathLike) -> Any:
    return orjson.loads(Path(path).read_bytes())


class RejectWriter:
    """Collects rejected records of one shard and writes them as jsonl (atomically) on close.

    Nothing is written when nothing was rejected. Rejects are few by nature, so they are kept in
    memory until the shard ends; the write then happens together with the shard's output.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.rows: list[Rejected] = []

    def add(self, rej: Rejected) -> None:
        self.rows.append(rej)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows:
            out[r.reason] = out.get(r.reason, 0) + 1
        return out

    def close(self) -> None:
        if not self.rows:
            return
        with AtomicWriter(self.path) as tmp, open(tmp, "wb") as fh:
            for r in self.rows:
                fh.write(orjson.dumps({"shard": r.shard, "row": r.row, "reason": r.reason, "raw": r.raw}))
                fh.write(b"\n")
