"""Cached loaders: a process opens each task index and corpus store once, the model once.

The first query of a process pays the model load (seconds); later ones only embed and search.
``retriever serve`` and the Python API (:func:`retriever.query.query_gold`,
:func:`retriever.query.query_corpus`) share these caches. An index is reopened when its
``manifest.json`` changes (``retriever index add`` rewrites it), a store when its score folder's
``store.json`` changes (a new ``retriever score`` ingest).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from retriever.errors import InputError
from retriever.io import read_json

if TYPE_CHECKING:
    from retriever.index import GoldIndex
    from retriever.store import CorpusStore

_LOCK = threading.Lock()
_INDEXES: dict[str, tuple[int, GoldIndex]] = {}
_STORES: dict[str, tuple[int, CorpusStore]] = {}


def _mtime(path: Path) -> int:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return -1


def open_index(index_dir: str | os.PathLike) -> GoldIndex:
    """The :class:`GoldIndex` at ``index_dir``, loaded once per process (again if its manifest
    changed)."""
    from retriever.index import GoldIndex

    p = Path(index_dir).resolve()
    stamp = _mtime(p / "manifest.json")
    with _LOCK:
        hit = _INDEXES.get(str(p))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        gi = GoldIndex.load(p)
        _INDEXES[str(p)] = (stamp, gi)
        return gi


def resolve_store(path_or_uri: str | os.PathLike) -> str:
    """A score folder (its ``store.json`` names the store) or a LanceDB folder / URI."""
    p = Path(path_or_uri)
    if (p / "store.json").is_file():
        return read_json(p / "store.json")["uri"]
    return str(path_or_uri)


def open_store(path_or_uri: str | os.PathLike) -> CorpusStore:
    """The :class:`CorpusStore` of a score folder or URI, opened once per process."""
    from retriever.store import CorpusStore

    uri = resolve_store(path_or_uri)
    if "://" not in uri and not Path(uri).is_dir():  # never create a folder for a mistyped path
        raise InputError(
            f"no corpus store at {uri}: give a score folder made by `retriever score` "
            "(or its LanceDB store URI)"
        )
    key = str(path_or_uri)
    stamp = _mtime(Path(path_or_uri) / "store.json")
    with _LOCK:
        hit = _STORES.get(key)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        st = CorpusStore(uri)
        _STORES[key] = (stamp, st)
        return st


def clear_caches() -> None:
    """Forget the opened indexes and stores (the embedder cache is ``retriever.embed``'s)."""
    with _LOCK:
        _INDEXES.clear()
        _STORES.clear()
