"""Streaming shard readers: jsonl (.gz/.zst), json, parquet and Hub datasets.

A reader never raises on a bad record: it yields a :class:`~retriever.data.Rejected` with a reason
(``bad_json``, ``no_text``, ``empty``, ``undecodable``, ``bad_tokens``, ``bad_record``) so the
caller can count it and write it aside. Only an unreadable *shard* (missing file, unknown format)
raises.

ClimbLab comes as text (``OptimalScale/ClimbLab``: ``text``) or as GPT-2 token ids
(``nvidia/ClimbLab``: ``tokens``); with ``tokens_field`` and a :class:`Detokenizer` the ids become
text.
"""

from __future__ import annotations

import gzip
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from retriever._deps import require
from retriever.corpus.sharding import HUB_PREFIX, doc_id, hub_filesystem, is_hub_file, shard_name
from retriever.data import Doc, Rejected
from retriever.errors import InputError, ShardError, TruncatedInputError, first_line

RAW_KEEP = 2000  # characters of a rejected record kept for the reject file


class Detokenizer:
    """Turns token ids back into text with a Hugging Face tokenizer (GPT-2 for ClimbLab).

    Args:
        tokenizer: Hub id or local folder of a tokenizer (``"gpt2"`` for ClimbLab token ids).
    """

    def __init__(self, tokenizer: str = "gpt2"):
        self.name = tokenizer
        self._tok = None

    def _load(self):
        if self._tok is None:
            transformers = require("transformers")
            try:
                self._tok = transformers.AutoTokenizer.from_pretrained(self.name)
            except OSError as e:
                raise InputError(
                    f"cannot load tokenizer {self.name!r} for detokenizing ({e}). Offline? Pass a "
                    "local tokenizer folder with --detokenizer PATH."
                ) from e
        return self._tok

    def __call__(self, ids: list[int]) -> str:
        return self._load().decode(ids)


@dataclass(frozen=True)
class ReaderConfig:
    """How corpus records are read: the one set of reader options, shared by every stage that
    reads the corpus (score, filter, confirm, plan, prefilter, rating) and by ``[corpus]``.

    Args:
        text_field: text field of corpus records.
        id_field: id field of corpus records (absent: ``shard:row``).
        tokens_field: token-id field, read with ``detokenizer`` when a record has no text field.
        detokenizer: tokenizer (local folder or Hub id) turning token ids into text: ``gpt2`` for
            ``nvidia/ClimbLab`` (``None``: text shards only).
        keep_fields: source fields copied into ``Doc.metadata`` (``None``: every scalar field).
    """

    text_field: str = "text"
    id_field: str = "id"
    tokens_field: str | None = "tokens"
    detokenizer: str | None = None
    keep_fields: tuple[str, ...] | None = None

    def reader(self, **kwargs: Any) -> CorpusReader:
        """The :class:`CorpusReader` of these options (``kwargs``: batch_size, hub_split)."""
        return CorpusReader(
            text_field=self.text_field,
            id_field=self.id_field,
            tokens_field=self.tokens_field,
            detokenizer=Detokenizer(self.detokenizer) if self.detokenizer else None,
            keep_fields=self.keep_fields,
            **kwargs,
        )

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> ReaderConfig:
        """The options a stage's manifest recorded flat (``text_field``, ``id_field``, ...): how
        its output is read back."""
        d = cls()
        keep = settings.get("keep_fields")
        return cls(
            text_field=settings.get("text_field", d.text_field),
            id_field=settings.get("id_field", d.id_field),
            tokens_field=settings.get("tokens_field", d.tokens_field),
            detokenizer=settings.get("detokenizer") or None,
            keep_fields=tuple(keep) if keep is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        """The options as plain values (manifests)."""
        return {
            "text_field": self.text_field,
            "id_field": self.id_field,
            "tokens_field": self.tokens_field,
            "detokenizer": self.detokenizer,
            "keep_fields": list(self.keep_fields) if self.keep_fields is not None else None,
        }


@dataclass
class CorpusReader:
    """Reads corpus shards into :class:`Doc` records (or :class:`Rejected` ones).

    Args:
        text_field: field holding the document text.
        id_field: field holding a document id; when absent the id is ``<shard>:<row>``.
        tokens_field: field of token ids, used when the text field is missing (ClimbLab tokens).
        detokenizer: turns ``tokens_field`` ids into text; required to read token shards.
        keep_fields: extra record fields copied into ``Doc.metadata`` (e.g. ``cluster_id``);
            ``None`` keeps every scalar field.
        batch_size: parquet rows read at a time (memory: batch_size x mean document size).
        hub_split: split read from Hub datasets.
    """

    text_field: str = "text"
    id_field: str = "id"
    tokens_field: str | None = "tokens"
    detokenizer: Detokenizer | None = None
    keep_fields: tuple[str, ...] | None = None
    batch_size: int = 1024
    hub_split: str = "train"
    _warned: set = field(default_factory=set, repr=False)

    # -- public -----------------------------------------------------------------------------------
    def read(self, shard: str) -> Iterator[Doc | Rejected]:
        """Yield every record of ``shard`` in order, as a Doc or a Rejected."""
        sname = shard_name(shard)  # once per shard: a local shard's name costs an abspath
        for row, rec in self.iter_records(shard):
            yield rec if isinstance(rec, Rejected) else self.to_doc(shard, row, rec, sname)

    def iter_records(self, shard: str) -> Iterator[tuple[int, Any]]:
        """Yield ``(row, record)`` for every record of ``shard``: the parsed JSON value / parquet
        row, or a :class:`Rejected` for a line that is not JSON or not UTF-8.

        This is the raw layer under :meth:`read`; gold loaders use it to format records themselves.
        """
        if is_hub_file(shard):  # one data file of a Hub dataset (see list_hub_shards)
            yield from self._iter_hub_file(shard)
            return
        if shard.startswith(HUB_PREFIX):
            yield from enumerate(self._iter_hub(shard))
            return
        path = Path(shard)
        if not path.is_file():
            raise InputError(f"shard {shard} does not exist")
        name = path.name
        if name.endswith(".parquet"):
            yield from enumerate(self._iter_parquet(path))
        elif name.endswith((".jsonl", ".jsonl.gz", ".jsonl.zst")):
            yield from self._iter_jsonl(shard, path)
        elif name.endswith((".json", ".json.gz")):
            yield from enumerate(self._iter_json(path))
        else:
            raise InputError(f"{shard}: unknown shard format")

    # -- record -> Doc ----------------------------------------------------------------------------
    def to_doc(self, shard: str, row: int, rec: Any, sname: str | None = None) -> Doc | Rejected:
        """One record of ``shard`` as a Doc, or its Rejected. ``sname``: the shard's
        :func:`shard_name`, when the caller already has it (a per-record loop)."""
        sname = sname or shard_name(shard)
        if not isinstance(rec, dict):
            return Rejected(sname, row, "bad_record", clip_record(rec))
        text = self.record_text(shard, sname, row, rec)
        if isinstance(text, Rejected):
            return text
        rid = doc_id(sname, row, rec.get(self.id_field))
        meta: dict[str, Any] = {"shard": sname, "row": row}
        for k, v in rec.items():
            if k in (self.text_field, self.tokens_field, self.id_field):
                continue
            if self.keep_fields is None:
                if isinstance(v, (str, int, float, bool)):
                    meta[k] = v
            elif k in self.keep_fields:
                meta[k] = v
        return Doc(id=rid, text=text, metadata=meta)

    def record_text(self, shard: str, sname: str, row: int, rec: dict) -> str | Rejected:
        """The text of one record of ``shard`` (named ``sname``): its text field, else its token
        ids detokenized; or the record's :class:`Rejected` (``no_text``, ``bad_tokens``, ...).

        Raises:
            InputError: token ids and no detokenizer.
        """
        text = rec.get(self.text_field)
        if text is None and self.tokens_field and rec.get(self.tokens_field) is not None:
            if self.detokenizer is None:
                raise InputError(
                    f"{shard} holds token ids ({self.tokens_field!r}) and no {self.text_field!r}: "
                    "pass a detokenizer (--detokenizer gpt2, or a local tokenizer folder)."
                )
            ids = rec[self.tokens_field]
            try:
                text = self.detokenizer([int(t) for t in ids])
            except (TypeError, ValueError, OverflowError):
                return Rejected(sname, row, "bad_tokens", clip_record(rec))
        return usable_text(text, sname, row, rec)

    # -- formats ----------------------------------------------------------------------------------
    def _iter_jsonl(self, shard: str, path: Path) -> Iterator[tuple[int, Any]]:
        sname = shard_name(shard)
        with open_binary(path) as fh:
            for row, line in enumerate(fh):
                if not line.strip():
                    # a blank line is a record too: counting it keeps rows aligned with line numbers
                    yield row, Rejected(sname, row, "empty", "")
                    continue
                try:
                    line.decode("utf-8")
                except UnicodeDecodeError:
                    yield (
                        row,
                        Rejected(
                            sname, row, "undecodable", line[:RAW_KEEP].decode("utf-8", "replace")
                        ),
                    )
                    continue
                try:
                    rec = orjson.loads(line)
                except orjson.JSONDecodeError:
                    yield (
                        row,
                        Rejected(
                            sname, row, "bad_json", line[:RAW_KEEP].decode("utf-8", "replace")
                        ),
                    )
                    continue
                yield row, rec

    def _iter_json(self, path: Path) -> Iterator[Any]:
        with open_binary(path) as fh:
            try:
                data = orjson.loads(fh.read())
            except orjson.JSONDecodeError as e:
                raise ShardError(
                    f"{path} is not valid JSON ({e}); for one record a line use .jsonl"
                ) from e
        if isinstance(data, list):
            yield from data
        elif isinstance(data, dict) and isinstance(data.get("instances"), list):
            yield from data["instances"]  # LMFlow {"type": "text_only", "instances": [...]}
        elif isinstance(data, dict):
            # a JSON object keyed by id (the TinyAgent layout): the key becomes the id
            for k, v in data.items():
                if isinstance(v, dict) and self.id_field not in v:
                    v = {**v, self.id_field: k}
                yield v
        else:
            raise ShardError(f"{path}: top-level JSON must be a list or an object of records")

    def _iter_hub_file(self, shard: str) -> Iterator[tuple[int, Any]]:
        path = shard[len(HUB_PREFIX) :]
        with open_hub_file(shard) as fh:
            if path.endswith(".parquet"):
                yield from enumerate(self._iter_parquet(fh, shard))
            else:
                raise InputError(
                    f"{shard}: only parquet files are read straight from the Hub; "
                    "download the dataset and pass the local folder"
                )

    def _iter_parquet(self, path: Path | Any, label: str | None = None) -> Iterator[dict]:
        pa = require("pyarrow")
        pq = require("pyarrow.parquet")
        try:
            pf = pq.ParquetFile(path)
        except (pa.ArrowException, OSError) as e:
            raise ShardError(
                f"{label or path} is not a readable parquet file ({e}); re-download it"
            ) from e
        path = label or path
        names = set(pf.schema_arrow.names)
        if self.text_field not in names and (self.tokens_field or "") not in names:
            raise ShardError(
                f"{path} has no {self.text_field!r} column (columns: {sorted(names)}); "
                "pass --text-field NAME (or --tokens-field for token ids)"
            )
        batches = pf.iter_batches(batch_size=self.batch_size)
        while True:
            try:
                batch = next(batches)
            except StopIteration:
                return
            except (pa.ArrowException, OSError) as e:
                raise ShardError(f"{path}: corrupt parquet data ({e}); re-download it") from e
            yield from batch.to_pylist()

    def _iter_hub(self, shard: str) -> Iterator[dict]:
        datasets = require("datasets")
        spec = shard[len(HUB_PREFIX) :]
        name, _, split = spec.partition("@")
        try:
            ds = datasets.load_dataset(name, split=split or self.hub_split, streaming=True)
        except Exception as e:  # datasets raises many types (offline, 404, auth)
            raise InputError(
                f"cannot open Hub dataset {name!r} ({type(e).__name__}: {e}). Offline? Download it "
                "once and pass the local files instead."
            ) from e
        yield from ds


def open_hub_file(shard: str):
    """Open one data file of a Hub dataset (``hf://datasets/org/name/path``) for reading.

    Raises:
        ShardError: it cannot be opened (network, 404, access): that shard fails, the stage goes on
            with the others and a rerun retries it (the listing succeeded, so the dataset exists).
    """
    try:
        return hub_filesystem().open(shard[len(HUB_PREFIX) :], "rb")
    except Exception as e:  # huggingface_hub raises many types (offline, 404, auth, 5xx)
        raise ShardError(
            f"cannot open Hub dataset file {shard} ({type(e).__name__}: {first_line(e)}); "
            "rerun the same command to retry it (finished shards are kept), or download the "
            "dataset and pass the local folder"
        ) from e


def read_records(shard: str, reader: CorpusReader | None = None) -> Iterator[Doc | Rejected]:
    """Shortcut: ``CorpusReader().read(shard)``."""
    return (reader or CorpusReader()).read(shard)


class _ZstdReader(io.RawIOBase):
    """Decompresses a .zst file frame by frame and raises at the end of a truncated frame.

    ``zstandard``'s ``stream_reader`` ends quietly when the input stops in the middle of a frame,
    so a shard cut short (an interrupted download) would read as a shorter, complete shard.
    """

    CHUNK = 1 << 17

    def __init__(self, path: Path):
        self._zstd = require("zstandard")
        self.path = path
        self._fh = open(path, "rb")  # noqa: SIM115 - closed in close()
        self._dobj = self._zstd.ZstdDecompressor().decompressobj()
        self._in_frame = False  # bytes of the current frame were fed and its end not seen
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            chunk = self._fh.read(self.CHUNK)
            if not chunk:
                if self._in_frame:
                    raise TruncatedInputError(f"{self.path}: truncated zstd frame (file cut short)")
                return 0
            self._buf = self._feed(chunk)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n

    def _feed(self, data: bytes) -> bytes:
        out = []
        while data:
            try:
                out.append(self._dobj.decompress(data))
            except self._zstd.ZstdError as e:
                raise TruncatedInputError(f"{self.path}: corrupt zstd data ({e})") from e
            self._in_frame = not self._dobj.eof
            data = self._dobj.unused_data if self._dobj.eof else b""
            if self._dobj.eof:  # concatenated frames: start the next one
                self._dobj = self._zstd.ZstdDecompressor().decompressobj()
                self._in_frame = bool(data)
        return b"".join(out)

    def close(self) -> None:
        if not self.closed:
            self._fh.close()
        super().close()


class _CheckedGzip(gzip.GzipFile):
    """A gzip reader whose truncation / corruption errors are one-line :class:`ShardError`."""

    def read(self, *args):
        try:
            return super().read(*args)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise TruncatedInputError(f"{self.name}: truncated or corrupt gzip ({e})") from e

    def read1(self, *args):
        try:
            return super().read1(*args)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise TruncatedInputError(f"{self.name}: truncated or corrupt gzip ({e})") from e

    def readline(self, *args):
        try:
            return super().readline(*args)
        except (EOFError, gzip.BadGzipFile, zlib.error) as e:
            raise TruncatedInputError(f"{self.name}: truncated or corrupt gzip ({e})") from e

    def __iter__(self):
        while True:
            line = self.readline()
            if not line:
                return
            yield line


def open_binary(path: str | Path) -> io.BufferedIOBase:
    """Open a (possibly .gz / .zst compressed) file for binary reading.

    A compressed file cut short, or corrupt, raises :class:`TruncatedInputError` (a
    :class:`ShardError`) when the reader reaches the damage, never a quiet early end.
    """
    path = Path(path)
    name = path.name
    if name.endswith(".gz"):
        return _CheckedGzip(path, "rb")
    if name.endswith(".zst"):
        return io.BufferedReader(_ZstdReader(path))
    return open(path, "rb")  # noqa: SIM115


def usable_text(text: Any, sname: str, row: int, rec: Any) -> str | Rejected:
    """``text`` when a document can be made of it, else the record's :class:`Rejected`: no text
    (``no_text``), not a string (``bad_record``) or only whitespace (``empty``). The one check of
    corpus and pool records."""
    if text is None:
        return Rejected(sname, row, "no_text", clip_record(rec))
    if not isinstance(text, str):
        return Rejected(sname, row, "bad_record", clip_record(rec))
    if not text.strip():
        return Rejected(sname, row, "empty", clip_record(rec))
    return text


def clip_record(rec: Any) -> str:
    """A record as JSON text, clipped to ``RAW_KEEP`` characters (for reject files)."""
    try:
        s = orjson.dumps(rec, default=str).decode()
    except TypeError:
        s = repr(rec)
    return s[:RAW_KEEP]
