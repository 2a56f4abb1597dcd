"""Fingerprints and manifests: what an artifact was built from, checked before reuse or resume."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson

from retriever.errors import ResumeError
from retriever.io import read_json, write_json_atomic


def fingerprint(obj: Any) -> str:
    """Stable short hash of a JSON-able object (settings, lists of fingerprints)."""
    blob = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS, default=str)
    return hashlib.sha256(blob).hexdigest()[:16]


def file_fingerprint(path: str | os.PathLike, full: bool = False) -> str:
    """Hash of a file: size + first and last MiB (or the whole file with ``full``).

    Cheap enough for multi-GB shards, and changes whenever a shard is rewritten in practice.
    """
    p = Path(path)
    h = hashlib.sha256()
    size = p.stat().st_size
    h.update(str(size).encode())
    with open(p, "rb") as fh:
        if full or size <= 2 << 20:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        else:
            h.update(fh.read(1 << 20))
            fh.seek(-(1 << 20), os.SEEK_END)
            h.update(fh.read(1 << 20))
    return h.hexdigest()[:16]


def paths_fingerprint(paths: list[str]) -> str:
    """Fingerprint of a list of inputs (local files hashed, Hub ids by name)."""
    parts = []
    for p in paths:
        parts.append([p, file_fingerprint(p) if Path(p).is_file() else "hub"])
    return fingerprint(parts)


def check_or_write_manifest(
    out_dir: str | os.PathLike, settings: dict[str, Any], name: str = "manifest.json"
) -> dict:
    """Write ``settings`` as the manifest of ``out_dir``, or check it against an existing one.

    Resuming into a folder made with other settings would mix two runs' results, so it is an error.

    Raises:
        ResumeError: the folder holds a manifest whose settings differ; the message names the keys.
    """
    path = Path(out_dir) / name
    if path.exists():
        old = read_json(path)
        old_settings = old.get("settings", {})
        norm_new = orjson.loads(orjson.dumps(settings, default=str))
        diff = sorted(
            k for k in set(old_settings) | set(norm_new) if old_settings.get(k) != norm_new.get(k)
        )
        if diff:
            raise ResumeError(
                f"{out_dir} holds a run with other settings (differs in: {', '.join(diff)}). "
                "Use a new --out folder, or delete this one to start over."
            )
        return old
    doc = {"settings": settings, "fingerprint": fingerprint(settings)}
    write_json_atomic(path, doc)
    return doc


def shard_fingerprint(shard: str) -> dict[str, Any] | None:
    """The identity of an input shard a done marker records: size, mtime, and for parquet the
    footer's row count. ``None`` for inputs without a local file (Hub datasets: named only).

    Size + mtime changes whenever a file is replaced or rewritten (a re-download, a copy over it);
    reading the footer costs one small read per parquet shard.
    """
    p = Path(shard)
    try:
        st = p.stat()
    except OSError:
        return None
    out: dict[str, Any] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if p.name.endswith(".parquet"):
        try:
            import pyarrow.parquet as pq

            out["rows"] = int(pq.ParquetFile(p).metadata.num_rows)
        except Exception:  # noqa: BLE001 - an unreadable footer is the reader's error to report
            out["rows"] = None
    return out


class DoneMarkers:
    """Per-shard completion markers ``<folder>/<shard_name>.json`` that know their input.

    A marker is written after a shard's outputs are in place and records the shard's
    :func:`shard_fingerprint`; :meth:`read` returns it only while the shard is still that file, so
    a replaced shard is redone. A marker from before fingerprints is trusted while the shard is
    older than the marker (it cannot have been replaced since). An unreadable marker (hand-edited,
    truncated) counts as not done: the shard is redone, nothing is lost.
    """

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def path(self, shard: str) -> Path:
        from retriever.corpus.sharding import shard_name
        from retriever.names import check_name

        return self.folder / f"{check_name(shard_name(shard), 'shard name')}.json"

    def read(self, shard: str) -> dict[str, Any] | None:
        """The marker's content when ``shard`` is finished and unchanged, else ``None``."""
        p = self.path(shard)
        try:
            doc = orjson.loads(p.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            return None
        if not isinstance(doc, dict):
            return None
        now = shard_fingerprint(shard)
        if "input" not in doc:  # written before markers recorded their input
            try:
                return doc if Path(shard).stat().st_mtime <= p.stat().st_mtime else None
            except OSError:
                return doc
        return doc if doc["input"] == now else None

    def is_done(self, shard: str) -> bool:
        return self.read(shard) is not None

    def write(self, shard: str, content: dict[str, Any], fingerprint: Any = "now") -> None:
        """Mark ``shard`` finished with ``content`` plus its fingerprint under ``input``.

        Pass the ``fingerprint`` taken before reading the shard, so a shard replaced while it was
        being read is redone next time (default: taken now).
        """
        fp = shard_fingerprint(shard) if fingerprint == "now" else fingerprint
        write_json_atomic(self.path(shard), {**content, "input": fp})

    def clear(self, shard: str) -> None:
        self.path(shard).unlink(missing_ok=True)
