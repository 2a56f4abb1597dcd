"""Fingerprints and manifests: what an artifact was built from, checked before reuse or resume."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import orjson

from retriever.corpus.writers import read_json, write_json_atomic
from retriever.errors import ResumeError


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


def check_or_write_manifest(out_dir: str | os.PathLike, settings: dict[str, Any], name: str = "manifest.json") -> dict:
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
        diff = sorted(k for k in set(old_settings) | set(norm_new) if old_settings.get(k) != norm_new.get(k))
        if diff:
            raise ResumeError(
                f"{out_dir} holds a run with other settings (differs in: {', '.join(diff)}). "
                "Use a new --out folder, or delete this one to start over."
            )
        return old
    doc = {"settings": settings, "fingerprint": fingerprint(settings)}
    write_json_atomic(path, doc)
    return doc
