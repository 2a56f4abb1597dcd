"""Pool writers: kept documents of one task and one shard, in a datatrove- or LMFlow-ready file.

Formats (``DIR/<task>/<shard_name><suffix>``):

* ``jsonl.gz`` / ``jsonl``: ``{"id", "text", "metadata"}`` per line (datatrove ``JsonlReader``
  reads it as is);
* ``parquet``: columns ``id``, ``text``, ``metadata`` (struct; datatrove ``ParquetReader``);
* ``lmflow``: ``{"type": "text_only", "instances": [{"text": ...}, ...]}`` (one JSON per shard;
  LMFlow reads every ``.json`` of a dataset folder).

Every writer writes to a temporary file unique to it (``<file>.<pid>.<random>.tmp``);
:meth:`PoolWriter.commit` renames it into place and :meth:`PoolWriter.abort` deletes it, so a file
under its final name is always complete.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import orjson

from retriever._deps import require
from retriever.data import Doc
from retriever.errors import ConfigError
from retriever.io import AtomicWriter, LMFlowStream, temp_path

POOL_FORMATS = ("jsonl.gz", "jsonl", "parquet", "lmflow")
SUFFIX = {"jsonl.gz": ".jsonl.gz", "jsonl": ".jsonl", "parquet": ".parquet", "lmflow": ".json"}
GZIP_LEVEL = 6  # zlib's default: level 9 costs ~3x the time for ~3% smaller files
_OPTS = orjson.OPT_SERIALIZE_NUMPY


def record_line(doc: Doc) -> bytes:
    """One pool record as a jsonl line: ``{"id", "text", "metadata"}`` (datatrove's layout)."""
    return orjson.dumps(
        {"id": doc.id, "text": doc.text, "metadata": doc.metadata},
        option=_OPTS | orjson.OPT_APPEND_NEWLINE,
        default=str,
    )


class PoolWriter:
    """Base: streams documents into ``path`` through a temporary file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._atomic = AtomicWriter(self.path)
        self.tmp = self._atomic.start()  # unique to this writer
        self.n = 0

    def write(self, doc: Doc) -> None:
        raise NotImplementedError

    def _close(self) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        """Finish the file and move it into place."""
        self._close()
        self._atomic.commit()

    def abort(self) -> None:
        """Drop the partial file."""
        try:
            self._close()
        finally:
            self._atomic.abort()


class JsonlPoolWriter(PoolWriter):
    def __init__(self, path: str | os.PathLike, compress: bool = True):
        super().__init__(path)
        self._fh: IO[bytes]
        if compress:
            self._fh = gzip.open(self.tmp, "wb", compresslevel=GZIP_LEVEL)  # type: ignore[assignment]
        else:
            self._fh = open(self.tmp, "wb")  # noqa: SIM115

    def write(self, doc: Doc) -> None:
        self._fh.write(record_line(doc))
        self.n += 1

    def _close(self) -> None:
        if not self._fh.closed:
            self._fh.close()


class LMFlowPoolWriter(PoolWriter):
    """LMFlow ``text_only`` dataset file, streamed (instances carry the text only)."""

    def __init__(self, path: str | os.PathLike):
        super().__init__(path)
        self._fh = open(self.tmp, "wb")  # noqa: SIM115
        self._lm = LMFlowStream(self._fh)

    def write(self, doc: Doc) -> None:
        self._lm.write(doc.text)
        self.n += 1

    def _close(self) -> None:
        if not self._fh.closed:
            self._lm.close()
            self._fh.close()


class ParquetPoolWriter(PoolWriter):
    """Parquet with a ``metadata`` struct whose fields are the union over the shard's documents.

    Documents of a jsonl shard need not share their metadata keys, and a parquet schema is fixed
    when the file is opened, so rows are spilled to a temporary jsonl first; at commit the union
    schema is known and the spill is converted in blocks of ``block_rows`` (memory: one block).
    """

    def __init__(self, path: str | os.PathLike, block_rows: int = 8192):
        super().__init__(path)
        self.block_rows = block_rows
        self.spill = temp_path(self.path.with_name(self.path.name + ".spill"))
        self._fh = open(self.spill, "wb")  # noqa: SIM115
        self.types: dict[str, set[type]] = {}

    def write(self, doc: Doc) -> None:
        for k, v in doc.metadata.items():
            self.types.setdefault(k, set()).add(type(v))
        self._fh.write(record_line(doc))  # spilled as jsonl, converted on commit
        self.n += 1

    def _schema(self):
        pa = require("pyarrow")
        fields = []
        for k in self.types:
            fields.append(pa.field(k, _arrow_type(pa, self.types[k] - {type(None)})))
        return pa.schema(
            [("id", pa.string()), ("text", pa.string()), ("metadata", pa.struct(fields))]
        )

    def _close(self) -> None:
        if self._fh.closed:
            return
        self._fh.close()
        pq = require("pyarrow.parquet")
        pa = require("pyarrow")
        schema = self._schema()
        strings = {f.name for f in schema.field("metadata").type if f.type == pa.string()}
        try:
            with pq.ParquetWriter(self.tmp, schema) as w, open(self.spill, "rb") as fh:
                block: list[dict] = []
                for line in fh:
                    row = orjson.loads(line)
                    meta = row["metadata"]
                    for k in strings.intersection(meta):
                        v = meta[k]
                        if v is not None and not isinstance(v, str):
                            meta[k] = orjson.dumps(v).decode()  # mixed types: kept as JSON text
                    block.append(row)
                    if len(block) >= self.block_rows:
                        w.write_batch(pa.RecordBatch.from_pylist(block, schema=schema))
                        block = []
                if block or self.n == 0:
                    w.write_batch(pa.RecordBatch.from_pylist(block, schema=schema))
        finally:
            self.spill.unlink(missing_ok=True)

    def abort(self) -> None:
        if not self._fh.closed:
            self._fh.close()
        self.spill.unlink(missing_ok=True)
        self.tmp.unlink(missing_ok=True)


def _arrow_type(pa, types: set[type]) -> Any:
    if not types:
        return pa.null()
    if types == {bool}:
        return pa.bool_()
    if types <= {int}:
        return pa.int64()
    if types <= {int, float}:
        return pa.float64()
    return pa.string()


def open_pool_writer(fmt: str, path_stem: str | os.PathLike) -> PoolWriter:
    """A writer of format ``fmt`` for ``<path_stem><suffix>``."""
    if fmt not in POOL_FORMATS:
        raise ConfigError(f"unknown output format {fmt!r}; use one of {', '.join(POOL_FORMATS)}")
    path = Path(str(path_stem) + SUFFIX[fmt])
    if fmt == "parquet":
        return ParquetPoolWriter(path)
    if fmt == "lmflow":
        return LMFlowPoolWriter(path)
    return JsonlPoolWriter(path, compress=fmt == "jsonl.gz")


@contextmanager
def commit_all(writers: dict[str, PoolWriter]) -> Iterator[dict[str, PoolWriter]]:
    """All of ``writers`` (filled inside the block) committed on a clean exit, all aborted on an
    error: a shard's pools appear together or not at all."""
    try:
        yield writers
    except BaseException:
        for w in writers.values():
            w.abort()
        raise
    for w in writers.values():
        w.commit()
